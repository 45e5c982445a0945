"""Where a job's state and lock live (outside the source; their paths: test_job_identity), its migration
from the snapshot folder, and which files of a restored snapshot folder are a run's leftovers."""

import fcntl
import json
import os

import pytest

from engine.model.errors import ConfigError, JobBusyError
from engine.host.joblock import JobLock, remove_legacy_lock
from engine.frontends.jobspec import job_from_args
from engine.host.restore_target import is_stale_run_file, remove_stale_run_files
from engine.host.state_store import (LEGACY_JOB_LOCK_NAME, current_state_path, job_lock_path, load_state,
                                     save_state, state_root)
from engine.model.job_identity import LEGACY_STATE_FILE_NAME, job_identity


def identity(source, folder):
    """The identity of the job of `source` (a path) with the snapshot folder `folder`."""
    return job_identity(source_id=source, source_path=source, state_root=state_root(), snapshot_folder=folder)


def test_state_and_lock_are_in_the_jobs_folder_outside_the_source(job_state_dir):
    assert state_root() == str(job_state_dir)
    home = identity("/home", "/home/snapshot")
    for path in (home.state_path, job_lock_path(home)):
        assert path.startswith(str(job_state_dir) + "/") and not path.startswith("/home/")
    assert os.path.dirname(home.state_path) == os.path.dirname(job_lock_path(home))


def test_the_default_state_root_for_root_and_for_other_users(monkeypatch, tmp_path):
    monkeypatch.delenv("BTRFS_BACKUP_STATE_DIR")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert state_root() == "/var/lib/btrfs-backup/jobs"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_root() == str(tmp_path / "btrfs-backup" / "jobs")


def test_an_old_place_state_is_read_until_a_save_moves_it(tmp_path):
    folder = tmp_path / "home" / "snapshot"
    folder.mkdir(parents=True)
    source, snaps = str(tmp_path / "home"), str(folder)
    job = identity(source, snaps)
    old = folder / LEGACY_STATE_FILE_NAME
    old.write_text(json.dumps({"job": "home", "destinations": {"/b": {"newest_backup": "x"}}}))

    assert current_state_path(job) == str(old)
    assert load_state(job)["destinations"] == {"/b": {"newest_backup": "x"}}
    # A job spec (status, the info module) finds the same file.
    assert current_state_path(job_from_args([source, "/b"]).identity) == str(old)

    written = save_state(job, {"job": "home", "destinations": {}})

    assert written == job.state_path == current_state_path(job)
    assert not old.exists()
    assert load_state(job) == {"job": "home", "destinations": {}}


def test_without_any_state_the_new_place_is_named(tmp_path):
    job = identity(str(tmp_path), str(tmp_path / "snapshot"))
    assert current_state_path(job) == job.state_path
    assert load_state(job) is None


def test_the_job_lock_makes_its_folder_and_excludes_a_second_run(tmp_path):
    path = job_lock_path(identity(str(tmp_path), str(tmp_path / "snapshot")))
    with JobLock(path):
        assert os.path.isfile(path)
        with pytest.raises(JobBusyError, match="in progress"):
            with JobLock(path):
                pass


def test_an_old_job_lock_is_removed_unless_a_run_holds_it(tmp_path):
    old = tmp_path / LEGACY_JOB_LOCK_NAME
    remove_legacy_lock(str(old))  # none: nothing to do
    old.write_text("123\n")
    with open(old) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JobBusyError, match=str(old)):
            remove_legacy_lock(str(old))
    assert old.exists()
    remove_legacy_lock(str(old))
    assert not old.exists()


@pytest.mark.parametrize("name, stale", [
    (".outstanding_transfers", True),
    (".btrfs-backup.last-run.json", True),
    (".btrfs-backup.lock", True),
    (".btrfs-backup-restore-0123abcd", False),  # a restore's staging folder's prefix
    ("outstanding_transfers", False),
    ("notes.txt", False),
])
def test_which_files_of_a_restored_snapshot_folder_are_a_runs_leftovers(name, stale):
    assert is_stale_run_file(name) is stale


def test_stale_run_files_are_removed_from_the_top_and_first_level_folders_only(tmp_path):
    for rel in ("snapshot/.outstanding_transfers", "snapshot/.btrfs-backup.last-run.json",
                ".btrfs-backup.lock", "snapshot/keep.txt", "deep/er/.outstanding_transfers"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")

    removed = remove_stale_run_files(str(tmp_path))

    assert removed == sorted(str(tmp_path / r) for r in (
        ".btrfs-backup.lock", "snapshot/.btrfs-backup.last-run.json", "snapshot/.outstanding_transfers"))
    assert (tmp_path / "snapshot" / "keep.txt").exists()
    assert (tmp_path / "deep" / "er" / ".outstanding_transfers").exists()


def test_a_state_folder_under_a_folder_another_user_owns_is_refused(tmp_path, monkeypatch):
    # The receive user's home on a backup server that is also a source: it could swap `jobs` for a link.
    home = tmp_path / "btrfs-backup"
    home.mkdir()
    os.chown(home, 4242, 4242)
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(home / "jobs"))
    with pytest.raises(ConfigError, match=r"the job state folder .* is not safe: .*btrfs-backup is owned by "
                                          r"uid 4242, not by root.*BTRFS_BACKUP_STATE_DIR"):
        save_state(identity("/home", "/home/snapshot"), {"version": 1})
    with pytest.raises(ConfigError, match="not safe"):
        job_lock_path(identity("/home", "/home/snapshot"))
    assert list(home.iterdir()) == []  # nothing written there


def test_a_forecast_file_is_kept_for_root_alone_rewritten_only_on_a_change_and_never_trusted_damaged(job_state_dir):
    from engine.host.state_store import read_forecasts, update_forecasts

    home = identity("/home", "/home/snapshot")
    path = os.path.join(home.state_dir, "x-forecast.json")
    assert read_forecasts(home, "x-forecast.json") == {}  # none yet: nothing recorded
    update_forecasts(home, "x-forecast.json", {"a": {"n": 1}, "b": None})
    assert read_forecasts(home, "x-forecast.json") == {"a": {"n": 1}}
    assert os.stat(path).st_mode & 0o777 == 0o600
    os.utime(path, (1, 1))
    update_forecasts(home, "x-forecast.json", {"a": {"n": 1}, "b": None})  # the same: not written
    assert os.stat(path).st_mtime == 1
    update_forecasts(home, "x-forecast.json", {"a": None})
    assert read_forecasts(home, "x-forecast.json") == {} and os.stat(path).st_mtime != 1
    for damaged in ("{not json", "[1]"):
        with open(path, "w") as handle:
            handle.write(damaged)
        assert read_forecasts(home, "x-forecast.json") is None
        update_forecasts(home, "x-forecast.json", {"c": {"n": 2}})  # started anew
        assert read_forecasts(home, "x-forecast.json") == {"c": {"n": 2}}
