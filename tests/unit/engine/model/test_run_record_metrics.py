"""engine.model.run_record and engine.model.metrics: a run's result becomes the state, the state becomes metrics."""

import shutil
import subprocess

import pytest

from engine.model.metrics import render
from engine.model.run_record import (state_after_run, record_verify, resumable_text, snapshot_timestamp, with_configuration,
                                     with_staged)

S1, S2, S3 = "20260301-080000", "20260302-080000", "20260303-080000"


def transfer(name, status="done", size=1000):
    return {"snapshot": name, "status": status, "bytes": size if status == "done" else None}


def result(destinations, snapshot=S3, source_kept=(S2, S3), failed=False, locks=None, retention=()):
    return {
        "source": "/home", "snapshot_folder": "/home/snapshot", "check_mode": False,
        "changed": True, "failed": failed, "errors": ["x"] if failed else [], "warnings": [],
        "snapshot": {"name": snapshot} if snapshot else None, "locks": locks or {},
        "destinations": [dict({"error": None, "transfers": []}, **d) for d in destinations],
        "retention": [{"where": "source", "kept": [{"name": n} for n in source_kept], "deleted": []}]
        + list(retention),
    }


def run(previous, res, started=100.0):
    return state_after_run(previous, res, job="home", prefix="", started=started, duration=2.5, max_age=7200)


def test_a_successful_run_records_each_destination():
    state = run(None, result([{"id": "/b", "status": "ok", "transfers": [transfer(S3, size=4096)]}],
                             retention=[{"where": "/b", "kept": [{"name": S2}, {"name": S3}]}]))
    d = state["destinations"]["/b"]
    assert (d["newest_backup"], d["backups"], d["sent_bytes"], d["last_success"], d["locks"]) == \
        (S3, 2, 4096, 100.0, 0)
    assert d["newest_backup_time"] == snapshot_timestamp("", S3)
    assert state["last_run"] == dict(state["last_run"], ok=True, snapshots=2, duration=2.5, start=100.0)


# (case, previous destination record, this run's destination, expected fields)
DEST_CASES = [
    ("up to date: holds the source's newest", None, {"status": "ok"},
     {"newest_backup": S3, "last_success": 100.0, "backups": None, "sent_bytes": 0}),
    ("failed: keeps what was known", {"newest_backup": S1, "last_success": 50.0, "backups": 4},
     {"status": "failed", "error": "unreachable", "transfers": [transfer(S3, "failed")]},
     {"newest_backup": S1, "last_success": 50.0, "backups": 4, "status": "failed", "error": "unreachable"}),
    ("count carried on without a retention section", {"newest_backup": S1, "backups": 4},
     {"status": "ok", "transfers": [transfer(S2), transfer(S3)]}, {"backups": 6, "sent_bytes": 2000}),
    ("a failed chain keeps the part that arrived", {"newest_backup": S1},
     {"status": "failed", "error": "e", "transfers": [transfer(S2), transfer(S3, "failed")]},
     {"newest_backup": S2}),
    ("the newest stream went compressed", None,
     {"status": "ok", "transfers": [transfer(S2), dict(transfer(S3), compressed_bytes=300)]}, {"stream_compressed": True}),
    ("the newest stream went plain", {"stream_compressed": True},
     {"status": "ok", "transfers": [transfer(S3)]}, {"stream_compressed": False}),
    ("nothing sent: what the last stream did is kept", {"stream_compressed": False},
     {"status": "ok"}, {"stream_compressed": False}),
    ("never sent: unknown", None, {"status": "ok"}, {"stream_compressed": None}),
    ("the newest stream was received in a plain host's shell", None,
     {"status": "ok", "transfers": [transfer(S2), dict(transfer(S3), receive_in_shell=True)]}, {"receive_in_shell": True}),
    ("the newest stream went through serve", {"receive_in_shell": True},
     {"status": "ok", "transfers": [dict(transfer(S2), receive_in_shell=True), transfer(S3)]},
     {"receive_in_shell": False}),
    ("nothing sent: where the last stream was received is kept", {"receive_in_shell": True},
     {"status": "ok"}, {"receive_in_shell": True}),
    ("a failed transfer says nothing of the host", {"receive_in_shell": False},
     {"status": "failed", "error": "e", "transfers": [dict(transfer(S3, "failed"), receive_in_shell=True)]},
     {"receive_in_shell": False}),
    ("never received: unknown", None, {"status": "ok"}, {"receive_in_shell": None}),
]


@pytest.mark.parametrize("case, before, dest, expected", DEST_CASES, ids=[c[0] for c in DEST_CASES])
def test_destination_records(case, before, dest, expected):
    previous = {"destinations": {"/b": before}} if before else None
    state = run(previous, result([dict({"id": "/b"}, **dest)]))
    record = state["destinations"]["/b"]
    assert {k: record[k] for k in expected} == expected


def test_lock_runs_count_up_and_reset():
    locked = {S3: {"locks": ["/b"], "parent_locks": []}}
    failing = [{"id": "/b", "status": "failed", "error": "e", "transfers": [transfer(S3, "failed")]}]
    state = run(None, result(failing, locks=locked, failed=True))
    state = run(state, result(failing, locks=locked, failed=True))
    assert (state["destinations"]["/b"]["locks"], state["destinations"]["/b"]["locked_runs"]) == (1, 2)
    state = run(state, result([{"id": "/b", "status": "ok", "transfers": [transfer(S3)]}]))
    assert (state["destinations"]["/b"]["locks"], state["destinations"]["/b"]["locked_runs"]) == (0, 0)


def test_a_destination_left_out_of_a_run_is_kept():
    state = run(None, result([{"id": "/b", "status": "ok"}, {"id": "/c", "status": "ok"}]))
    state = run(state, result([{"id": "/b", "status": "ok"}]), started=200.0)
    assert state["destinations"]["/c"]["last_run"] == 100.0


def test_verify_is_recorded_beside_the_run():
    state = run(None, result([{"id": "/b", "status": "ok"}]))
    state = record_verify(state, {"destination": "/b", "snapshot": S3, "ok": False,
                                  "problems": ["p%d" % i for i in range(8)]}, job="home", prefix="", when=300.0)
    verify = state["destinations"]["/b"]["verify"]
    assert (verify["ok"], verify["time"], verify["problems"][-1], len(verify["problems"])) == (False, 300.0, "...", 6)
    assert state["destinations"]["/b"]["newest_backup"] == S3  # the run's record is untouched


def test_metrics_render_every_figure_once_with_labels():
    state = run(None, result([{"id": 'ssh://u@h:22/b"x', "status": "failed", "error": "e",
                               "transfers": [transfer(S3, "failed")]},
                              {"id": "/b", "status": "ok", "transfers": [transfer(S3, size=5)]}],
                             failed=True, locks={S3: {"locks": ['ssh://u@h:22/b"x'], "parent_locks": []}}))
    text = render("home", state)
    lines = text.splitlines()
    assert 'btrfs_backup_last_run_success{backup_job="home"} 0' in lines
    assert 'btrfs_backup_destination_failed{backup_job="home",destination="ssh://u@h:22/b\\"x"} 1' in lines
    assert 'btrfs_backup_destination_failed{backup_job="home",destination="/b"} 0' in lines
    assert 'btrfs_backup_last_run_sent_bytes{backup_job="home",destination="/b"} 5' in lines
    assert 'btrfs_backup_outstanding_locks{backup_job="home",destination="ssh://u@h:22/b\\"x"} 1' in lines
    assert 'btrfs_backup_max_age_seconds{backup_job="home"} 7200' in lines
    assert sum(1 for line in lines if line.startswith("# TYPE ")) == len({l.split("{")[0] for l in lines if not l.startswith("#")})
    # a destination never synced has no last success: the figure is left out, not 0
    assert 'btrfs_backup_last_success_timestamp_seconds{backup_job="home",destination="ssh://u@h:22/b\\"x"}' not in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_promtool_accepts_the_metrics():
    state = run(None, result([{"id": "/b", "status": "ok", "transfers": [transfer(S3)]}]))
    state = record_verify(state, {"destination": "/b", "snapshot": S3, "ok": True, "problems": []},
                          job="home", prefix="", when=300.0)
    checked = subprocess.run(["promtool", "check", "metrics"], input=render("home", state),
                             capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), \
        checked.stdout + checked.stderr


# (case, recorded state, configured max age, expected max_age_seconds in the metrics)
CONFIGURATION_CASES = [
    ("a changed max age replaces the recorded one", {"max_age_seconds": 7200, "destinations": {}}, 86400, 86400),
    ("no max age configured keeps the recorded one", {"max_age_seconds": 7200, "destinations": {}}, None, 7200),
    ("a job that never ran: its configuration only", None, 86400, 86400),
]


@pytest.mark.parametrize("case, recorded, max_age, expected", CONFIGURATION_CASES,
                         ids=[c[0] for c in CONFIGURATION_CASES])
def test_metrics_follow_the_configuration(case, recorded, max_age, expected):
    text = render("home", with_configuration(recorded, max_age=max_age))
    assert 'btrfs_backup_max_age_seconds{backup_job="home"} %d' % expected in text
    if recorded is None:
        assert [line for line in text.splitlines() if not line.startswith("#")] == [
            'btrfs_backup_max_age_seconds{backup_job="home"} %d' % expected]


DEST = "ssh://root@127.0.0.1:22/backups"
STAGED = {S3: {DEST: {"staged_bytes": 63, "stream_bytes": 100, "time": 2000}}}
LOCKED = {S3: {"locks": [DEST]}}
RECORDED = {"last_run": {"start": 1000}, "destinations": {DEST: {"status": "failed", "resumable": {
    "snapshot": S3, "staged_bytes": 30, "stream_bytes": 100, "percent": 30}}}}


@pytest.mark.parametrize("state, staged, locks, shown", [
    (None, STAGED, LOCKED, "resumable transfer of %s at 63%%" % S3),  # a first run killed outright
    (RECORDED, STAGED, LOCKED, "resumable transfer of %s at 63%%" % S3),  # killed after the recorded run
    (dict(RECORDED, last_run={"start": 3000}), STAGED, LOCKED, "resumable transfer of %s at 30%%" % S3),
    (None, STAGED, {S3: {"parent_locks": [DEST]}}, None),  # not locked: it arrived, the figure is old
    (None, STAGED, {}, None),
    (None, {}, LOCKED, None),
])
def test_the_share_beside_the_lock_file_is_shown_where_the_run_record_has_none_newer(state, staged, locks, shown):
    merged = with_staged(state, staged, locks)
    record = ((merged or {}).get("destinations") or {}).get(DEST) or {}
    assert resumable_text(record) == shown


def sent(name, mode, parent=None):
    return dict(transfer(name), mode=mode, parent=parent)


# (case, destination id, previous record, this run's transfers, the newest backup's chain)
CHAIN_CASES = [
    ("a full archive", "borg:/r", None, [sent(S3, "full")], 1),
    ("incremental after a known chain", "restic:/r", {"newest_backup": S2, "archive_chain": 2},
     [sent(S3, "incremental", S2)], 3),
    ("two in one run", "borg+ssh://u@h/r", {"newest_backup": S1, "archive_chain": 1},
     [sent(S2, "incremental", S1), sent(S3, "incremental", S2)], 3),
    ("a full archive starts a new chain", "borg:/r", {"newest_backup": S2, "archive_chain": 6},
     [sent(S3, "full")], 1),
    ("incremental from an unknown chain", "restic:/r", {"newest_backup": S2}, [sent(S3, "incremental", S2)], None),
    ("incremental from another parent", "borg:/r", {"newest_backup": S2, "archive_chain": 2},
     [sent(S3, "incremental", S1)], None),
    ("nothing sent keeps the chain", "borg:/r", {"newest_backup": S3, "archive_chain": 4}, [], 4),
    ("a btrfs destination has none", "/b", None, [sent(S3, "full")], None),
]


@pytest.mark.parametrize("case, dest_id, before, transfers, chain", CHAIN_CASES, ids=[c[0] for c in CHAIN_CASES])
def test_an_archive_destination_records_the_chain_a_restore_replays(case, dest_id, before, transfers, chain):
    previous = {"destinations": {dest_id: before}} if before else None
    state = run(previous, result([{"id": dest_id, "status": "ok", "transfers": transfers}]))
    assert state["destinations"][dest_id]["archive_chain"] == chain


def test_the_chain_is_a_metric_and_a_text_after_the_newest_backup():
    from engine.model.run_record import archive_chain_text

    state = run({"destinations": {"borg:/r": {"newest_backup": S2, "archive_chain": 2}}},
                result([{"id": "borg:/r", "status": "ok", "transfers": [sent(S3, "incremental", S2)]}]))
    assert 'btrfs_backup_archive_chain_archives{backup_job="home",destination="borg:/r"} 3' in render("home", state)
    assert archive_chain_text(state["destinations"]["borg:/r"]) == " (chain of 3 archives)"
    assert archive_chain_text({"archive_chain": 1}) == " (full archive)"
    assert archive_chain_text({"archive_chain": None}) == ""
