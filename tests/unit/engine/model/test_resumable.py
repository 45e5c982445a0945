"""Resumable transfers, the pure part: when a transfer is staged, staging names, the manifest and
hash list, what a staging found at a destination resumes, and which stagings are stale."""

import pytest

from engine.model import resumable
from engine.model.errors import ConfigError
from engine.model.names import validate_name
from engine.model.resumable import Manifest, Resume

GIB = 1 << 30
UUID, PARENT = "0" * 8 + "-1111-2222-3333-" + "4" * 12, "a" * 8 + "-bbbb-cccc-dddd-" + "e" * 12
WANTED = Manifest("p20260101-000000", UUID, PARENT, 64 << 20, 5 * (64 << 20) + 7)
H = ["%064x" % n for n in range(1, 8)]


@pytest.mark.parametrize("mode, estimate, can_stage, staged", [
    ("auto", GIB, True, True),
    ("auto", GIB - 1, True, False),
    ("auto", None, True, False),  # size unknown: a direct transfer, as before
    ("always", 10, True, True),
    ("always", None, True, True),
    ("never", 10 * GIB, True, False),
    ("always", 10 * GIB, False, False),  # a local destination: a cut there is a crash
    ("auto", 10 * GIB, False, False),
])
def test_when_a_transfer_is_staged(mode, estimate, can_stage, staged):
    assert resumable.stages(mode, estimate, can_stage) is staged


KiB = 1 << 10


@pytest.mark.parametrize("file_bytes, entries, bound", [
    (0, 0, 0),
    (0, 1, 64 * KiB),  # an empty file or folder: its commands only
    (1000, 0, 1100),   # each write command repeats its path: a tenth more at most
    (300 << 20, 3000, (330 << 20) + 3000 * 64 * KiB),
])
def test_what_a_full_send_can_carry_at_most(file_bytes, entries, bound):
    assert resumable.full_stream_bound(file_bytes, entries) == bound


@pytest.mark.parametrize("mode, bound, needed", [
    ("never", None, False),
    ("always", 1, True),           # the manifest keeps the stream's size
    ("always", None, True),
    ("auto", None, True),          # nothing known: estimated first, as before
    ("auto", GIB - 1, False),      # below the threshold, whatever the estimate: sent directly
    ("auto", GIB, True),           # it may be as large as that: estimated, which decides
    ("auto", 5 * GIB, True),
])
def test_when_a_stream_is_estimated_before_its_first_byte(mode, bound, needed):
    assert resumable.estimate_needed(mode, bound) is needed


def test_a_bound_below_the_threshold_never_stages_what_the_estimate_would_not_either():
    """A bound is at least the stream's size, so what it lets go direct is what `auto` sends directly."""
    for bound in (0, GIB // 2, GIB - 1):
        assert not resumable.estimate_needed("auto", bound)
        assert not resumable.stages("auto", bound, True)


def test_settings_are_checked():
    assert resumable.parse_chunk_size("64M") == 64 << 20
    for bad in ("512K", "5G", "lots"):
        with pytest.raises(ConfigError, match="resumable_chunk_size"):
            resumable.parse_chunk_size(bad)
    with pytest.raises(ConfigError, match="auto, always or never"):
        resumable.parse_mode("sometimes")


def test_the_staging_folder_can_never_be_a_backup_name():
    with pytest.raises(ConfigError):
        validate_name(resumable.STAGING_FOLDER)


@pytest.mark.parametrize("name, parent", [("p20260101-000000", PARENT), ("home-20260101-000000", None)])
def test_staging_keys_read_back(name, parent):
    key = resumable.staging_key(name, parent)
    assert resumable.parse_staging_key(key) == (name, parent)


@pytest.mark.parametrize("key", ["", "..", "../x.full", "x.notauuid", ".hidden.full", "a/b.full"])
def test_other_names_are_no_staging_key(key):
    assert resumable.parse_staging_key(key) is None


def test_manifest_reads_back_and_bad_ones_are_refused():
    assert resumable.parse_manifest(resumable.manifest_text(WANTED)) == WANTED
    for text in ("{", "[]", '{"snapshot": "x"}',
                 resumable.manifest_text(WANTED._replace(chunk_size="big"))):
        with pytest.raises(ValueError):
            resumable.parse_manifest(text)


def test_hash_lists():
    text = "".join(resumable.hash_line(i, h) for i, h in enumerate(H[:3]))
    assert resumable.parse_chunk_hashes(text) == H[:3]
    assert resumable.parse_chunk_hashes(text + H[3][:20]) == H[:3]  # a line cut by a crash
    with pytest.raises(ValueError, match="chunk 2 where chunk 1"):
        resumable.parse_chunk_hashes(resumable.hash_line(0, H[0]) + resumable.hash_line(2, H[1]))
    with pytest.raises(ValueError, match="line 1"):
        resumable.parse_chunk_hashes("garbage\n" + resumable.hash_line(0, H[0]))


RESUMES = {
    "nothing staged": (None, [], False, Resume(0, False, None)),
    "three chunks staged": (WANTED, H[:3], False, Resume(3, False, None)),
    "staged complete, the receive is left": (WANTED, H[:6], True, Resume(6, True, None)),
    "another parent": (WANTED._replace(parent_uuid=None), H[:3], False, "another parent"),
    "another snapshot uuid": (WANTED._replace(uuid=PARENT), H[:3], False, "another snapshot UUID"),
    "another chunk size": (WANTED._replace(chunk_size=1 << 20), H[:3], False, "another chunk size"),
    "more chunks than the stream has": (WANTED, H[:7], False, "more chunks than its stream"),
}


@pytest.mark.parametrize("name", RESUMES)
def test_what_a_staging_resumes(name):
    found, hashes, complete, expected = RESUMES[name]
    resume = resumable.resume_from(found, hashes, complete, WANTED)
    if isinstance(expected, str):
        assert resume.chunks == 0 and not resume.complete
        assert expected in resume.reason and "starting over" in resume.reason
    else:
        assert resume == expected


def test_stale_stagings():
    current = resumable.staging_key("p20260103-000000", PARENT)
    keys = [current, resumable.staging_key("p20260103-000000", None), resumable.staging_key("p20260101-000000", None),
            resumable.staging_key("p20260105-000000", UUID), "junk"]
    assert resumable.stale_stagings(keys, current) == sorted([keys[1], keys[2], "junk"])


DAY = 86400
NEWER = resumable.staging_key("p20260105-000000", UUID)


@pytest.mark.parametrize("age, stale", [
    (None, False),  # no age known (an older serve): kept, this run may send it
    (0, False),
    (resumable.STALE_AGE, False),
    (resumable.STALE_AGE + 1, True),  # a week without a chunk landing: abandoned
    (30 * DAY, True),
])
def test_a_newer_snapshots_staging_is_stale_after_the_documented_age(age, stale):
    current = resumable.staging_key("p20260103-000000", PARENT)
    ages = {} if age is None else {NEWER: age, current: 365 * DAY}
    assert resumable.stale_stagings([current, NEWER], current, ages) == ([NEWER] if stale else [])


@pytest.mark.parametrize("age, newest_backup_age, reason", [
    (DAY, None, None),  # fresh, nothing received yet: a first backup still being staged
    (DAY, 2 * DAY, None),  # the newest backup arrived before its last chunk: still wanted
    (DAY, DAY / 2, "a backup arrived after its last chunk landed"),  # the host went on without it
    (resumable.STALE_AGE + 1, None, "its last chunk landed 7 days ago (stale after 7 days)"),
    (10 * DAY, 20 * DAY, "its last chunk landed 10 days ago"),
])
def test_what_a_servers_prune_removes_of_the_staging(age, newest_backup_age, reason):
    stale = resumable.stale_on_server({NEWER: age, "not-a-staging": 99 * DAY}, newest_backup_age)
    if reason is None:
        assert stale == {}
    else:
        assert list(stale) == [NEWER] and reason in stale[NEWER]


@pytest.mark.parametrize("staged, size, percent", [(0, 100, 0), (63, 100, 63), (150, 100, 100), (5, None, None)])
def test_staged_percent(staged, size, percent):
    assert resumable.staged_percent(staged, size) == percent


def _run_result(transfers, status="failed"):
    return {"destinations": [{"id": "ssh://nas/b", "status": status, "error": "the ssh connection was lost",
                              "transfers": transfers}], "retention": [], "snapshot": None, "locks": {}}


def test_the_run_record_status_and_metrics_say_how_far_a_cut_resumable_transfer_got():
    from engine.model import metrics
    from engine.model.run_record import resumable_text, state_after_run

    cut = {"snapshot": "p20260101-000000", "status": "failed", "bytes": None,
           "resumable": {"staged_bytes": 63, "stream_bytes": 100, "percent": 63}}
    state = state_after_run(None, _run_result([cut]), job="home", prefix="p", started=1.0, duration=2.0)
    record = state["destinations"]["ssh://nas/b"]
    assert resumable_text(record) == "resumable transfer of p20260101-000000 at 63%"
    assert ("btrfs_backup_resumable_staged_ratio", {"backup_job": "home", "destination": "ssh://nas/b"}, 0.63) \
        in metrics.samples("home", state)
    done = dict(cut, status="done", resumable=None)
    state = state_after_run(state, _run_result([done], "ok"), job="home", prefix="p", started=3.0, duration=2.0)
    record = state["destinations"]["ssh://nas/b"]
    assert resumable_text(record) is None
    assert ("btrfs_backup_resumable_staged_ratio", {"backup_job": "home", "destination": "ssh://nas/b"}, 0.0) \
        in metrics.samples("home", state)
