"""Processes of the tests and benchmarks: those below a PID (from the kernel's per-task child
lists), and waiting for a server they started to listen, and stopping it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Callable, List, Optional


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
