# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: a job's hook commands (their argv, the outcome a run hands to after-run hooks, what a
failing before-snapshot hook does to the run) and the bounded record of a hook's output."""

from __future__ import annotations

import collections

from .errors import ConfigError

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional

BEFORE_SNAPSHOT, AFTER_SNAPSHOT, AFTER_RUN = "before_snapshot", "after_snapshot", "after_run"
ABORT, WARN = "abort", "warn"  # what a failing before_snapshot hook does to the run
FAILURE_CHOICES = (ABORT, WARN)
DEFAULT_TIMEOUT = "5m"

# The outcome of a run, as after_run hooks see it in BTRFS_BACKUP_STATUS.
SUCCESS, FAILED = "success", "failed"

# How much of a hook's output is kept: lines longer than this are cut; the log gets the first
# lines as they come and the last ones at the end, the error message the last lines of stderr.
MAX_LINE = 2000
LOGGED_LINES = 100
TAIL_LINES = 20


def hook_argv(command: str, setting: str = BEFORE_SNAPSHOT) -> list[str]:
    """A hook's command line as argv, split as a POSIX shell splits words (no shell runs it:
    `sh -c '...'` where one is wanted); ConfigError for an empty or unbalanced line."""
    import shlex  # here: only a job with hooks needs it

    try:
        argv = shlex.split(command or "")
    except ValueError as err:
        raise ConfigError(f"{setting} command {command!r} cannot be split into words: {err}")
    if not argv:
        raise ConfigError(f"{setting} command {command!r} is empty")
    return argv


def hook_argvs(commands, setting: str) -> list[list[str]]:
    """Every command line of a hook setting as argv (checked before the run changes anything)."""
    return [hook_argv(command, setting) for command in commands or ()]


def check_failure_choice(value: str) -> str:
    if value not in FAILURE_CHOICES:
        raise ConfigError(f"before_snapshot_failure {value!r} is not one of {', '.join(FAILURE_CHOICES)}")
    return value


def describe(argv: list[str]) -> str:
    """A hook as the log and error messages name it: its command line, quoted as a shell would."""
    import shlex

    text = " ".join(shlex.quote(word) for word in argv)
    return text if len(text) <= 200 else text[:197] + "..."


def run_environment(*, job: str, source: str, snapshot: Optional[dict], failed: bool,
                    destinations: list, errors: list) -> dict:
    """The variables that tell an after_run hook how the run went (each a string; lists one item
    a line): the job's name, its source, the snapshot this run took (empty: none), success or
    failed, every destination, the ones that failed, and the run's errors."""
    return {
        "BTRFS_BACKUP_JOB": job,
        "BTRFS_BACKUP_SOURCE": source or "",
        "BTRFS_BACKUP_SNAPSHOT": (snapshot or {}).get("path") or "",
        "BTRFS_BACKUP_SNAPSHOT_NAME": (snapshot or {}).get("name") or "",
        "BTRFS_BACKUP_STATUS": FAILED if failed else SUCCESS,
        "BTRFS_BACKUP_DESTINATIONS": "\n".join(d.id for d in destinations),
        "BTRFS_BACKUP_FAILED_DESTINATIONS": "\n".join(d.id for d in destinations if d.status == "failed"),
        "BTRFS_BACKUP_ERRORS": "\n".join(errors),
    }


def snapshot_environment(*, job: str, source: str, snapshot: Optional[dict] = None) -> dict:
    """What a before_snapshot hook is told (the job and its source), and an after_snapshot hook
    (also the snapshot: empty when none was taken)."""
    return {"BTRFS_BACKUP_JOB": job, "BTRFS_BACKUP_SOURCE": source or "",
            "BTRFS_BACKUP_SNAPSHOT": (snapshot or {}).get("path") or "",
            "BTRFS_BACKUP_SNAPSHOT_NAME": (snapshot or {}).get("name") or ""}


class HookOutcome:
    """How one hook ended: its exit status (None: killed at its timeout) and its output's tails."""

    __slots__ = ("argv", "returncode", "timed_out", "stderr_tail", "error")

    def __init__(self, argv, returncode=None, *, timed_out=False, stderr_tail=(), error=None):
        self.argv = argv
        self.returncode = returncode
        self.timed_out = timed_out
        self.stderr_tail = list(stderr_tail)
        self.error = error  # it could not be started (e.g. no such program)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None


def failure_message(setting: str, outcome: HookOutcome, timeout: float) -> str:
    """What went wrong with a hook: its command, how it ended and the last lines of its stderr."""
    what = f"{setting} hook {describe(outcome.argv)}"
    if outcome.error:
        how = f"could not be started: {outcome.error}"
    elif outcome.timed_out:
        how = f"ran longer than its timeout ({timeout:g}s) and was killed with its process group"
    elif outcome.returncode < 0:
        how = f"was killed by signal {-outcome.returncode}"
    else:
        how = f"failed with exit status {outcome.returncode}"
    tail = " | ".join(line for line in outcome.stderr_tail if line.strip())
    return f"{what} {how}" + (f"; its stderr ended with: {tail}" if tail else "")


def before_snapshot_verdict(on_failure: str, outcome: HookOutcome) -> Optional[str]:
    """What a run does after a before_snapshot hook: None (it went well: on), WARN (on, with a
    warning) or ABORT (no snapshot, the run fails)."""
    if outcome.ok:
        return None
    return WARN if on_failure == WARN else ABORT


def snapshot_hooks_problem(takes_snapshots: bool, before: list, after: list, snapper_config: str) -> Optional[str]:
    """None if the job's snapshot hooks can run, else why not: a job whose snapshots snapper takes
    has no snapshot of its own to run them around (a quiescing hook that silently never ran would
    leave backups the user believes consistent)."""
    if takes_snapshots or not (before or after):
        return None
    given = " and ".join(name for name, commands in ((BEFORE_SNAPSHOT, before), (AFTER_SNAPSHOT, after)) if commands)
    return (f"{given} cannot run: snapper takes this job's snapshots (configuration {snapper_config}); "
            f"quiesce through snapper's own hooks, or let this job take its snapshots")


class OutputLines:
    """One stream of a hook's output, fed in chunks as it comes, in bounded memory: whole lines
    (cut at MAX_LINE characters) are handed out to be logged up to LOGGED_LINES; after that only
    the last TAIL_LINES are kept and counted, to be logged at the end."""

    def __init__(self, logged_lines: int = LOGGED_LINES, tail_lines: int = TAIL_LINES, max_line: int = MAX_LINE):
        self.logged_lines = logged_lines
        self.max_line = max_line
        self.partial = ""
        self.partial_cut = False
        self.seen = 0  # whole lines so far
        self.tail = collections.deque(maxlen=tail_lines)  # the last lines, logged or not

    def feed(self, text: str) -> list[str]:
        """Take a chunk of output; the lines to log now."""
        to_log = []
        pieces = text.split("\n")
        if self.partial_cut:  # the rest of a line that was cut: dropped up to its end
            if len(pieces) == 1:
                return []
            pieces, self.partial_cut = pieces[1:], False
        else:
            pieces[0] = self.partial + pieces[0]
        self.partial = pieces.pop()
        for line in pieces:
            to_log.extend(self._line(line))
        if len(self.partial) > self.max_line:
            to_log.extend(self._line(self.partial[:self.max_line] + " [cut]"))
            self.partial, self.partial_cut = "", True
        return to_log

    def finish(self) -> list[str]:
        """The end of the stream: the lines still to log (the last line without a newline)."""
        if self.partial and not self.partial_cut:
            line, self.partial = self.partial, ""
            return self._line(line)
        return []

    def _line(self, line: str) -> list[str]:
        if len(line) > self.max_line:
            line = line[:self.max_line] + " [cut]"
        self.seen += 1
        self.tail.append(line)
        return [line] if self.seen <= self.logged_lines else []

    @property
    def not_logged(self) -> int:
        """Lines that were not logged as they came (only the last ones are, at the end)."""
        return max(0, self.seen - self.logged_lines)

    def closing_lines(self) -> list[str]:
        """The last lines that were not logged as they came (at most the tail), for the end."""
        return list(self.tail)[-min(self.not_logged, len(self.tail)):] if self.not_logged else []
