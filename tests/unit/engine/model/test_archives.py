"""engine.model.archives: archive locations, labels read back as written, full streams every N,
restore chains, and the parents retention must keep (rule 4)."""

import re

import pytest

from engine.model import archives
from engine.model.archives import ArchiveLabel, ArchiveRecord
from engine.model.errors import ConfigError
from engine.model.planning import Transfer
from engine.host.listing import Subvolume

U1, U2, U3, U4 = ("%08d-0000-0000-0000-000000000000" % n for n in range(1, 5))


@pytest.mark.parametrize("spec, archive", [
    ("borg:/backup/borg", True),
    ("borg+ssh://u@box:23/./borg", True),
    ("restic:/backup/restic", True),
    ("restic:s3:http://127.0.0.1:9000/bucket", True),
    ("/backup", False),
    ("ssh://nas/backup", False),
    ("shell://cat > x", False),
    ("borgs:/x", False),
])
def test_an_archive_location_is_known_by_its_prefix(spec, archive):
    assert archives.is_archive_location(spec) is archive


# -- labels: what planning reads back is what was written ------------------------------------------

@pytest.mark.parametrize("label", [
    ArchiveLabel("home", "20240101-000000", U1, None),
    ArchiveLabel("home", "20240102-000000", U2, U1),
    ArchiveLabel("web1.srv", "pre20240102-000000_12", U3, U2),
])
def test_a_label_reads_back_from_its_comment_and_its_tags(label):
    assert archives.parse_label(label.comment().split()) == label
    assert archives.parse_label(label.words()) == label


@pytest.mark.parametrize("words, why", [
    (["job=home", "snapshot=s", "uuid=" + U1, "parent=none"], "not marked as ours"),
    (["btrfs-backup", "job=home", "uuid=" + U1, "parent=none"], "no snapshot"),
    (["btrfs-backup", "job=home", "snapshot=s", "uuid=not a uuid", "parent=none"], "a damaged uuid"),
    (["btrfs-backup", "job=home", "snapshot=s", "uuid=" + U1, "parent=x;rm"], "a damaged parent"),
    ([], "no label at all"),
])
def test_a_label_that_is_not_ours_or_damaged_is_no_archive(words, why):
    assert archives.parse_label(words) is None, why


@pytest.mark.parametrize("job, snapshot, uuid, parent", [
    ("home job", "s", U1, None),
    ("home", "s,t", U1, None),
    ("home", "s", "a=b", None),
    ("", "s", U1, None),
])
def test_a_label_word_that_would_not_read_back_is_refused(job, snapshot, uuid, parent):
    with pytest.raises(ConfigError, match="cannot be stored in its label"):
        archives.check_label(job, snapshot, uuid, parent)


@pytest.mark.parametrize("name, checkpoint", [
    ("home-20240101-000000", False),
    ("home-20240101-000000.checkpoint", True),
    ("home-20240101-000000.checkpoint.3", True),
    ("home-checkpoint", False),
])
def test_borgs_checkpoints_are_known(name, checkpoint):
    assert archives.is_checkpoint(name) is checkpoint


def test_an_archive_is_named_after_its_job_and_snapshot():
    assert archives.archive_name("home", "20240101-000000") == "home-20240101-000000"
    assert archives.archive_name("home", "20240101-000000", "web1") == "home-20240101-000000@web1"
    assert archives.is_checkpoint("home-20240101-000000@web1.checkpoint")


def _record(name, uuid, parent, job="home"):
    return ArchiveRecord(f"{job}-{name}", ArchiveLabel(job, name, uuid, parent))


def test_only_the_jobs_archives_count_and_a_duplicate_is_not_a_second_one():
    records = [_record("a", U1, None), _record("a", U1, None, job="other"), _record("b", U2, U1),
               ArchiveRecord("dup", ArchiveLabel("home", "a", U1, None))]
    found = archives.job_archives(records, "home")
    assert sorted(found) == ["a", "b"] and found["a"].ref == "home-a"


# -- chains --------------------------------------------------------------------------------------

CHAIN = {U1: _record("a", U1, None), U2: _record("b", U2, U1), U3: _record("c", U3, U2)}


@pytest.mark.parametrize("archives_by_uuid, uuid, depth", [
    (CHAIN, U1, 1),
    (CHAIN, U3, 3),
    ({U2: CHAIN[U2], U3: CHAIN[U3]}, U3, None),  # its full stream is gone
    ({U1: _record("a", U1, U2), U2: _record("b", U2, U1)}, U1, None),  # a loop
    (CHAIN, U4, None),
])
def test_chain_depth(archives_by_uuid, uuid, depth):
    assert archives.chain_depth(archives_by_uuid, uuid) == depth


def test_a_restore_replays_the_full_stream_first():
    assert [r.ref for r in archives.restore_chain(CHAIN, U3)] == ["home-a", "home-b", "home-c"]


def test_a_broken_chain_names_its_missing_link():
    with pytest.raises(ConfigError, match="the archive of parent %s is not in the repository" % U1):
        archives.restore_chain({U2: CHAIN[U2]}, U2)
    with pytest.raises(ConfigError, match="no archive of snapshot %s" % U4):
        archives.restore_chain(CHAIN, U4)


# -- full or incremental -------------------------------------------------------------------------

def _snap(name):
    return Subvolume(name=name, path="/s/" + name, id=1, uuid=name, parent_uuid=None, received_uuid=None,
                     readonly=True)


A, B, C, D = (_snap(n) for n in "abcd")


@pytest.mark.parametrize("transfers, depth_of, full_every, parents", [
    pytest.param([Transfer(A, None)], {}, 7, [None], id="first-is-full"),
    pytest.param([Transfer(B, A)], {"a": 1}, 7, ["a"], id="incremental-under-the-limit"),
    pytest.param([Transfer(B, A)], {"a": 3}, 3, [None], id="chain-full-starts-over"),
    pytest.param([Transfer(B, A), Transfer(C, B), Transfer(D, C)], {"a": 1}, 2, ["a", None, "c"],
                 id="several-in-one-run"),
    pytest.param([Transfer(B, A)], {"a": None}, 7, [None], id="broken-parent-chain"),
    pytest.param([Transfer(B, A), Transfer(C, B)], {"a": 1}, 1, [None, None], id="every-archive-full"),
])
def test_full_streams_every_n(transfers, depth_of, full_every, parents):
    shaped = archives.with_full_streams(transfers, depth_of, full_every)
    assert [t.parent.name if t.parent else None for t in shaped] == parents
    assert [t.snapshot for t in shaped] == [t.snapshot for t in transfers]


@pytest.mark.parametrize("value, count", [("7", 7), (1, 1), (" 30 ", 30)])
def test_full_every_parses(value, count):
    assert archives.parse_full_every(value) == count


@pytest.mark.parametrize("value", ["0", "-1", "weekly", ""])
def test_full_every_refuses_what_is_no_count(value):
    with pytest.raises(ConfigError, match="archive_full_every"):
        archives.parse_full_every(value)


# -- retention keeps every kept incremental's parents (rule 4) ----------------------------------

@pytest.mark.parametrize("kept, parent_of, needed", [
    pytest.param(["c"], {"a": None, "b": "a", "c": "b"}, {"b", "a"}, id="whole-chain"),
    pytest.param(["a"], {"a": None, "b": "a"}, set(), id="full-needs-nothing"),
    pytest.param(["d", "b"], {"a": None, "b": "a", "c": None, "d": "c"}, {"a", "c"}, id="two-chains"),
    pytest.param(["b"], {"b": "gone"}, {"gone"}, id="parent-named-even-if-missing"),
    pytest.param([], {"a": None, "b": "a"}, set(), id="nothing-kept"),
])
def test_chain_protection(kept, parent_of, needed):
    found = archives.chain_protection(kept, parent_of)
    assert set(found) == needed
    assert all("parent of the kept incremental archive" in why for why in found.values())


@pytest.mark.parametrize("repository, has_credentials, shown", [
    ("/backup/restic", False, "/backup/restic"),
    ("rest:http://127.0.0.1:8000/repo", False, "rest:http://127.0.0.1:8000/repo"),
    ("rest:https://user:pw@box:8000/repo", True, "rest:https://…@box:8000/repo"),
    ("rest:https://user@box/", False, "rest:https://user@box/"),
    ("sftp://user@host:2222//srv/restic", False, "sftp://user@host:2222//srv/restic"),
    ("s3:http://127.0.0.1:9000/bucket@2", False, "s3:http://127.0.0.1:9000/bucket@2"),  # @ in the path only
    ("sftp:user@host:/srv/restic", False, "sftp:user@host:/srv/restic"),  # ssh's user, no password
])
def test_credentials_in_a_repository_url(repository, has_credentials, shown):
    assert archives.credentials_in_url(repository) is has_credentials
    assert archives.without_credentials(repository) == shown


RESTIC_APPEND_ONLY_FORGET = """\
Remove(<snapshot/80e06cdf76>) returned error, retrying after 552.330144ms: blob not removed, server response: 403 Forbidden (403)
Remove(<snapshot/80e06cdf76>) returned error, retrying after 1.080381816s: blob not removed, server response: 403 Forbidden (403)
unable to remove <snapshot/80e06cdf76> from the repository
blob not removed, server response: 403 Forbidden (403)
github.com/restic/restic/internal/backend/rest.(*Backend).Remove
\tgithub.com/restic/restic/internal/backend/rest/rest.go:298
github.com/restic/restic/cmd/restic.deleteFiles.func2
\tgithub.com/restic/restic/cmd/restic/delete.go:47
golang.org/x/sync/errgroup.(*Group).Go.func1
\tgolang.org/x/sync/errgroup/errgroup.go:75
runtime.goexit
\truntime/asm_amd64.s:1594
"""


def test_a_stores_error_lines_leave_out_go_stack_frames_and_repeated_retries():
    assert archives.error_lines(RESTIC_APPEND_ONLY_FORGET) == [
        "Remove(<snapshot/80e06cdf76>) returned error, retrying after 552.330144ms: blob not removed, "
        "server response: 403 Forbidden (403)",
        "unable to remove <snapshot/80e06cdf76> from the repository",
        "blob not removed, server response: 403 Forbidden (403)",
    ]
    assert archives.error_lines("Fatal: wrong password or no key found\n") == ["Fatal: wrong password or no key found"]


@pytest.mark.parametrize("indexes, objects, segments, empty", [
    (["index.1"], 1, ["0", "1"], True),  # borg init: the manifest, committed in segment 1
    (["index.13"], 1, ["13"], True),  # every archive deleted and compacted
    (["index.5"], 4, ["0", "1", "3", "5"], False),  # one archive (its metadata, items, a chunk)
    (["index.5"], 2, ["5"], False),
    (["index.1"], 1, ["0", "1", "2"], False),  # a commit in segment 2 whose index is not written
    (["index.1", "index.2"], 1, ["2"], False),  # mid-commit
    ([], 1, ["0"], False),
    (["index.x"], 1, ["0"], False),
    (["index.1"], 0, ["1"], False),  # not even a manifest: not what borg init leaves
    (["index.1"], 1, ["1", "README"], True),  # names that are no segment are not counted
])
def test_a_borg_index_that_maps_the_manifest_alone_holds_no_archive(indexes, objects, segments, empty):
    header = archives.BORG_INDEX_MAGIC + objects.to_bytes(4, "little") + bytes(6)
    assert archives.borg_index_objects(header) == objects
    assert archives.borg_holds_no_archive(indexes, objects, segments) is empty


@pytest.mark.parametrize("header", [b"", b"BORG_IDX\x01", b"BORG2IDX\x01\x00\x00\x00", b"NOT_AN_INDEX"])
def test_a_borg_index_that_is_none_borg_1_writes_says_nothing(header):
    assert archives.borg_index_objects(header) is None
    assert archives.borg_holds_no_archive(["index.1"], archives.borg_index_objects(header), ["1"]) is False


def _hosted(snapshot, host, job="home"):
    return ArchiveRecord("ref-" + snapshot, ArchiveLabel(job, snapshot, "1111-" + snapshot, None), host)


@pytest.mark.parametrize("host, found", [
    ("web1", ["a", "c"]),  # c: stored where the host was not recorded (counts)
    ("web2", ["b", "c"]),
    (None, ["a", "b", "c"]),  # a restore from the only host, or one that asks for any
])
def test_a_jobs_archives_are_its_own_hosts(host, found):
    records = [_hosted("a", "web1"), _hosted("b", "web2"), _hosted("c", None), _hosted("d", "web1", job="other")]
    assert sorted(archives.job_archives(records, "home", host)) == found
    assert archives.job_hosts(records, "home") == ["web1", "web2"]


@pytest.mark.parametrize("hosts, here, asked, chosen", [
    ([], "web1", None, None),
    (["web1"], "web1", None, None),
    (["old-name"], "web1", None, None),  # a host rebuilt under another name restores its predecessor's
    (["web1", "web2"], "web1", None, "web1"),
    (["web1", "web2"], "vault", "web2", "web2"),
    (["web1", "web2"], "vault", None, "several hosts (web1, web2): give --archive-host"),
    (["web1"], "web1", "web3", "no archive of the job was stored at host web3 (hosts: web1)"),
])
def test_a_restore_reads_the_archives_of_one_host(hosts, here, asked, chosen):
    if chosen is not None and " " in chosen:
        with pytest.raises(ConfigError, match=re.escape(chosen)):
            archives.restore_host(hosts, here, asked)
    else:
        assert archives.restore_host(hosts, here, asked) == chosen
