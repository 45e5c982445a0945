"""Processes below a PID, from the kernel's per-task child lists (for the tests and benchmarks)."""

from __future__ import annotations

import os
from typing import List


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
