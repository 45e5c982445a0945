# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Run `send [| pv] | receive` as connected processes: no shell, the stream never enters Python."""

import os
import signal
import time

from .errors import TransferError


class Stage:
    """One process of a pipeline; `capture_stderr=False` lets it draw on the terminal (pv)."""

    def __init__(self, name, argv, capture_stderr=True):
        self.name = name
        self.argv = argv
        self.capture_stderr = capture_stderr


class PipelineResult:
    def __init__(self, bytes_sent, seconds):
        self.bytes_sent = bytes_sent
        self.seconds = seconds


def _stderr_log():
    """A nameless in-memory file for one stage's stderr (read back when the stage has ended)."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("btrfs-backup-stderr", os.MFD_CLOEXEC), "w+b")
    import tempfile  # no memfd (not Linux): an unlinked temp file does the same
    return tempfile.TemporaryFile()


def _written_bytes(pid):
    """Bytes a finished (not yet reaped) process wrote, from /proc/PID/io; None if unknown."""
    try:
        with open("/proc/%d/io" % pid) as handle:
            for line in handle:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _wait_keep_zombie(pid):
    """Wait for `pid` to exit without reaping it, so its /proc entry can still be read."""
    if not hasattr(os, "waitid"):
        return
    while True:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def run_pipeline(runner, stages):
    """Start every stage, connect stdout to stdin, wait for all, check every exit status.

    Raises TransferError naming the failing stage(s) with their stderr; on any exception
    (including KeyboardInterrupt/SIGTERM) every stage still running is stopped.
    """
    import subprocess  # here, not at the top: runs with nothing to send never need it (start-up time)

    procs, logs = [], []
    started = time.monotonic()
    try:
        previous_stdout = subprocess.DEVNULL
        for index, stage in enumerate(stages):
            last = index == len(stages) - 1
            log = _stderr_log() if stage.capture_stderr else None
            logs.append(log)
            try:
                proc = runner.popen(
                    stage.argv,
                    stdin=previous_stdout,
                    stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                    stderr=log if log is not None else None,
                )
            except OSError as err:
                raise TransferError("cannot start %s (%s): %s" % (stage.name, stage.argv[0], err.strerror))
            if previous_stdout is not subprocess.DEVNULL:
                previous_stdout.close()  # only the next stage may hold the read end
            previous_stdout = proc.stdout
            procs.append(proc)
        _wait_keep_zombie(procs[0].pid)
        bytes_sent = _written_bytes(procs[0].pid)
        codes = [proc.wait() for proc in procs]
    except BaseException:
        _stop(procs)
        raise
    finally:
        seconds = time.monotonic() - started
        errors = []
        for stage, log in zip(stages, logs):
            text = ""
            if log is not None:
                log.seek(0)
                text = log.read().decode("utf-8", "replace")
                log.close()
            errors.append(text)
    failed = [(stage, code, err) for stage, code, err in zip(stages, codes, errors) if code != 0]
    if failed:
        raise TransferError(_describe_failure(failed))
    return PipelineResult(bytes_sent, seconds)


def _describe_failure(failed):
    parts = []
    for stage, code, err in failed:
        status = "killed by signal %d" % -code if code < 0 else "exit status %d" % code
        if code == 255 and os.path.basename(stage.argv[0]) == "ssh":
            status += ": the ssh connection failed or was lost"
        lines = [line for line in err.strip().splitlines() if line.strip()]
        detail = ": " + " / ".join(lines[-3:]) if lines else ""
        parts.append("%s failed (%s)%s" % (stage.name, status, detail))
    return "; ".join(parts)


def _stop(procs):
    import subprocess

    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
