"""engine.host.hooks: a hook runs without a shell, its output goes to the log in bounded amounts,
and past its timeout it is killed with every process it started."""

import logging
import os
import time

from engine.host import hooks as host_hooks
from engine.host.hooks import run_hook


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_a_hook_gets_its_environment_and_its_output_is_logged(caplog):
    caplog.set_level(logging.INFO, "btrfs_backup")
    outcome = run_hook(["sh", "-c", 'echo "job=$BTRFS_BACKUP_JOB"; echo oops >&2; exit 3'], timeout=10,
                       environment={"BTRFS_BACKUP_JOB": "home"}, label="after_run")
    assert (outcome.returncode, outcome.timed_out, outcome.ok) == (3, False, False)
    assert outcome.stderr_tail == ["oops"]
    assert "after_run [stdout]: job=home" in caplog.messages
    assert "after_run [stderr]: oops" in caplog.messages


def test_no_shell_reads_the_words():
    outcome = run_hook(["echo", "$HOME; false"], timeout=10, environment={}, label="before_snapshot")
    assert outcome.ok, (outcome.returncode, outcome.error, outcome.timed_out)


def test_a_program_that_does_not_exist_is_a_failure_that_says_so():
    outcome = run_hook(["/no/such/program"], timeout=10, environment={}, label="before_snapshot")
    assert not outcome.ok and "No such file" in outcome.error


def test_a_hook_past_its_timeout_is_killed_with_the_processes_it_started(tmp_path, monkeypatch):
    monkeypatch.setattr(host_hooks, "KILL_GRACE", 0.5)
    pidfile = tmp_path / "child"
    started = time.monotonic()
    # The child ignores SIGTERM: only the SIGKILL to the whole group ends it.
    outcome = run_hook(["sh", "-c", f"(trap '' TERM; sleep 60) & echo $! > {pidfile}; sleep 60"], timeout=0.5,
                       environment={}, label="before_snapshot")
    assert outcome.timed_out and not outcome.ok
    assert time.monotonic() - started < 5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_hook_that_prints_a_lot_is_logged_in_part_and_read_to_its_end(caplog):
    caplog.set_level(logging.INFO, "btrfs_backup")
    outcome = run_hook(["seq", "1", "300000"], timeout=30, environment={}, label="after_run")
    assert outcome.ok
    lines = [m for m in caplog.messages if m.startswith("after_run [stdout]")]
    assert len(lines) < 200
    assert lines[0] == "after_run [stdout]: 1" and lines[-1] == "after_run [stdout]: 300000"
    assert "after_run [stdout]: ... 299900 more lines, the last 20:" in lines


def test_a_child_left_running_does_not_hold_the_run(tmp_path):
    pidfile = tmp_path / "child"
    started = time.monotonic()
    outcome = run_hook(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo started"], timeout=20,
                       environment={}, label="after_run")
    try:
        assert outcome.ok and time.monotonic() - started < 5
    finally:
        os.kill(int(pidfile.read_text()), 9)


def test_a_hook_that_closes_its_output_is_waited_for_not_killed():
    outcome = run_hook(["sh", "-c", "exec >/dev/null 2>&1; sleep 0.3; exit 4"], timeout=10, environment={},
                       label="after_run")
    assert (outcome.returncode, outcome.timed_out) == (4, False)


def test_a_hook_that_closes_its_output_and_hangs_is_killed_at_its_timeout(monkeypatch):
    monkeypatch.setattr(host_hooks, "KILL_GRACE", 0.5)
    outcome = run_hook(["sh", "-c", "exec >/dev/null 2>&1; sleep 60"], timeout=0.5, environment={},
                       label="after_run")
    assert outcome.timed_out and outcome.returncode is None
