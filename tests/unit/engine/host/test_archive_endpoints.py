"""engine.host.endpoints.archive: borg and restic locations, their listings as the records planning
uses, the argv of each tool (secrets only by file, never on a command line), their errors."""

import json
import os
import shlex

import pytest

from engine.host.endpoints.archive import (ArchiveSettings, BorgEndpoint, ResticEndpoint, borg_rsh,
                                           parse_borg_list, parse_restic_snapshots)
from engine.host.endpoints.location import parse_location
from engine.host.runner import CommandResult
from engine.model.archives import ArchiveLabel
from engine.model.errors import ConfigError, EndpointError, UnreachableError
from engine.model.planning import Transfer, present_backups
from engine.host.listing import Subvolume

U1, U2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
SETTINGS = ArchiveSettings(job="home", key_file="/etc/k", env_file="/etc/env", full_every=7)


@pytest.mark.parametrize("spec, kind, repository, dest_id", [
    ("borg:/backup/borg", "borg", "/backup/borg", "borg:/backup/borg"),
    ("borg:/backup//borg/", "borg", "/backup/borg", "borg:/backup/borg"),
    ("borg+ssh://u@box:23/./borg", "borg", "ssh://u@box:23/./borg", "borg+ssh://u@box:23/./borg"),
    ("borg+ssh://box/srv/borg", "borg", "ssh://box/srv/borg", "borg+ssh://box/srv/borg"),
    ("restic:/backup/restic", "restic", "/backup/restic", "restic:/backup/restic"),
    ("restic:rest:http://127.0.0.1:8000/", "restic", "rest:http://127.0.0.1:8000/",
     "restic:rest:http://127.0.0.1:8000/"),
    ("restic:s3:http://127.0.0.1:9000/bucket", "restic", "s3:http://127.0.0.1:9000/bucket",
     "restic:s3:http://127.0.0.1:9000/bucket"),
])
def test_archive_locations(spec, kind, repository, dest_id):
    store = parse_location(spec, archive=SETTINGS)
    assert (store.kind, store.repository, store.id) == (kind, repository, dest_id)
    assert store.holds_archives and store.can_list and not store.receives_with_btrfs
    assert parse_location(store.id, archive=SETTINGS).id == store.id  # a lock file's id parses back


@pytest.mark.parametrize("spec, message", [
    ("borg:", "a path is required"),
    ("borg:relative/repo", "absolute path"),
    ("borg:/a/../b", "'..' is not allowed"),
    ("restic:", "a repository is required"),
    ("restic:relative", "absolute path or its own repository string"),
    ("restic:/a\nb", "control characters"),
    ("restic:rest:http://user:s3cret@127.0.0.1:8000/repo", "a user and password in the repository string"),
])
def test_bad_archive_locations_are_clear_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_location(spec, archive=SETTINGS)


def test_a_refused_repository_string_keeps_its_password_out_of_the_message():
    with pytest.raises(ConfigError) as refused:
        parse_location("restic:rest:https://user:s3cret@box:8000/repo", archive=SETTINGS)
    assert "s3cret" not in str(refused.value) and "restic:rest:https://…@box:8000/repo" in str(refused.value)


@pytest.mark.parametrize("spec", ["borg:/b", "restic:/r"])
def test_an_archive_store_is_no_source(spec):
    with pytest.raises(ConfigError, match="can only be a destination"):
        parse_location(spec, allow_shell=False)


def test_borgs_ssh_options_go_into_borg_rsh_quoted():
    store = parse_location("borg+ssh://u@box:23/./borg", ssh_options=["IdentityFile=/root/my key"],
                           archive=SETTINGS)
    rsh = [item for item in store.environment() if item.startswith("BORG_RSH=")][0][len("BORG_RSH="):]
    assert shlex.split(rsh) == ["ssh", "-o", "BatchMode=yes", "-o", "IdentityFile=/root/my key"]
    assert borg_rsh(["A=$(x)"]) == "ssh -o BatchMode=yes -o 'A=$(x)'"


@pytest.mark.parametrize("spec, needed", [
    ("borg:/b", "BORG_PASSCOMMAND=cat -- /etc/k"),
    ("restic:/r", "RESTIC_PASSWORD_FILE=/etc/k"),
])
def test_the_passphrase_goes_by_its_file_into_the_environment(spec, needed):
    store = parse_location(spec, archive=SETTINGS)
    argv = store.tool_argv(["tool"])
    assert needed in argv and argv[argv.index("--env-file") + 1] == "/etc/env"
    assert argv[-2:] == ["--", "tool"]


def _snapshot(name, uuid):
    return Subvolume(name=name, path="/src/snapshot/" + name, id=1, uuid=uuid, parent_uuid=None,
                     received_uuid=None, readonly=True)


def test_a_bound_receiver_stores_the_labelled_archive():
    a, b = _snapshot("20240101-000000", U1), _snapshot("20240102-000000", U2)
    borg = parse_location("borg:/b", archive=SETTINGS).storing(b, a)
    name, argv = borg.receiver()
    comment = argv[argv.index("--comment") + 1]
    assert comment == ArchiveLabel("home", b.name, U2, U1).comment()
    assert "/b::home-20240102-000000" in argv and "--content-from-command" in argv and argv[-1] == "check"
    restic = parse_location("restic:/r", archive=SETTINGS).storing(a, None)
    _name, argv = restic.receiver()
    assert argv[argv.index("--tag") + 1] == ",".join(ArchiveLabel("home", a.name, U1, None).words())
    assert "guard" in argv and argv[argv.index("--stdin-filename") + 1] == "home-20240101-000000.btrfs"


BORG_LIST = "\0".join([
    "home-a\tweb1\tbtrfs-backup job=home snapshot=a uuid=%s parent=none" % U1,
    "home-b.checkpoint\tweb1\tbtrfs-backup job=home snapshot=b uuid=%s parent=%s" % (U2, U1),
    "someone-elses\tweb1\tmy comment\twith a tab",
    "home-b\tweb1\tbtrfs-backup job=home snapshot=b uuid=%s parent=%s" % (U2, U1),
    "",
])


def test_a_borg_listing_gives_our_archives_and_never_a_checkpoint():
    records = parse_borg_list(BORG_LIST)
    assert [(r.ref, r.label.snapshot, r.label.parent, r.host) for r in records] == \
        [("home-a", "a", None, "web1"), ("home-b", "b", U1, "web1")]


def test_a_jobs_archives_are_those_its_own_host_stored():
    # The same job name at another host, storing in the same repository, is another job: a run
    # neither plans on its archives nor deletes them.
    other = "web2-home-c\tweb2\tbtrfs-backup job=home snapshot=c uuid=%s parent=none" % ("3" * 8 + "-3333")
    listed = BORG_LIST + other + "\0"
    at = {host: parse_location("borg:/b", archive=ArchiveSettings(job="home", key_file="/k", host=host))
          for host in ("web1", "web2", None)}
    assert at["web1"].list_backups(Runner(CommandResult([], 0, listed, ""))).children.keys() == {"a", "b"}
    assert at["web2"].list_backups(Runner(CommandResult([], 0, listed, ""))).children.keys() == {"c"}
    assert at[None].list_backups(Runner(CommandResult([], 0, listed, ""))).children.keys() == {"a", "b", "c"}
    restic = ResticEndpoint("/r", ArchiveSettings(job="home", key_file="/k", host="web1"))
    entries = [{"id": "e" * 64, "time": "1", "hostname": "web1", "tags": ArchiveLabel("home", "a", U1, None).words()},
               {"id": "f" * 64, "time": "2", "hostname": "web2", "tags": ArchiveLabel("home", "b", U2, None).words()}]
    assert restic.list_backups(Runner(CommandResult([], 0, json.dumps(entries), ""))).children.keys() == {"a"}
    # restic stores the job's host as given, whatever it would take itself (RESTIC_HOST, say).
    argv = restic.storing(_snapshot("a", U1), None).receiver()[1]
    assert argv[argv.index("--host") + 1] == "web1"
    # borg's archive names are unique per host (two hosts' snapshots of one second); the stream's
    # file in it keeps the job's and snapshot's name, as a restore reads it.
    bound = at["web1"].storing(_snapshot("a", U1), None)
    argv = bound.receiver()[1]
    assert "/b::home-a@web1" in argv and argv[argv.index("--stdin-name") + 1] == "home-a.btrfs"
    assert bound.arrived(None, _snapshot("a", U1)).path == "home-a@web1"


def test_a_restic_listing_gives_our_snapshots_oldest_first():
    entries = [{"id": "f" * 64, "time": "2024-01-02", "tags": ArchiveLabel("home", "b", U2, U1).words()},
               {"id": "e" * 64, "time": "2024-01-01", "tags": ArchiveLabel("home", "a", U1, None).words()},
               {"id": "d" * 64, "time": "2024-01-03", "tags": ["mine"]}]
    entries[0]["hostname"] = "web1"
    records = parse_restic_snapshots(json.dumps(entries))
    assert [(r.ref, r.label.snapshot, r.host) for r in records] == [("e" * 64, "a", None), ("f" * 64, "b", "web1")]
    with pytest.raises(EndpointError, match="no JSON"):
        parse_restic_snapshots("oops")


class Runner:
    """Answers each tool command with the next canned result; keeps the argv it was given."""

    def __init__(self, *results):
        self.results, self.argvs = list(results), []

    def run(self, argv, input_text=None):
        self.argvs.append(argv)
        return self.results.pop(0)


def test_the_listing_is_what_planning_matches_by_uuid():
    store = parse_location("borg:/b", archive=SETTINGS)
    listing = store.list_backups(Runner(CommandResult([], 0, BORG_LIST, "")))
    held = listing.children
    assert sorted(held) == ["a", "b"] and held["b"].complete and held["b"].path == "home-b"
    present = present_backups([_snapshot("a", U1), _snapshot("b", U2), _snapshot("c", "x")], held.values())
    assert sorted(present) == ["a", "b"]


@pytest.mark.parametrize("stderr, hint", [
    ("passphrase supplied in BORG_PASSCOMMAND is incorrect.", "is archive_key_file the repository's passphrase?"),
    ("Fatal: wrong password or no key found", "is archive_key_file the repository's passphrase?"),
    ("Failed to create/acquire the lock /b/lock.exclusive (timeout).", "the repository is locked"),
    ("Fatal: unable to create lock in backend: repository is already locked by PID 7", "the repository is locked"),
    ("Repository /b does not exist.", "create the repository first"),
    ("borg: No such file or directory", "install borgbackup on this host"),
])
def test_a_failed_tool_says_what_to_do(stderr, hint):
    store = parse_location("borg:/b", archive=SETTINGS)
    with pytest.raises(EndpointError, match="borg:/b: listing the archives failed") as raised:
        store.records(Runner(CommandResult([], 2, "", stderr)))
    assert hint in str(raised.value)


def test_a_hint_comes_from_what_the_tool_said_not_from_the_repositorys_name():
    for location in ("borg:/srv/blocks/wrong-key-password", "restic:sftp:vault:/srv/blocks/wrong-key-password"):
        store = parse_location(location, archive=SETTINGS)
        cut = (f"btrfs send failed (killed by signal 9); {store.tool} at {store.id} failed (exit status 1): "
               "the send stream was cut: no archive is stored")
        assert store.failure_hint(cut) == "", location
        refused = f"{store.tool} at {store.id} failed (exit status 2): passphrase supplied is incorrect."
        assert store.failure_hint(refused) == " (is archive_key_file the repository's passphrase?)", location


def test_an_unfinished_transfers_archive_counts_as_partial():
    store = parse_location("restic:/r", archive=SETTINGS)
    held = store.list_backups(Runner(CommandResult([], 0, json.dumps([
        {"id": "e" * 64, "tags": ArchiveLabel("home", "a", U1, None).words()}]), ""))).children
    marked = store.mark_unfinished(held, {"a"})
    assert not marked["a"].complete and held["a"].complete


def test_full_every_shapes_the_plan():
    store = parse_location("borg:/b", archive=ArchiveSettings(job="home", key_file="/k", full_every=2))
    held = parse_location("borg:/b", archive=SETTINGS).list_backups(
        Runner(CommandResult([], 0, BORG_LIST, ""))).children  # a <- b: a chain of 2
    c = _snapshot("c", "33333333-3333-3333-3333-333333333333")
    shaped = store.shape_transfers([Transfer(c, _snapshot("b", U2))], held)
    assert shaped[0].parent is None


def test_deleting_names_the_archives_and_compacts():
    store = parse_location("borg:/b", archive=SETTINGS)
    runner = Runner(CommandResult([], 0, "", ""), CommandResult([], 0, "", ""))
    store.delete_archives(runner, ["home-a", "home-b"])
    assert runner.argvs[0][-4:] == ["delete", "/b", "home-a", "home-b"] and runner.argvs[1][-2:] == ["compact", "/b"]
    with pytest.raises(EndpointError, match="no archive name"):
        store.delete_archives(runner, ["../x"])
    runner = Runner(CommandResult([], 0, "", ""), CommandResult([], 0, "", ""))
    parse_location("restic:/r", archive=SETTINGS).delete_archives(runner, ["ab" * 32])
    assert runner.argvs[0][-1:] == ["unlock"] and runner.argvs[1][-3:] == ["forget", "--prune", "ab" * 32]
    with pytest.raises(EndpointError, match="no snapshot id"):
        parse_location("restic:/r", archive=SETTINGS).delete_archives(runner, ["--all"])


def test_the_key_file_is_required_and_checked(tmp_path):
    with pytest.raises(ConfigError, match="give --archive-key-file"):
        ArchiveSettings(job="home").require_files("borg:/b")
    with pytest.raises(ConfigError, match="archive_key_file .*: no such file"):
        ArchiveSettings(job="home", key_file=str(tmp_path / "nope")).require_files("borg:/b")
    key = tmp_path / "key"
    key.write_text("secret\n")
    ArchiveSettings(job="home", key_file=str(key)).require_files("borg:/b")


def test_an_archive_store_runs_no_command_and_has_no_folder():
    store = parse_location("borg:/b", archive=SETTINGS)
    for call in (lambda: store.command(["ls"]), lambda: store.with_path("/x"), lambda: store.lock_store(None, "/x"),
                 lambda: store.sender(["btrfs", "send"])):
        with pytest.raises(EndpointError, match="is an archive store"):
            call()
    assert isinstance(store, BorgEndpoint) and isinstance(parse_location("restic:/r"), ResticEndpoint)


def test_an_archive_just_stored_is_known_without_listing_and_restic_resolves_it_when_deleted():
    a, b = _snapshot("a", U1), _snapshot("b", U2)
    borg = parse_location("borg:/b", archive=SETTINGS)
    backup = borg.arrived(Runner(), b, a)  # no command run
    assert (backup.name, backup.path, backup.received_uuid, backup.parent_uuid) == ("b", "home-b", U2, U1)
    restic = parse_location("restic:/r", archive=SETTINGS)
    backup = restic.arrived(Runner(), a)
    assert backup.path == "uuid=" + U1 and backup.complete
    listing = json.dumps([{"id": "c" * 64, "tags": ArchiveLabel("home", "a", U1, None).words()}])
    runner = Runner(CommandResult([], 0, listing, ""), CommandResult([], 0, "", ""), CommandResult([], 0, "", ""))
    restic.delete_archives(runner, [backup.path])
    assert runner.argvs[-1][-3:] == ["forget", "--prune", "c" * 64]


@pytest.mark.parametrize("stderr", [
    "Remote: ssh: connect to host box port 23: Connection refused\nConnection closed by remote host",
    "Fatal: unable to open config file: Stat: Get \"http://127.0.0.1:9/config\": dial tcp 127.0.0.1:9: connect: connection refused",
    "ssh: Could not resolve hostname box: Name or service not known",
])
def test_a_store_out_of_reach_is_unreachable_not_broken(stderr):
    store = parse_location("borg+ssh://box/b", archive=SETTINGS)
    with pytest.raises(UnreachableError):
        store.records(Runner(CommandResult([], 2, "", stderr)))


def test_an_unbound_store_stores_no_stream():
    with pytest.raises(EndpointError, match="only as the archive of a snapshot"):
        parse_location("restic:/r", archive=SETTINGS).receiver()


def test_a_deletion_an_append_only_server_refuses_says_so_without_the_stack_trace():
    stderr = ("Remove(<snapshot/80e06cdf76>) returned error, retrying after 552ms: blob not removed, server "
              "response: 403 Forbidden (403)\nunable to remove <snapshot/80e06cdf76> from the repository\n"
              "blob not removed, server response: 403 Forbidden (403)\n"
              "golang.org/x/sync/errgroup.(*Group).Go.func1\n\tgolang.org/x/sync/errgroup/errgroup.go:75\n"
              "runtime.goexit\n\truntime/asm_amd64.s:1594\n")  # restic 0.14's forget, as captured (shortened)
    store = parse_location("restic:rest:http://127.0.0.1:8000/r", archive=SETTINGS)
    text = store.failure_text(CommandResult(["restic"], 1, "", stderr))
    assert "unable to remove <snapshot/80e06cdf76> from the repository" in text
    assert "the repository refuses deletions: an append-only server" in text
    assert "goexit" not in text and "errgroup" not in text


def test_a_stream_sent_on_a_forecast_waits_for_the_runs_word():
    a = _snapshot("20240101-000000", U1)
    for location in ("borg:/b", "restic:/r"):
        store = parse_location(location, archive=SETTINGS)
        store.verdict_path = "/run/verdict"
        _name, argv = store.storing(a, None).receiver()
        assert argv[argv.index("--verdict") + 1] == "/run/verdict", location
        store.verdict_path = None
        assert "--verdict" not in store.storing(a, None).receiver()[1]


def test_borg_lists_beside_its_own_create_without_its_locks():
    # create holds the repository's lock and its cache's until the run's word: list takes neither.
    store = parse_location("borg:/b", archive=SETTINGS)
    runner = Runner(CommandResult([], 0, BORG_LIST, ""), CommandResult([], 0, BORG_LIST, ""))
    assert store.list_backups(runner, beside_a_write=True).children.keys() == {"a", "b"}
    store.list_backups(runner)
    beside, alone = runner.argvs
    assert "--bypass-lock" in beside and "--bypass-lock" not in alone
    cache = [beside[i + 1] for i, word in enumerate(beside) if word == "--set" and beside[i + 1].startswith("BORG_CACHE_DIR=")]
    assert len(cache) == 1 and not os.path.exists(cache[0].split("=", 1)[1])  # its own, removed after
    assert not any(word.startswith("BORG_CACHE_DIR=") for word in alone)
