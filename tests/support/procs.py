"""Processes of the tests and benchmarks: those below a PID (from the kernel's per-task child
lists, or every process's parent), and a server they start: its log, waiting for it to listen, stopping it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence


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


class ServerProcess:
    """A server a test started in a session of its own, its output in a log in its temp folder;
    stopped by its PID, the folder removed (also at the end of a ``with``)."""

    name = "server"

    def __init__(self) -> None:
        self.workdir: Optional[Path] = None
        self.process: Optional[subprocess.Popen] = None
        self._log_handle = None

    @property
    def log_file(self) -> Path:
        """The server's stdout and stderr."""
        if self.workdir is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, RuntimeError):
            return f"(no {self.name} log)"

    def start(self):
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server (by its PID only) and remove its temp folder."""
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _launch(self, argv: Sequence[str]) -> None:
        self._log_handle = open(self.log_file, "ab")
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=self._log_handle, stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C aimed at pytest must not stop it before the teardown does.
            start_new_session=True,
        )

    def _terminate(self) -> None:
        process, self.process = self.process, None
        stop(process)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


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
