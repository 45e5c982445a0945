"""engine.model.hooks: hook command lines as argv, the outcome's environment, abort or warn, the
failure message, and a hook's output kept in bounded memory."""

import pytest

from engine.model import hooks
from engine.model.errors import ConfigError
from engine.model.hooks import HookOutcome, OutputLines


class Dest:
    def __init__(self, dest_id, status):
        self.id, self.status = dest_id, status


ARGV_CASES = [
    ("sync", ["sync"]),
    ("psql -c 'CHECKPOINT'", ["psql", "-c", "CHECKPOINT"]),
    ("  fsfreeze --freeze /srv/db  ", ["fsfreeze", "--freeze", "/srv/db"]),
    ("sh -c 'echo $HOME > /tmp/x; true'", ["sh", "-c", "echo $HOME > /tmp/x; true"]),  # no shell of ours
    ('touch "/srv/a b"', ["touch", "/srv/a b"]),
]


@pytest.mark.parametrize("line, argv", ARGV_CASES)
def test_a_command_line_is_split_as_a_shell_would_but_never_run_by_one(line, argv):
    assert hooks.hook_argv(line) == argv


@pytest.mark.parametrize("line, problem", [
    ("", "before_snapshot command '' is empty"),
    ("   ", "is empty"),
    ("echo 'open", "cannot be split into words"),
])
def test_a_command_line_that_is_no_command_is_refused(line, problem):
    with pytest.raises(ConfigError, match=problem):
        hooks.hook_argv(line)


def test_the_after_run_environment_tells_the_outcome():
    env = hooks.run_environment(
        job="home", source="/home", snapshot={"name": "20260101-020000", "path": "/home/snapshot/20260101-020000"},
        failed=True, destinations=[Dest("/mnt/b1", "ok"), Dest("ssh://nas/b", "failed"), Dest("/mnt/b3", "failed")],
        errors=["ssh://nas/b: refused", "/mnt/b3: full"])
    assert env == {
        "BTRFS_BACKUP_JOB": "home", "BTRFS_BACKUP_SOURCE": "/home",
        "BTRFS_BACKUP_SNAPSHOT": "/home/snapshot/20260101-020000", "BTRFS_BACKUP_SNAPSHOT_NAME": "20260101-020000",
        "BTRFS_BACKUP_STATUS": "failed", "BTRFS_BACKUP_DESTINATIONS": "/mnt/b1\nssh://nas/b\n/mnt/b3",
        "BTRFS_BACKUP_FAILED_DESTINATIONS": "ssh://nas/b\n/mnt/b3",
        "BTRFS_BACKUP_ERRORS": "ssh://nas/b: refused\n/mnt/b3: full"}


def test_a_run_without_a_snapshot_hands_empty_values_and_every_value_is_a_string():
    env = hooks.run_environment(job="home", source=None, snapshot=None, failed=False, destinations=[], errors=[])
    assert env["BTRFS_BACKUP_STATUS"] == "success"
    assert env["BTRFS_BACKUP_SNAPSHOT"] == env["BTRFS_BACKUP_FAILED_DESTINATIONS"] == ""
    assert all(isinstance(value, str) for value in env.values())


@pytest.mark.parametrize("on_failure, outcome, verdict", [
    ("abort", HookOutcome(["true"], 0), None),
    ("warn", HookOutcome(["true"], 0), None),
    ("abort", HookOutcome(["false"], 1), "abort"),
    ("warn", HookOutcome(["false"], 1), "warn"),
    ("abort", HookOutcome(["sleep"], None, timed_out=True), "abort"),
    ("warn", HookOutcome(["nope"], error="No such file or directory"), "warn"),
    ("abort", HookOutcome(["nope"], error="No such file or directory"), "abort"),
])
def test_a_failing_before_snapshot_hook_aborts_or_warns_as_set(on_failure, outcome, verdict):
    assert hooks.before_snapshot_verdict(on_failure, outcome) == verdict


@pytest.mark.parametrize("outcome, words", [
    (HookOutcome(["pg", "-c", "CHECKPOINT"], 2, stderr_tail=["connecting", "", "FATAL: no such role"]),
     ["before_snapshot hook pg -c CHECKPOINT failed with exit status 2",
      "its stderr ended with: connecting | FATAL: no such role"]),
    (HookOutcome(["sleep", "60"], None, timed_out=True),
     ["sleep 60 ran longer than its timeout (1.5s) and was killed with its process group"]),
    (HookOutcome(["x"], -9), ["killed by signal 9"]),
    (HookOutcome(["/no/such"], error="No such file or directory"),
     ["/no/such could not be started: No such file or directory"]),
])
def test_the_failure_message_names_the_hook_how_it_ended_and_its_stderr(outcome, words):
    message = hooks.failure_message("before_snapshot", outcome, 1.5)
    for word in words:
        assert word in message


def test_the_choice_of_failure_is_checked():
    assert hooks.check_failure_choice("warn") == "warn"
    with pytest.raises(ConfigError, match="abort, warn"):
        hooks.check_failure_choice("ignore")


def test_output_lines_are_logged_as_they_come_and_split_across_chunks():
    lines = OutputLines()
    assert lines.feed("one\ntw") == ["one"]
    assert lines.feed("o\nthree") == ["two"]
    assert lines.finish() == ["three"]
    assert lines.not_logged == 0 and lines.closing_lines() == []


def test_a_hook_that_prints_a_lot_keeps_only_the_first_and_last_lines():
    lines = OutputLines(logged_lines=3, tail_lines=2)
    logged = []
    for chunk in ("".join("line %d\n" % n for n in range(i, i + 1000)) for i in range(0, 100000, 1000)):
        logged += lines.feed(chunk)
    assert logged == ["line 0", "line 1", "line 2"]
    assert lines.not_logged == 99997
    assert lines.closing_lines() == ["line 99998", "line 99999"]
    assert len(lines.tail) == 2


def test_a_line_without_end_is_cut_not_kept_whole():
    lines = OutputLines(max_line=10)
    logged = lines.feed("x" * 25)
    assert logged == ["x" * 10 + " [cut]"]
    assert lines.feed("y" * 10_000) == []  # the rest of that line is dropped as it comes
    assert lines.partial == ""
    assert lines.feed("yy\nnext\n") == ["next"]
    assert lines.feed("z" * 50 + "\n") == ["z" * 10 + " [cut]"]


@pytest.mark.parametrize("takes_snapshots, before, after, problem", [
    (True, ["sync"], ["sync"], None),
    (False, [], [], None),
    (False, ["fsfreeze --freeze /srv"], [], "before_snapshot cannot run: snapper takes this job's snapshots "
                                             "(configuration root)"),
    (False, [], ["sync"], "after_snapshot cannot run"),
    (False, ["a"], ["b"], "before_snapshot and after_snapshot cannot run"),
])
def test_snapshot_hooks_need_a_job_that_takes_its_snapshots(takes_snapshots, before, after, problem):
    found = hooks.snapshot_hooks_problem(takes_snapshots, before, after, "root")
    assert (found is None) if problem is None else found.startswith(problem)
