"""A job's last-run state and job lock live outside the source, for real: no snapshot and no backup
carries them, status still shows the last run, a state file of an earlier version is migrated, and
a writable restore drops the run files that old backups carry."""

from __future__ import annotations

import json
import os

from cli_helpers import (
    JOB_LOCK,
    LAST_RUN_RECORD,
    LOCK_FILE,
    job_state_folder,
    ok,
    run_cli,
    run_raw,
    run_subcommand,
    snapshot_names,
)
from support.trees import assert_same_tree

FS_SIZE = "512M"


def status_json(*args) -> dict:
    done = run_raw("status", "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    [job] = json.loads(done.stdout)["jobs"]
    return job


def files_in(folder) -> set:
    """The plain files' names in a folder (not its subvolumes nor folders)."""
    return {e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)}


def test_no_snapshot_and_no_backup_carries_the_run_state_or_the_job_lock(src, dst):
    dest, snaps = dst / "backups", src / "snapshot"
    ok(src, dest)
    second = ok(src, dest).result["snapshot"]["name"]  # taken after the first run's record

    for folder in (snaps, snaps / second / "snapshot", dest / second / "snapshot"):
        assert not files_in(folder) & {LAST_RUN_RECORD, JOB_LOCK}, (folder, files_in(folder))
    state_folder = job_state_folder()
    assert {"last-run.json", "lock"} <= files_in(state_folder)
    record = json.loads((state_folder / "last-run.json").read_text())
    assert record["last_run"]["snapshot"] == second and record["snapshot_folder"] == str(snaps)
    # status finds it there and shows the last run
    job = status_json(src, dest)
    assert job["state"]["last_run"]["snapshot"] == second and job["state"]["last_run"]["ok"]


def test_a_state_file_of_an_earlier_version_is_read_then_moved(src, dst):
    dest, snaps = dst / "backups", src / "snapshot"
    first = ok(src, dest).result["snapshot"]["name"]
    state_folder = job_state_folder()
    # What an earlier version left: the state and the job lock in the snapshot folder.
    state = json.loads((state_folder / "last-run.json").read_text())
    state["destinations"]["ssh://old@192.0.2.1/backups"] = {"status": "ok", "error": None, "locks": 0,
                                                            "newest_backup": first}
    (snaps / LAST_RUN_RECORD).write_text(json.dumps(state))
    (snaps / JOB_LOCK).write_text("12345\n")
    (state_folder / "last-run.json").unlink()

    # status reads the old place until a run has moved it
    job = status_json(src, dest)
    assert job["state"]["last_run"]["snapshot"] == first
    assert "ssh://old@192.0.2.1/backups" in job["state"]["destinations"]

    second = ok(src, dest).result["snapshot"]["name"]

    assert not files_in(snaps) & {LAST_RUN_RECORD, JOB_LOCK}, files_in(snaps)
    moved = json.loads((state_folder / "last-run.json").read_text())
    assert moved["last_run"]["snapshot"] == second
    assert moved["destinations"]["ssh://old@192.0.2.1/backups"]["newest_backup"] == first  # carried over
    assert status_json(src, dest)["state"]["last_run"]["snapshot"] == second


def test_a_writable_restore_leaves_the_sources_run_files_behind(src, dst, restore_fs):
    """A backup made by an earlier version carries the run's files in its snapshot folder (here a
    failed run's record); a writable restore removes them and says so, the data comes back whole."""
    dest, snaps = dst / "backups", src / "snapshot"
    snaps.mkdir()
    (snaps / LAST_RUN_RECORD).write_text(json.dumps({
        "version": 1, "job": "data", "destinations": {},
        "last_run": {"ok": False, "errors": ["no snapshot taken, as no destination can take it"]}}))
    (snaps / LOCK_FILE).write_text("{}\n")
    name = ok(src, dest).result["snapshot"]["name"]
    assert LAST_RUN_RECORD in files_in(dest / name / "snapshot")  # the old backup's content

    kept = restore_fs / "as-received"
    writable = restore_fs / "home"
    as_received = run_subcommand("restore", dest, kept)
    done = run_subcommand("restore", "-W", dest, writable)

    assert as_received.code == 0 and done.code == 0, done.explain()
    assert files_in(kept / "snapshot") == {LAST_RUN_RECORD, LOCK_FILE}  # a read-only restore is the backup
    assert files_in(writable / "snapshot") == set()
    assert sorted(done.result["stale_files_removed"]) == sorted(
        str(writable / "snapshot" / n) for n in (LAST_RUN_RECORD, LOCK_FILE))
    for entry in os.listdir(src):
        if entry != "snapshot":
            assert_same_tree(src / entry, writable / entry)
    # the source's own status shows its last run, not the restored record's error
    job = status_json(src, dest)
    assert job["state"]["last_run"]["ok"] and job["state"]["last_run"]["errors"] == []


def test_a_state_folder_inside_a_folder_a_user_owns_is_refused(src, dst, tmp_path, monkeypatch):
    """A receive user owns its home /var/lib/btrfs-backup: on a host that is also a source, it could
    swap the state folder for a link and make root write where it wants. The run refuses it."""
    home = tmp_path / "btrfs-backup"
    home.mkdir()
    os.chown(home, 4242, 4242)
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(home / "jobs"))

    refused = run_cli(src, dst)

    assert refused.code == 2, refused.explain()  # a setting to fix, as any bad input
    assert "the job state folder %s/jobs" % home in refused.stderr, refused.stderr
    assert "is owned by uid 4242, not by root" in refused.stderr, refused.stderr
    assert list(home.iterdir()) == []  # root wrote nothing there
    assert snapshot_names(src / "snapshot") == [] and snapshot_names(dst) == []  # nothing was done

    os.chown(home, 0, 0)
    ok(src, dst)
    assert (home / "jobs").is_dir() and snapshot_names(dst) == snapshot_names(src / "snapshot")


def test_a_source_named_through_a_symbolic_link_is_the_real_subvolume_and_the_same_job(src, dst, tmp_path):
    """`/srv/link -> /srv/pool/real`: the link backs up the real subvolume, and whichever path
    names it, it is one job (one state, one name, one chain of snapshots)."""
    dest, snaps = dst / "backups", src / "snapshot"
    link = tmp_path / "link"
    link.symlink_to(src)

    first = run_cli(link, dest)
    assert first.code == 0 and not first.result["failed"], first.explain()
    second = ok(src, dest)

    assert snapshot_names(snaps) == [first.result["snapshot"]["name"], second.result["snapshot"]["name"]]
    assert not (link / "snapshot").is_symlink() and snapshot_names(dest) == snapshot_names(snaps)
    record = json.loads((job_state_folder() / "last-run.json").read_text())  # one job
    assert record["job"] == src.name and record["snapshot_folder"] == str(snaps)
    for path in (link, src):
        job = status_json(path, dest)
        assert job["job"] == src.name and job["status"] == "OK", job
        assert job["state"]["last_run"]["snapshot"] == second.result["snapshot"]["name"]
