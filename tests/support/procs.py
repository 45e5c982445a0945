"""Processes of the tests and benchmarks: those below a PID (from the kernel's per-task child
lists, or every process's parent), and waiting for a server they started to listen, and stopping it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Callable, List, Optional


#: Whether this kernel keeps per-task child lists (CONFIG_PROC_CHILDREN): quick enough to catch a
#: process right after it starts.
_TASK_CHILD_LISTS = os.path.exists("/proc/self/task/%d/children" % os.getpid())


def children(pid: int) -> List[int]:
    """The PIDs of `pid`'s children (none if it has gone)."""
    if not _TASK_CHILD_LISTS:
        return _children_by_parent(pid)
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


def _children_by_parent(pid: int) -> List[int]:
    """`pid`'s children from every process's parent (/proc/PID/stat): slower, but on every kernel."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
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


class NotListening(RuntimeError):
    """A server a test started exited, or was not ready in time."""


def port_open(host: str, port: int) -> bool:
    """Whether something on this network namespace's host:port accepts a connection (within 0.5 s)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_listening(process: subprocess.Popen, host: str, port: int, timeout: float,
                   ready: Optional[Callable[[float], Optional[str]]] = None) -> None:
    """Return once `process`, a server a test started, accepts connections on host:port; given
    `ready`, once ready(seconds left) finds it ready instead (None, or else why it is not yet).
    NotListening when the process exits first or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    why = "no connection accepted"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotListening(f"exited with {process.returncode}")
        if ready is None:
            why = None if port_open(host, port) else "no connection accepted"
        else:
            why = ready(deadline - time.monotonic())
        if why is None:
            return
        time.sleep(0.1)
    raise NotListening(f"not ready on {host}:{port} after {timeout}s ({why})")
