# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Effects: run one hook command (no shell) in its own process group, its output into the run's
log in bounded memory, killed with everything it started when it runs past its timeout."""

from __future__ import annotations

import os
import signal
import time

from ..model.hooks import HookOutcome, OutputLines, describe
from ..model.log import LOG


KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a hook's process group
DRAIN_AFTER_EXIT = 1.0  # seconds to read what a hook's children still write after it exited
_CHUNK = 65536


def run_hook(argv: list[str], *, timeout: float, environment: dict, label: str) -> HookOutcome:
    """Run `argv` with `environment` added to this process's, stdin from /dev/null; each line of
    its output is logged as '<label> [stdout|stderr]: LINE' (the first lines as they come, the
    last ones at the end). Past `timeout` seconds its process group gets SIGTERM, then SIGKILL."""
    import selectors
    import subprocess

    LOG.info("%s: running %s", label, describe(argv))
    try:
        # The engine runs without Ansible too: no run_command on the hosts of the role's timers.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                stderr=subprocess.PIPE, env=dict(os.environ, **environment),
                                start_new_session=True)  # its own process group, to kill it whole
    except OSError as err:
        return HookOutcome(argv, error=err.strerror or str(err))
    streams = {proc.stdout: ("stdout", OutputLines()), proc.stderr: ("stderr", OutputLines())}
    selector = selectors.DefaultSelector()
    for pipe in streams:
        os.set_blocking(pipe.fileno(), False)
        selector.register(pipe, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    timed_out, exited_at = False, None
    try:
        while selector.get_map():
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > DRAIN_AFTER_EXIT:
                    break  # a child it left behind holds the pipes: no longer read
            elif now >= deadline:
                timed_out = True
                _kill_group(proc)
                break
            wait = min(deadline - now, 0.2) if exited_at is None else 0.1
            for key, _events in selector.select(max(wait, 0.01)):
                _read(key.fileobj, streams, selector, label)
        if not timed_out:  # its output ended (closed pipes): it may still be running
            timed_out = not _exited_before(proc, deadline)
    finally:
        selector.close()
        if proc.poll() is None:  # past its timeout, or the run was stopped
            _kill_group(proc)
        for pipe, (name, lines) in streams.items():
            _log_end(label, name, lines)
            pipe.close()
    returncode = proc.wait()
    return HookOutcome(argv, None if timed_out else returncode, timed_out=timed_out,
                       stderr_tail=list(streams[proc.stderr][1].tail))


def _exited_before(proc, deadline: float) -> bool:
    import subprocess

    try:
        proc.wait(max(deadline - time.monotonic(), 0.01))
        return True
    except subprocess.TimeoutExpired:
        return False


def _read(pipe, streams, selector, label) -> None:
    name, lines = streams[pipe]
    try:
        chunk = os.read(pipe.fileno(), _CHUNK)
    except BlockingIOError:
        return
    if not chunk:
        selector.unregister(pipe)
        for line in lines.finish():
            LOG.info("%s [%s]: %s", label, name, line)
        return
    for line in lines.feed(chunk.decode("utf-8", "replace")):
        LOG.info("%s [%s]: %s", label, name, line)


def _log_end(label, name, lines) -> None:
    """The last lines of a stream that printed more than was logged as it came."""
    if lines.not_logged:
        closing = lines.closing_lines()
        LOG.info("%s [%s]: ... %d more lines, the last %d:", label, name, lines.not_logged, len(closing))
        for line in closing:
            LOG.info("%s [%s]: %s", label, name, line)


def _kill_group(proc) -> None:
    """SIGTERM to the hook's process group (it and whatever it started), SIGKILL if it lingers."""
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    # Whether or not the hook is gone, what it started may linger: the group gets SIGKILL.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
