"""engine.host.joblock: one run at a time per job (rule 5), and --wait for a running run."""

import logging
import threading
import time

import pytest

from engine.host import joblock
from engine.host.joblock import JobLock
from engine.model.errors import JobBusyError


def test_without_wait_a_second_run_fails_at_once_naming_the_holder(tmp_path):
    path = str(tmp_path / "state" / "lock")
    with JobLock(path):
        started = time.monotonic()
        with pytest.raises(JobBusyError, match=r"in progress \(pid \d+ holds .*lock\)$"):
            with JobLock(path):
                pass
        assert time.monotonic() - started < 0.2


def test_a_waiting_run_fails_when_the_time_is_up_saying_how_long_it_waited(tmp_path, caplog):
    path = str(tmp_path / "lock")
    with JobLock(path), caplog.at_level(logging.INFO, logger="btrfs_backup"):
        started = time.monotonic()
        with pytest.raises(JobBusyError, match=r"in progress \(pid \d+ holds .*\) after waiting 1s for it"):
            with JobLock(path, wait=1, job="/home"):
                pass
        assert 0.9 < time.monotonic() - started < 2
    waiting = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waiting) == 1 and waiting[0].startswith("waiting for the running run of /home (pid ")


def test_a_waiting_run_goes_on_once_the_running_one_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(joblock, "POLL_SECONDS", 0.05)
    path = str(tmp_path / "lock")
    first = JobLock(path).__enter__()
    threading.Timer(0.3, first.__exit__, (None, None, None)).start()
    started = time.monotonic()
    with JobLock(path, wait=10):
        assert 0.25 < time.monotonic() - started < 5
        with open(path) as lock_file:
            assert lock_file.read().strip().isdigit()
