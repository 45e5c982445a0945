"""The job runner's hooks over a fake host: when each kind runs, what a failing one does to the run,
that check mode runs none, and that a bad command line changes nothing."""

import datetime
import os

import pytest

from engine.run.job import JobConfig, run_job
from support.fake_host import FakeHost

NOW = datetime.datetime(2026, 1, 3, 0, 0, 0)


@pytest.fixture
def host(tmp_path):
    fake = FakeHost(tmp_path / "host")
    os.makedirs(fake.root)
    fake.subvolume(fake.path("data"))
    os.makedirs(fake.path("dest"))
    return fake


def _note(journal, word):
    """A hook command that appends WORD and the snapshot it was told to the journal."""
    return "sh -c 'echo %s \"$BTRFS_BACKUP_SNAPSHOT_NAME\" \"$BTRFS_BACKUP_STATUS\" >> %s'" % (word, journal)


def _run(host, journal, check_mode=False, **settings):
    config = JobConfig(source=host.path("data"), destinations=[host.path("dest")], now=NOW, check_mode=check_mode,
                       job_name="home", after_snapshot=[_note(journal, "after_snapshot")],
                       after_run=[_note(journal, "after_run")], **settings)
    return run_job(config, runner=host)


def _journal(path):
    return [" ".join(line.split()) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_kind_of_hook_runs_in_its_place(host, tmp_path):
    journal = tmp_path / "journal"
    result = _run(host, journal, before_snapshot=[_note(journal, "before_snapshot")])
    assert not result.failed, result.errors
    assert _journal(journal) == ["before_snapshot", "after_snapshot 20260103-000000",
                                 "after_run 20260103-000000 success"]


def test_a_failing_before_hook_aborts_before_the_snapshot_and_the_after_hooks_still_run(host, tmp_path):
    journal = tmp_path / "journal"
    result = _run(host, journal, before_snapshot=["sh -c 'echo no database >&2; exit 2'",
                                                  _note(journal, "never")])
    assert result.failed and result.snapshot is None
    assert not [s for s in result.steps if type(s).__name__ in ("TakeSnapshot", "Send")]
    [error] = result.errors
    assert error.startswith("before_snapshot hook sh -c 'echo no database >&2; exit 2' failed with exit status 2")
    assert error.endswith("its stderr ended with: no database: no snapshot was taken")
    assert _journal(journal) == ["after_snapshot", "after_run failed"]


def test_a_failing_before_hook_set_to_warn_is_a_warning(host, tmp_path):
    journal = tmp_path / "journal"
    result = _run(host, journal, before_snapshot=["false"], before_snapshot_failure="warn")
    assert not result.failed and result.snapshot["name"] == "20260103-000000"
    assert result.warnings == ["before_snapshot hook false failed with exit status 1"]


def test_check_mode_runs_no_hook_and_plans_what_a_run_without_hooks_plans(host, tmp_path):
    journal = tmp_path / "journal"
    checked = _run(host, journal, check_mode=True, before_snapshot=[_note(journal, "before_snapshot")])
    plain = run_job(JobConfig(source=host.path("data"), destinations=[host.path("dest")], now=NOW,
                              check_mode=True), runner=host)
    assert _journal(journal) == [] and checked.plan == plain.plan


@pytest.mark.parametrize("settings, problem", [
    ({"before_snapshot": ["psql -c 'CHECKPOINT"]}, "before_snapshot command \"psql -c 'CHECKPOINT\" cannot be split"),
    ({"hook_timeout": "soon"}, "hook_timeout"),
    ({"before_snapshot_failure": "ignore"}, "before_snapshot_failure 'ignore' is not one of abort, warn"),
    ({"ping_url": "hc-ping.com/secret-uuid"}, "ping_url (a URL) is not an http:// or https:// URL"),
])
def test_bad_hook_settings_change_nothing(host, tmp_path, settings, problem):
    journal = tmp_path / "journal"
    result = _run(host, journal, **settings)
    assert result.failed and problem in result.errors[0] and "secret" not in result.errors[0]
    assert result.steps == [] and _journal(journal) == []
