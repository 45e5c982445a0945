"""Fault injection for the integration tests: act on the live processes of a real run.

A run of `bin/btrfs-backup` is started in the background (`start_cli`). Its pipeline processes
(`btrfs send`, `btrfs receive`, the ssh client) are found through /proc as descendants of the
CLI process, or of the test sshd for the "remote" side. To break a transfer mid-stream and
deterministically, the receiver is frozen (SIGSTOP) once /proc/PID/io shows that enough of
the stream has gone through: while it is stopped the stream cannot finish, so whatever is
broken next is broken in the middle of the transfer. Then the fault is injected and the
receiver is let go again.

Every process acted on was started by the test (the CLI and its children, or the test's own
sshd and its children); nothing is ever looked up or killed by name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

from cli_helpers import CLI, CliRun
from support.btrfs_loop import run
from support.procs import children

MiB = 1 << 20


class FaultError(AssertionError):
    """The fault could not be injected as planned (the test cannot say anything)."""


# -- /proc -----------------------------------------------------------------------------------


class Proc(NamedTuple):
    pid: int
    ppid: int
    argv: List[str]
    comm: str


def _proc(pid: int) -> Optional[Proc]:
    """One process from /proc, or None if it is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = handle.read()
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None  # it exited meanwhile
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None  # a zombie waits to be reaped: it does nothing any more
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    return Proc(pid, int(fields[1]), argv, comm)


def process_table() -> Dict[int, Proc]:
    """Every process now: pid -> (ppid, argv, comm), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = _proc(int(entry))
            if proc is not None:
                table[proc.pid] = proc
    return table


def descendants(root: int) -> List[Proc]:
    """The live processes below `root` (children, grandchildren, ...). Read from the kernel's
    per-task child lists, so that it is quick enough to catch a process right after it starts."""
    found, todo = [], children(root)
    while todo:
        proc = _proc(todo.pop())
        if proc is not None:
            found.append(proc)
            todo.extend(children(proc.pid))
    return sorted(found)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def io_bytes(pid: int) -> Dict[str, int]:
    """/proc/PID/io as numbers (rchar, wchar, ...); {} once the process is gone."""
    try:
        with open("/proc/%d/io" % pid) as handle:
            return {k: int(v) for k, v in (line.split(":") for line in handle)}
    except (OSError, ValueError):
        return {}


def pending_signals(pid: int) -> int:
    """The signals pending for a process (thread and process level), as a bit mask."""
    mask = 0
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    mask |= int(line.split()[1], 16)
    except OSError:
        return 0
    return mask


def is_btrfs(proc: Proc, subcommand: str) -> bool:
    """`btrfs SUBCOMMAND ...` (argv[0] may be a full path)."""
    return len(proc.argv) >= 2 and os.path.basename(proc.argv[0]) == "btrfs" \
        and proc.argv[1] == subcommand


def is_ssh_client(proc: Proc) -> bool:
    return bool(proc.argv) and os.path.basename(proc.argv[0]) == "ssh"


def is_ssh_running(words: str) -> Callable[[Proc], bool]:
    """Matches an ssh client whose remote command line contains `words` (e.g. 'btrfs receive')."""
    return lambda proc: is_ssh_client(proc) and words in proc.argv[-1]


def wait_for(what: str, probe: Callable[[], object], timeout: float = 30, interval: float = 0.005):
    """Poll `probe` until it returns something true; that value, or FaultError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise FaultError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def find_process(what: str, root: int, match: Callable[[Proc], bool], timeout: float = 30,
                 interval: float = 0.005) -> Proc:
    """Wait for a descendant of `root` that `match`es and return it."""
    def probe():
        for proc in descendants(root):
            if match(proc):
                return proc
        return None
    return wait_for("%s below pid %d" % (what, root), probe, timeout, interval)


def wait_gone(pids: Sequence[int], timeout: float = 30):
    wait_for("processes %s to exit" % list(pids), lambda: not any(alive(p) for p in pids), timeout)


# -- a run in the background -------------------------------------------------------------------


class BackgroundCli:
    """`btrfs-backup --json ARGS` running in its own process group, so that a test can signal
    it alone or, as systemd does on stop, with all its children (`signal_group`)."""

    def __init__(self, args: Sequence[object], env: Optional[dict] = None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started = time.monotonic()
        args = [os.fspath(a) for a in args]
        if args and args[0] in ("restore", "verify"):  # `btrfs-backup restore --json ...`
            argv = [str(CLI), args[0], "--json"] + args[1:]
        else:
            argv = [str(CLI), "--json"] + args
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, env=full_env,
            start_new_session=True)
        self.pid = self.proc.pid
        self.seen: Dict[int, Proc] = {}  # every descendant ever observed (for the stray check)
        self.elapsed: Optional[float] = None

    def children(self) -> List[Proc]:
        found = descendants(self.pid)
        for proc in found:
            self.seen.setdefault(proc.pid, proc)
        return found

    def child(self, what: str, match: Callable[[Proc], bool], timeout: float = 60) -> Proc:
        proc = find_process(what, self.pid, match, timeout)
        self.seen.setdefault(proc.pid, proc)
        return proc

    def signal(self, signum: int):
        os.kill(self.pid, signum)

    def signal_group(self, signum: int):
        """Every process in the run's group: the CLI and its pipeline (systemd's KillMode)."""
        os.killpg(self.pid, signum)

    def finish(self, timeout: float = 120) -> CliRun:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_everything()
            raise AssertionError("the run did not end within %ss" % timeout)
        self.elapsed = time.monotonic() - self.started
        self._out.seek(0)
        self._err.seek(0)
        out = self._out.read().decode("utf-8", "replace")
        err = self._err.read().decode("utf-8", "replace")
        self._out.close()
        self._err.close()
        result = json.loads(out) if out.strip() else None
        return CliRun(code, result, err)

    def strays(self) -> List[Proc]:
        """Processes of this run still alive after it ended: ones seen below it, or any left
        in its process group (an ssh connection master detaches: see `ssh_masters`)."""
        table = process_table()
        left = {p.pid: p for p in self.seen.values()
                if p.pid in table and table[p.pid].argv == p.argv}
        for proc in table.values():
            if _pgid(proc.pid) == self.pid:
                left[proc.pid] = proc
        return sorted(left.values())

    def control_dirs(self) -> List[str]:
        """The folders of the ssh control sockets that this run's ssh processes were given."""
        dirs = set()
        for proc in self.seen.values():
            for arg in proc.argv:
                if arg.startswith("ControlPath="):
                    dirs.add(os.path.dirname(arg[len("ControlPath="):]))
        return sorted(dirs)

    def ssh_masters(self) -> List[Proc]:
        """Background ssh connection masters that this run left (they leave its group)."""
        dirs = self.control_dirs()
        # A master retitles itself "ssh: DIR/HASH [mux]"; a client still has "ControlPath=DIR/%C".
        return [p for p in process_table().values() if p.comm == "ssh"
                and any(d + "/" in a for d in dirs for a in p.argv)]

    def kill_everything(self):
        """Cleanup, also after a failed assertion: this run's processes, by PID only."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for proc in self.strays() + self.ssh_masters():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGKILL)
        for folder in self.control_dirs():
            if folder.startswith(os.path.join(os.environ.get("TMPDIR") or tempfile.gettempdir(), "btrfs-backup-ssh-")):
                shutil.rmtree(folder, ignore_errors=True)


def _pgid(pid: int) -> Optional[int]:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@contextlib.contextmanager
def start_cli(*args, env: Optional[dict] = None) -> Iterator[BackgroundCli]:
    """Run the CLI in the background for the `with` block; whatever it left running is
    killed on the way out, also when the block fails."""
    running = BackgroundCli(args, env)
    try:
        yield running
    finally:
        running.kill_everything()


# -- breaking a transfer mid-stream ------------------------------------------------------------


def _state(pid: int) -> Optional[str]:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def midstream(cli: BackgroundCli, after: int = 8 * MiB, remote=None) -> Proc:
    """Freeze `btrfs receive` (SIGSTOP) once it has read `after` bytes of its stream, and return
    it. The transfer cannot finish until the caller lets it go on (`let_go`): whatever the
    caller breaks meanwhile breaks in the middle of the stream.

    The receive runs below the CLI, or, with `remote` (a test sshd), below that sshd. It is
    stopped as soon as it is seen and then let go in short slices until `after` bytes are
    through, so that even a fast local stream cannot end before the fault is injected.
    (The receiver is frozen, not `btrfs send`: the kernel restarts an interrupted send ioctl
    from the beginning, which corrupts the stream once the sender is let go.)
    """
    root = cli.pid if remote is None else remote.pid
    receiver = find_process("btrfs receive", root, lambda p: is_btrfs(p, "receive"), 60,
                            interval=0.0002)
    _signal_receiver(receiver, signal.SIGSTOP)
    if remote is None:
        cli.seen.setdefault(receiver.pid, receiver)  # one of the run's own processes
    deadline = time.monotonic() + 60
    with _ahead_of_the_run():
        while True:
            wait_for("btrfs receive to stop", lambda: _state(receiver.pid) in ("T", "t", None), 10)
            if not alive(receiver.pid):
                raise FaultError("the transfer ended before it could be broken")
            if io_bytes(receiver.pid).get("rchar", 0) >= after:
                break
            if time.monotonic() > deadline:
                raise FaultError("btrfs receive did not read %d bytes within 60s" % after)
            _signal_receiver(receiver, signal.SIGCONT)
            time.sleep(0.002)
            _signal_receiver(receiver, signal.SIGSTOP)
    cli.children()  # remember the whole pipeline (for `strays` and `ssh_masters`)
    return receiver


@contextlib.contextmanager
def _ahead_of_the_run() -> Iterator[None]:
    """This process scheduled before the run it breaks (real-time, the lowest priority): on a
    loaded machine a normal wake-up from a 2 ms slice can come after the receive read the rest of
    its stream. The loop it guards mostly sleeps, so it takes no CPU from the run."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:  # not allowed here: the slices are merely less exact
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def _signal_receiver(receiver: Proc, signum: int):
    # On a loaded machine one slice can last long enough for the receive to read the whole rest.
    try:
        os.kill(receiver.pid, signum)
    except ProcessLookupError:
        raise FaultError("the transfer ended before it could be broken (btrfs receive exited)") from None


def let_go(proc: Proc):
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)


def wait_signal_pending(proc: Proc, signum: int, timeout: float = 10):
    """Wait until `signum` is pending for a stopped process (or it is gone)."""
    bit = 1 << (signum - 1)
    wait_for("signal %d to reach %s" % (signum, proc.argv[:2]),
             lambda: not alive(proc.pid) or pending_signals(proc.pid) & bit, timeout)


# -- the remote side (the test sshd) -----------------------------------------------------------


def sshd_session_of(sshd, proc: Proc) -> Proc:
    """The per-connection sshd process that `proc` (a remote command) runs under."""
    table = process_table()
    current = table.get(proc.ppid)
    session = None
    while current is not None and current.pid != sshd.pid:
        if current.comm == "sshd":
            session = current
        current = table.get(current.ppid)
    if session is None:
        raise FaultError("%s does not run under sshd %d" % (proc.argv[:3], sshd.pid))
    return session


# -- hosts that do not answer ------------------------------------------------------------------


class BlackHole:
    """A loopback TCP port that takes connections but never says anything ('silent': accepts,
    never sends the SSH banner) or never even completes the TCP handshake ('backlog full')."""

    def __init__(self, host: str = "127.0.0.4", kind: str = "silent"):
        self.host = host
        self.kind = kind
        self.accepted: List[socket.socket] = []
        self._filler: List[socket.socket] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self.port = self._sock.getsockname()[1]
        self._thread = None
        if kind == "silent":
            self._sock.listen(16)
            self._sock.settimeout(0.1)
            self._thread = threading.Thread(target=self._accept, daemon=True)
            self._thread.start()
        elif kind == "backlog full":
            # Never accept. With a backlog of 0 the queue holds one connection; once the
            # test itself fills it, the kernel drops every further SYN: connect() hangs.
            self._sock.listen(0)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probe.setblocking(False)
                code = probe.connect_ex((host, self.port))
                self._filler.append(probe)
                if code == errno.EINPROGRESS:
                    time.sleep(0.2)
                    if probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0 or \
                            not _connected(probe):
                        break  # this one hangs: the queue is full
            else:
                raise FaultError("could not fill the accept queue of %s:%d" % (host, self.port))
        else:
            raise ValueError(kind)

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never written to

    def url(self, path: str) -> str:
        return "ssh://root@%s:%d%s" % (self.host, self.port, path)

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for sock in self.accepted + self._filler + [self._sock]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
        return True
    except OSError:
        return False


# -- filesystems in trouble --------------------------------------------------------------------


@contextlib.contextmanager
def immutable(path) -> Iterator[Path]:
    """`chattr +i PATH` for the block (even root cannot create entries in it), undone after."""
    run(["chattr", "+i", path])
    try:
        yield Path(path)
    finally:
        run(["chattr", "-i", path])


def fill_up(fs, leave_free: int, name: str = "ballast") -> Path:
    """Allocate a file on the btrfs `fs` so that only about `leave_free` bytes stay free."""
    run(["btrfs", "filesystem", "sync", fs])
    free = _free_bytes(fs)
    ballast = Path(fs) / name
    size = max(0, free - leave_free)
    run(["fallocate", "-l", str(size), ballast])
    run(["btrfs", "filesystem", "sync", fs])
    return ballast


def _free_bytes(fs) -> int:
    out = run(["btrfs", "filesystem", "usage", "-b", fs]).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Free (estimated):"):
            return int(line.split()[2])
    raise FaultError("no free-space line in btrfs filesystem usage of %s" % fs)


# -- states on disk ----------------------------------------------------------------------------


def staging_leftovers(folder) -> List[str]:
    """Restore staging folders left in `folder`."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".btrfs-backup-restore-"))


def make_writable(path):
    """`btrfs property set -f PATH ro false`: what a user does to change a backup by hand
    (btrfs-progs >= 5.14 refuse a received subvolume without -f, and clear its received_uuid)."""
    run(["btrfs", "property", "set", "-f", "-ts", path, "ro", "false"])


_BTRFS_IOC_SUBVOL_SETFLAGS = 0x4008941A  # _IOW(0x94, 26, __u64)
_BTRFS_SUBVOL_RDONLY = 1 << 1


def set_readonly_keeping_received_uuid(path, readonly: bool):
    """Flip a subvolume's read-only flag with the kernel's ioctl, as btrfs-progs < 5.14 did:
    the received_uuid stays, so a backup changed this way still looks like the snapshot's
    backup by UUID, and only a content check can tell."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, _BTRFS_IOC_SUBVOL_SETFLAGS,
                    struct.pack("Q", _BTRFS_SUBVOL_RDONLY if readonly else 0))
    finally:
        os.close(fd)
