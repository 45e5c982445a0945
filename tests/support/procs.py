"""Processes of the tests and benchmarks: those below a PID (from the kernel's per-task child
lists), and stopping a server they started."""

from __future__ import annotations

import os
import subprocess
from typing import List, Optional


def children(pid: int) -> List[int]:
    """The PIDs of `pid`'s children (none if it has gone)."""
    found = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                found.extend(int(c) for c in handle.read().split())
        except OSError:
            pass
    return found


def stop(process: Optional[subprocess.Popen], timeout: float = 5) -> None:
    """Stop a process started by a test (SIGTERM, then SIGKILL after `timeout`) and reap it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
