#!/usr/bin/env python3
"""Benchmark btrfs send/receive: raw pipeline vs our btrfs-backup vs btrfs-backup 0.3.1 vs btrbk.

Run as root from the repository:

    .venv/bin/python benchmarks/bench_send.py             # ~1.5 GB, 20k small files, 300 pairs, 4 rounds
    .venv/bin/python benchmarks/bench_send.py --quick     # ~200 MB, 2k files, 30 pairs, 1 round
    .venv/bin/python benchmarks/bench_send.py --diagnose  # also: process counts, timelines, cProfile

Everything runs in one process on throw-away btrfs filesystems (sparse images on a private
tmpfs, loop-mounted on mktemp dirs) and a private sshd on 127.0.0.2; all of it is removed
again at the end, also after a failure, Ctrl-C or SIGTERM. The tools are run interleaved:
every round runs every scenario for every tool, the tool order rotated per round, and the
report gives the median and the minimum over the rounds. It prints figures, never pass/fail.

Scenarios (each tool does the same work on the same data):

  full-local   one pre-made read-only snapshot sent in full to an empty local folder
  full-ssh     the same, to a folder on a second filesystem behind ssh://root@127.0.0.2:PORT
               (plus a reference: the raw pipeline with the AES-GCM cipher our tool prefers)
  inc-local    ~10 MB changed, then each tool's normal complete run: snapshot + incremental
               send + bookkeeping (each tool keeps its own snapshot chain and destination)
  inc-ssh      the same over ssh
  noop-local   N snapshot/backup pairs present, nothing outstanding: -S for btrfs-backup,
               'btrbk resume' for btrbk; raw is the floor any UUID-based tool needs
               (one 'btrfs subvolume list' at the source and one at the destination)
  noop-ssh     the same with the destination behind ssh

Every run is checked: the expected subvolume arrived, complete (received UUID), in full
(no parent) or incrementally from the chain's previous backup; no-op runs changed nothing.

With --diagnose it also runs every tool once per scenario under strace (counting the
processes each run starts, with a per-process timeline of our tool), times start-up and
profiles our tool's no-op runs with cProfile. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.btrfs_loop import BtrfsPool, run  # noqa: E402
from support.procs import children  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.trees import MiB, modify_tree, write_mixed_tree  # noqa: E402

OURS_SCRIPT = REPO / "bin" / "btrfs-backup"
# 0.3.1's console script sits next to the interpreter running this benchmark (the .venv).
OLD_SCRIPT = Path(sys.executable).parent / "btrfs-backup"
BTRBK = shutil.which("btrbk") or "/usr/bin/btrbk"
SSH_HOST = "127.0.0.2"

TOOLS = ("raw", "ours", "0.3.1", "btrbk")
# Reference only (full-ssh): the raw pipeline with the cipher our tool picks, to tell the tool's
# own overhead from the cipher's effect.
GCM = "aes128-gcm@openssh.com"
SCENARIOS = ("full-local", "full-ssh", "inc-local", "inc-ssh", "noop-local", "noop-ssh")
BASE_NAME = "20200101-000000"          # btrfs-backup scheme: %Y%m%d-%H%M%S
BTRBK_BASE_NAME = "data.20200101T0000"  # btrbk scheme (timestamp_format long): NAME.%Y%m%dT%H%M


class BenchError(RuntimeError):
    pass


def ours_argv(*args) -> List[str]:
    """Our tool's command line: bin/btrfs-backup, a /bin/sh launcher that runs `python3 -I` on the
    engine. Run it with ours_env() so that python3 is the interpreter of 0.3.1's console script."""
    return [os.fspath(OURS_SCRIPT), *(os.fspath(a) for a in args)]


def env_of_031(env: dict, tmp: Path) -> dict:
    """`env` for btrfs-backup 0.3.1, with its temporary files in the benchmark's folder `tmp`: its
    ssh endpoint leaves the sshfs mount point it made in $TMPDIR behind (ours keeps $TMPDIR: its ssh
    control socket's path must stay short)."""
    folder = tmp / "tmp-0.3.1"
    folder.mkdir(exist_ok=True)
    return dict(env, TMPDIR=str(folder))


def ours_env(env: Optional[dict] = None) -> dict:
    """`env` (default: ours) with this benchmark's interpreter folder first on PATH (on a machine where
    python3 on PATH is a pyenv shim, the shim alone adds ~100 ms to every run)."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = "%s:%s" % (Path(sys.executable).parent, env.get("PATH", ""))
    return env


# -- process handling: every child in its own process group, killed as a group on abort ------------

_LIVE: List[subprocess.Popen] = []
# Children that are not the tools' (our sshd): never touched by the orphan handling below.
KEEP_PIDS = set()
LINGERING: List[str] = []


def become_subreaper() -> None:
    """Descendants that daemonize (ssh ControlPersist masters) are re-parented to us, so we can
    reap them (their CPU time then counts for the run that started them) and stop them on abort."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def our_children() -> set:
    """PIDs whose parent is this process, but for KEEP_PIDS."""
    return set(children(os.getpid())) - KEEP_PIDS


def reap_orphans(label: str, wait: float = 5.0) -> None:
    """Wait (bounded) for re-parented descendants of a finished run; stop any that linger."""
    deadline = time.monotonic() + wait
    pending = our_children()
    while pending:
        for pid in list(pending):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    for pid in pending:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                what = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            what = "?"
        LINGERING.append("%s: pid %d still running %.0fs after the run ended: %s" % (label, pid, wait, what[:200]))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_live_children() -> None:
    """Stop every process group we started that may still run (by its id, never by name),
    and every daemonized descendant that was re-parented to us."""
    procs, _LIVE[:] = list(_LIVE), []
    for proc in procs:
        _kill_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    known = {p.pid for p in procs}
    for pid in our_children() - known:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


class Measurement(collections.namedtuple("Measurement", "seconds cpu stall")):
    """Wall seconds; CPU seconds (user+sys) of the processes started on this side; and the share
    of the wall time in which some runnable task on the machine waited for a CPU (PSI "some"),
    ours or anybody else's: high values mean the machine was busy."""


# -- a quiet machine before each measurement --------------------------------------------------------

PSI_CPU = "/proc/pressure/cpu"


class Gate:
    """Before a timed run: wait (bounded) until, while we run nothing, other work leaves the CPUs
    alone, i.e. CPU pressure (PSI 'some') stays under a threshold for two short windows in a row."""

    threshold = 0.05
    max_wait = 60.0
    window = 0.3
    enabled = True
    waits: List[float] = []
    timeouts = 0

    @staticmethod
    def stall_total() -> Optional[int]:
        try:
            with open(PSI_CPU) as f:
                for line in f:
                    if line.startswith("some "):
                        return int(line.rsplit("total=", 1)[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    @classmethod
    def wait(cls, label: str) -> None:
        if not cls.enabled or cls.stall_total() is None:
            return
        start, quiet, stall = time.monotonic(), 0, 0.0
        while quiet < 2:
            before = cls.stall_total()
            time.sleep(cls.window)
            stall = (cls.stall_total() - before) / 1e6 / cls.window
            quiet = quiet + 1 if stall < cls.threshold else 0
            if quiet < 2 and time.monotonic() - start > cls.max_wait:
                cls.timeouts += 1
                log("  (%s: the machine stayed busy, CPU pressure %.0f%%; measuring anyway after %.0fs)" % (
                    label, stall * 100, cls.max_wait))
                break
        waited = time.monotonic() - start
        cls.waits.append(waited)
        if waited > 5:
            log("  (waited %.0fs for a quiet machine before %s)" % (waited, label))


class Launcher:
    """Starts the processes of one timed run, each in its own session with its stderr kept."""

    def __init__(self, env: Optional[dict] = None):
        self.env = env
        self.procs: List[subprocess.Popen] = []
        self.logs: List[tuple] = []  # (argv, stderr file) per process

    def popen(self, argv: Sequence, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kwargs) -> subprocess.Popen:
        argv = [os.fspath(a) for a in argv]
        log = tempfile.TemporaryFile()
        self.logs.append((argv, log))
        kwargs.setdefault("env", self.env)
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the whole group.
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=log, start_new_session=True, **kwargs)
        _LIVE.append(proc)
        self.procs.append(proc)
        return proc


def timed_run(start: Callable[[Launcher], None], env: Optional[dict] = None, label: str = "",
              gate: bool = False) -> Measurement:
    """Time `start(launcher)`, which starts processes through the launcher, until all of them
    have ended; return wall and CPU time; raise on failure. With `gate`, first wait for a quiet
    machine (see Gate)."""
    if gate:
        Gate.wait(label)
    launcher = Launcher(env)
    stall0 = Gate.stall_total()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        start(launcher)
        codes = [p.wait() for p in launcher.procs]
    except BaseException:
        kill_live_children()
        raise
    seconds = time.perf_counter() - t0
    stall1 = Gate.stall_total()
    stall = (stall1 - stall0) / 1e6 / seconds if stall0 is not None and stall1 is not None and seconds > 0 else float("nan")
    for proc in launcher.procs:
        with contextlib.suppress(ValueError):
            _LIVE.remove(proc)
    reap_orphans(label)  # e.g. an ssh ControlPersist master: its CPU belongs to this run
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    failed = []
    for (argv, log), code in zip(launcher.logs, codes):
        log.seek(0)
        err = log.read().decode(errors="replace").strip()
        log.close()
        if code != 0:
            failed.append("%s -> exit %s: %s" % (shlex.join(argv), code, err[-2000:]))
    if failed:
        raise BenchError("%s failed:\n  %s" % (label or "command", "\n  ".join(failed)))
    return Measurement(seconds, cpu, stall)


def timed(stages: Sequence[Sequence[str]], env: Optional[dict] = None, label: str = "",
          gate: bool = False, stdout=None) -> Measurement:
    """Run `stage1 | stage2 | ...` (no shell), wait for all, return wall and CPU time; raise on failure.
    With `gate`, first wait for a quiet machine (see Gate). The last stage writes to `stdout`
    (an open file) if given, else nowhere."""

    def start(launcher: Launcher) -> None:
        previous = None
        for i, argv in enumerate(stages):
            last = i == len(stages) - 1
            proc = launcher.popen(argv, stdin=previous.stdout if previous else subprocess.DEVNULL,
                                  stdout=(stdout or subprocess.DEVNULL) if last else subprocess.PIPE)
            if previous:
                previous.stdout.close()  # only the consumer holds the read end
            previous = proc

    return timed_run(start, env=env, label=label, gate=gate)


def sh(*argv, **kwargs) -> str:
    """Run a setup command (untimed), return stdout; raise with stderr on failure."""
    return run([os.fspath(a) for a in argv], **kwargs).stdout


def syncfs(*paths: Path) -> None:
    for path in paths:
        sh("sync", "-f", path)


def subvol_info(path: Path) -> Dict[str, str]:
    info = {}
    for line in sh("btrfs", "subvolume", "show", path).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key in ("UUID", "Parent UUID", "Received UUID"):
            info[key] = value.strip()
    return info


def subvolumes_in(folder: Path) -> List[str]:
    """Names of the subvolumes directly inside a folder (inode 256 is a subvolume root)."""
    return sorted(n for n in os.listdir(folder)
                  if not n.startswith(".") and os.stat(folder / n, follow_symlinks=False).st_ino == 256)


def delete_subvolumes(folder: Path, fs: Path) -> None:
    names = subvolumes_in(folder)
    if names:
        sh("btrfs", "subvolume", "delete", "-c", *[folder / n for n in names])
    # Wait until the space is really free. The cleaner drops a big subvolume over several
    # transactions and each waits for the next commit (30 s interval): commit ourselves instead.
    deadline = time.monotonic() + 600
    while sh("btrfs", "subvolume", "list", "-d", fs).strip():
        if time.monotonic() > deadline:
            raise BenchError("deleted subvolumes on %s are not cleaned up after 600 s" % fs)
        sh("btrfs", "filesystem", "sync", fs)
        time.sleep(0.1)
    sh("btrfs", "subvolume", "sync", fs)


def parse_exec_trace(path: Path, skip_prefix: str = ""):
    """(start, duration, argv) of every successful exec in an `strace -f -ttt -e trace=execve,exit_group`
    log, start relative to the first exec; duration None if the process never called exit_group."""
    started, rows, t0 = {}, [], None
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"(\d+)\s+(\d+\.\d+)\s+(.*)$", line)
        if not m:
            continue
        pid, when, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if rest.startswith("execve(") and rest.rstrip().endswith("= 0"):
            head = re.match(r'execve\("([^"]+)", \[(.*?)\](?:\.\.\.)?, ', rest)
            if not head or (skip_prefix and head.group(1).startswith(skip_prefix)):
                continue
            argv = [a.encode().decode("unicode_escape") for a in re.findall(r'"((?:[^"\\]|\\.)*)"', head.group(2))]
            argv[0:1] = [head.group(1)]
            t0 = when if t0 is None else t0
            if pid in started:  # exec after exec in the same process: close the earlier one
                s0, a0 = started.pop(pid)
                rows.append((s0 - t0, when - s0, a0))
            started[pid] = (when, argv)
        elif rest.startswith("exit_group(") and pid in started:
            s0, a0 = started.pop(pid)
            rows.append((s0 - t0, when - s0, a0))
    rows.extend((s0 - t0, None, a0) for s0, a0 in started.values())
    return sorted(rows, key=lambda r: r[0])


def short_command(argv, width=140) -> str:
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "-o":
            skip = True
        else:
            words.append(word)
    text = shlex.join(words)
    return text if len(text) <= width else text[:width - 3] + "..."


def engine_fingerprint() -> str:
    """A hash of our tool's code (bin/ and the engine), to notice when it changes during a run."""
    import hashlib
    h = hashlib.sha256()
    for path in sorted(list((REPO / "bin").glob("*")) + list((REPO / "plugins" / "module_utils").rglob("*.py"))):
        if path.is_file():
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def show_command(stages) -> str:
    """Stages joined with ' | '; a stage ["&&"] or [";"] joins the neighbours with that instead."""
    out = ""
    for stage in stages:
        if list(stage) in (["&&"], [";"]):
            out += " %s " % stage[0]
        else:
            out += (" | " if out and not out.endswith(" ") else "") + shlex.join(map(str, stage))
    return out


def fmt_s(seconds: float) -> str:
    return "%.3f" % seconds if seconds < 10 else "%.2f" % seconds


# -- the benchmark ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, stack: contextlib.ExitStack):
        self.args = args
        self.stack = stack
        self.results: Dict[str, Dict[str, List[Measurement]]] = {
            s: collections.defaultdict(list) for s in SCENARIOS}
        self.commands: Dict[str, Dict[str, str]] = {s: {} for s in SCENARIOS}
        self.btrbk_confs: Dict[str, str] = {}
        self.chain_last: Dict[str, str] = {}  # chain key -> UUID of its newest backup at the destination
        self.info: List[str] = []
        self.diagnosis: List[str] = []
        # Full sends of ours: wall time outside its send | receive pipeline (start-up, listing,
        # locks, verification), from the pipeline time in its --json result.
        self.own_time: Dict[str, List[float]] = collections.defaultdict(list)

    # -- setup ----------------------------------------------------------------------------------

    def setup(self):
        a = self.args
        images = {"src": a.src_size, "dst": a.dst_size, "rdst": a.dst_size,
                  "msrc": "512M", "mdst": "512M", "mrdst": "512M"}
        total_mib = sum(_mib(v) for v in images.values()) + 512
        self.pool = self.stack.enter_context(BtrfsPool(tmpfs_size="%dM" % total_mib, prefix="bench-send-"))
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-send-cfg-")))
        extra = []
        if not a.keep_remote_bashrc:
            # bash sources ~/.bashrc for every command that sshd runs; this machine's root .bashrc
            # runs 'pyenv init' (~90 ms), which a backup server would not. An empty HOME for the
            # sessions keeps that out of every tool's remote commands alike.
            (self.tmp / "remote-home").mkdir()
            extra.append("SetEnv HOME=%s" % (self.tmp / "remote-home"))
        self.sshd = self.stack.enter_context(Sshd(host=SSH_HOST, extra_config=extra))
        KEEP_PIDS.add(self.sshd.pid)
        self.ssh_opts = self.sshd.ssh_options()
        self.port = self.sshd.port

        log("filesystems: src %s, dst %s, rdst %s (tmpfs %d MiB at %s); sshd %s:%d pid %d" % (
            a.src_size, a.dst_size, a.dst_size, total_mib, self.pool.tmpfs, SSH_HOST, self.port, self.sshd.pid))
        self.src = self.pool.filesystem("src", a.src_size)
        self.dst = self.pool.filesystem("dst", a.dst_size)
        self.rdst = self.pool.filesystem("rdst", a.dst_size)   # reached through ssh
        self.msrc = self.pool.filesystem("msrc", "512M")       # the N-pairs scenario, kept apart so
        self.mdst = self.pool.filesystem("mdst", "512M")       # its subvolumes do not slow the others
        self.mrdst = self.pool.filesystem("mrdst", "512M")

        # btrbk reads no ssh options but identity/user/port; a wrapper found first on its PATH
        # adds the same known_hosts/batch options everybody else gets with -o.
        wrapper_dir = self.tmp / "ssh-wrapper"
        wrapper_dir.mkdir()
        extra = [o for o in self.ssh_opts if not o.startswith("IdentityFile=")]
        (wrapper_dir / "ssh").write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (
            shutil.which("ssh"), " ".join("-o " + shlex.quote(o) for o in extra)))
        os.chmod(wrapper_dir / "ssh", 0o755)
        self.wrapper_dir = wrapper_dir
        # Both Python tools load compiled bytecode, as installed copies do: this machine sets
        # PYTHONDONTWRITEBYTECODE=1, so a checkout would otherwise recompile ours on every run
        # (0.3.1's pip install shipped .pyc files). The cache lives in the benchmark's temp dir.
        self.py_env = dict(os.environ)
        if not a.no_bytecode_cache:
            self.py_env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.py_env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        self.py_env = ours_env(self.py_env)
        self.env_031 = env_of_031(self.py_env, self.tmp)
        self.btrbk_env = dict(os.environ, PATH="%s:%s" % (wrapper_dir, os.environ.get("PATH", "")))

        # The data set.
        self.data = self.pool.subvolume(self.src / "data")
        t0 = time.perf_counter()
        summary = write_mixed_tree(self.data, n_small=a.small_files, small_size=4096,
                                   large_files=[m * MiB for m in a.large_mib], seed=7)
        syncfs(self.src)
        self.data_bytes = summary.bytes
        log("data set: %d files, %.0f MiB (%d large files %s MiB, %d small files) written in %.1fs" % (
            summary.files, summary.bytes / MiB, len(a.large_mib), "+".join(map(str, a.large_mib)),
            a.small_files, time.perf_counter() - t0))

        snaps = self.src / "snaps"
        for d in ("full", "btrbk-full", "base") + tuple("inc-%s-%s" % (t, w) for t in TOOLS for w in "ls"):
            (snaps / d).mkdir(parents=True)
        # Every snapshot below is taken of the unchanged data: identical contents.
        self.full_snap = self.pool.snapshot(self.data, snaps / "full" / BASE_NAME)
        self.btrbk_full_snap = self.pool.snapshot(self.data, snaps / "btrbk-full" / BTRBK_BASE_NAME)
        base = self.pool.snapshot(self.data, snaps / "base" / BASE_NAME)
        chain_snaps = {}
        for tool in TOOLS:
            for where in "ls":
                name = BTRBK_BASE_NAME if tool == "btrbk" else BASE_NAME
                chain_snaps[tool, where] = self.pool.snapshot(self.data, snaps / ("inc-%s-%s" % (tool, where)) / name)

        # Incremental chains: one full copy of the base per destination filesystem, then each chain's
        # first snapshot arrives as a (tiny) incremental from it, sharing all its extents.
        t0 = time.perf_counter()
        for fs in (self.dst, self.rdst):
            (fs / "base").mkdir()
            timed([["btrfs", "send", "-q", base], ["btrfs", "receive", fs / "base"]], label="base send")
            for tool in TOOLS:
                folder = fs / ("inc-" + tool)
                folder.mkdir()
                snap = chain_snaps[tool, "l" if fs == self.dst else "s"]
                timed([["btrfs", "send", "-q", "-p", base, snap], ["btrfs", "receive", folder]], label="chain seed")
                self.chain_last[self._chain(tool, fs == self.rdst)] = subvol_info(folder / snap.name)["UUID"]
        syncfs(self.src, self.dst, self.rdst)
        log("incremental chains seeded in %.1fs" % (time.perf_counter() - t0))

        # N snapshot/backup pairs of a small subvolume, both naming schemes.
        t0 = time.perf_counter()
        small = self.pool.subvolume(self.msrc / "small")
        write_mixed_tree(small, n_small=20, small_size=2048, specials=False, seed=3)
        (self.msrc / "snaps" / "many").mkdir(parents=True)
        (self.msrc / "snaps" / "btrbk").mkdir(parents=True)
        ours_snaps, btrbk_snaps = [], []
        start = datetime.datetime(2020, 1, 1)
        for i in range(a.pairs):
            when = start + datetime.timedelta(minutes=i)
            ours_snaps.append(self.pool.snapshot(small, self.msrc / "snaps" / "many" / when.strftime("%Y%m%d-%H%M%S")))
            btrbk_snaps.append(self.pool.snapshot(small, self.msrc / "snaps" / "btrbk" / when.strftime("small.%Y%m%dT%H%M")))
        for fs in (self.mdst, self.mrdst):
            for folder, snaps_ in (("many", ours_snaps), ("btrbk", btrbk_snaps)):
                (fs / folder).mkdir()
                # One stream holding every snapshot in full; receive takes them one after another.
                timed([["btrfs", "send", "-q", *snaps_], ["btrfs", "receive", fs / folder]], label="pairs")
        syncfs(self.msrc, self.mdst, self.mrdst)
        for fs in (self.mdst, self.mrdst):
            for folder in ("many", "btrbk"):
                if len(subvolumes_in(fs / folder)) != a.pairs:
                    raise BenchError("expected %d backups in %s" % (a.pairs, fs / folder))
        log("%d snapshot/backup pairs per tool scheme made in %.1fs" % (a.pairs, time.perf_counter() - t0))

        self.load_start = " ".join("%.2f" % x for x in os.getloadavg())
        self.fingerprint = engine_fingerprint()
        self._describe_environment()

    def _describe_environment(self):
        verbose = subprocess.run(self._ssh_argv("true", flags=["-v"]), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, check=True).stderr
        cipher = re.search(r"kex: client->server cipher: (\S+) MAC: (\S+)", verbose)
        kex = re.search(r"kex: algorithm: (\S+)", verbose)
        offered = sh(*self._ssh_argv(flags=["-G"]))
        ciphers = next((line.split(None, 1)[1] for line in offered.splitlines() if line.startswith("ciphers ")), "?")
        self.cipher = cipher.group(1) if cipher else "?"
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "bin", "plugins/module_utils/engine"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        self.info = [
            "date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "host: %s, %d CPUs, %.1f GiB RAM, kernel %s" % (
                platform.node(), os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                platform.release()),
            "tools: %s; %s; %s; btrfs-backup 0.3.1 (%s); ours: %s with python3 = %s" % (
                sh("btrfs", "--version").strip(), sh(BTRBK, "--version").strip(),
                subprocess.run(["ssh", "-V"], stderr=subprocess.PIPE, text=True).stderr.strip(),
                OLD_SCRIPT, OURS_SCRIPT.relative_to(REPO), sys.executable),
            "data: %.0f MiB in %d large + %d small files; %d pairs; %d round(s); ~%d MiB changed per incremental" % (
                self.data_bytes / MiB, len(self.args.large_mib), self.args.small_files, self.args.pairs,
                self.args.rounds, self.args.change_mib),
            "ssh: negotiated cipher %s (MAC %s, kex %s); client offers: %s" % (
                self.cipher, cipher.group(2) if cipher else "?", kex.group(1) if kex else "?", ciphers),
            "ssh options for every tool: %s" % " ".join("-o " + o for o in self.ssh_opts),
            "sshd sessions: %s" % ("HOME as in /etc/passwd (root's ~/.bashrc runs for every remote command)"
                                   if self.args.keep_remote_bashrc else
                                   "empty HOME (SetEnv), so remote commands skip this machine's root ~/.bashrc"),
            "ssh options ours adds itself: %s" % self._ours_own_ssh_options(),
            "python tools: %s" % (
                "bytecode settings of this environment (PYTHONDONTWRITEBYTECODE=%s)" % os.environ.get("PYTHONDONTWRITEBYTECODE", "")
                if self.args.no_bytecode_cache else
                "bytecode cached (0.3.1 in a private PYTHONPYCACHEPREFIX; ours' launcher runs python3 -I, "
                "which keeps its bytecode beside the engine), filled by the warm-up"),
            "ours: engine at commit %s%s" % (head, " + uncommitted changes in " + ", ".join(dirty) if dirty else ""),
        ]
        for line in self.info:
            log(line)

    def _ours_own_ssh_options(self) -> str:
        """What our tool adds to the ssh options it is given (from its debug log of a no-op run)."""
        folder = self.mrdst / "many"
        argv = self._ours("-S", "-P", "-v", "debug", "-f", self.msrc / "snaps" / "many",
                          *self._ssh_opt_args(True), self.msrc / "small", self._url(folder))
        proc = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=self.py_env)
        reap_orphans("ours debug run")
        added, seen = [], False
        for line in proc.stderr.splitlines():
            hit = re.search(r"(?:running|starting): (\['ssh'.*\])\s*$", line)
            if hit:
                seen = True
                ssh = ast.literal_eval(hit.group(1))
                for i, word in enumerate(ssh[:-1]):
                    if word == "-o" and ssh[i + 1] not in self.ssh_opts and ssh[i + 1] not in added:
                        added.append(ssh[i + 1])
        if not seen:
            return "? (no ssh command in its debug log)"
        return " ".join("-o " + o for o in added) or "none"

    # -- command lines ------------------------------------------------------------------------

    def _ssh_argv(self, *remote_command, flags=()):
        """`ssh -o OPT... [flags] -p PORT root@127.0.0.2 [remote command words]`."""
        argv = ["ssh"]
        for option in self.ssh_opts:
            argv += ["-o", option]
        return argv + list(flags) + ["-p", str(self.port), "root@" + SSH_HOST] + [str(w) for w in remote_command]

    def _url(self, path: Path, user="root@") -> str:
        return "ssh://%s%s:%d%s" % (user, SSH_HOST, self.port, path)

    def _btrbk_target(self, path: Path, remote: bool) -> str:
        # btrbk takes no user in its URLs (ssh_user root is in the config).
        return self._url(path, user="") if remote else str(path)

    def _ssh_opt_args(self, remote=True):
        return [x for o in self.ssh_opts for x in ("--ssh-opt", o)] if remote else []

    def _ours(self, *args):
        return ours_argv(*args)

    def _btrbk_config(self, name, volume: Path, subvolume: str, snapshot_dir: str, target: str,
                      extra=()) -> Path:
        lines = [
            "timestamp_format        long",
            "snapshot_preserve_min   all",
            "snapshot_preserve       no",
            "target_preserve_min     all",
            "target_preserve         no",
            "ssh_identity            %s" % self.sshd.identity_file,
            "ssh_user                root",
            *extra,
            "volume %s" % volume,
            "  subvolume %s" % subvolume,
            "    snapshot_dir %s" % snapshot_dir,
            "    target send-receive %s" % target,
        ]
        path = self.tmp / ("%s.conf" % name)
        path.write_text("\n".join(lines) + "\n")
        scenario = {"full-l": "full-local", "full-s": "full-ssh", "inc-l": "inc-local", "inc-s": "inc-ssh",
                    "noop-l": "noop-local", "noop-s": "noop-ssh"}[name[:6].rstrip("-")]
        self.btrbk_confs.setdefault(scenario, path.read_text())
        return path

    @staticmethod
    def _chain(tool, remote):
        return "%s-%s" % (tool, "s" if remote else "l")

    # -- scenarios ----------------------------------------------------------------------------

    def record(self, scenario, tool, m: Measurement, rnd, stages, note=""):
        self.results[scenario][tool].append(m)
        self.commands[scenario].setdefault(tool, show_command(stages))
        log("  round %d  %-10s %-7s %8s s   cpu %7.3f s   cpu pressure %3.0f%%%s" % (
            rnd + 1, scenario, tool, fmt_s(m.seconds), m.cpu, m.stall * 100, note))

    def full(self, tool, remote, rnd, wrap=()):
        scenario = "full-ssh" if remote else "full-local"
        fs = self.rdst if remote else self.dst
        folder = fs / ("full-%s-r%d" % (tool.replace(".", ""), rnd + 1))
        folder.mkdir()
        dest = self._url(folder) if remote else str(folder)
        snap = self.btrbk_full_snap if tool == "btrbk" else self.full_snap
        if tool in ("raw", "raw-gcm"):
            flags = ["-c", GCM] if tool == "raw-gcm" else []
            receive = self._ssh_argv("btrfs", "receive", folder, flags=flags) if remote else ["btrfs", "receive", folder]
            stages, env = [["btrfs", "send", "-q", snap], receive], None
        elif tool == "ours":
            # --json: its result says how long the send | receive pipeline took inside the run.
            stages = [self._ours("-S", "-P", "-q", "--json", "-f", snap.parent, *self._ssh_opt_args(remote),
                                 self.data, dest)]
            env = self.py_env
        elif tool == "0.3.1":
            stages = [[OLD_SCRIPT, "-S", "-q", "-f", snap.parent, *self._ssh_opt_args(remote), self.data, dest]]
            env = self.env_031
        else:
            # 'incremental no': btrbk would otherwise find the base snapshot (a sibling, it has a
            # copy on the target filesystem) and send only a tiny difference instead of a full stream.
            conf = self._btrbk_config("full-%s-%d" % ("s" if remote else "l", rnd), self.src, "data",
                                      "snaps/btrbk-full", self._btrbk_target(folder, remote),
                                      extra=["incremental no"])
            stages, env = [[BTRBK, "-q", "-c", conf, "resume"]], self.btrbk_env
        syncfs(self.src, fs)
        with tempfile.TemporaryFile() as out:
            m = timed([list(wrap) + stages[0]] + stages[1:], env=env, label="%s %s" % (scenario, tool),
                      gate=not wrap, stdout=out)
            if tool == "ours":
                out.seek(0)
                transfers = json.loads(out.read().decode())["destinations"][0]["transfers"]
                self.own_time[scenario].append(m.seconds - transfers[0]["seconds"])
        # Check: exactly the snapshot arrived, complete and in full (a full receive has no parent).
        got = subvolumes_in(folder)
        if got != [snap.name]:
            raise BenchError("%s %s: expected [%s] at %s, found %s" % (scenario, tool, snap.name, folder, got))
        info = subvol_info(folder / snap.name)
        want = subvol_info(snap)["UUID"]
        if info.get("Received UUID") != want or info.get("Parent UUID") != "-":
            raise BenchError("%s %s: %s is not a full copy of %s: %s" % (scenario, tool, folder / snap.name, snap, info))
        # Free the space again for the next tool.
        delete_subvolumes(folder, fs)
        folder.rmdir()
        return m, stages

    def incremental(self, tool, remote, rnd, wrap=()):
        scenario = "inc-ssh" if remote else "inc-local"
        fs = self.rdst if remote else self.dst
        folder = fs / ("inc-" + tool)
        dest = self._url(folder) if remote else str(folder)
        snap_dir = self.src / "snaps" / ("inc-%s-%s" % (tool, "s" if remote else "l"))
        before = set(subvolumes_in(folder))
        if tool == "raw":
            previous = self.src / "snaps" / snap_dir.name / sorted(subvolumes_in(snap_dir))[-1]
            name = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            if (snap_dir / name).exists():
                time.sleep(1.05)
                name = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            new = snap_dir / name
            receive = self._ssh_argv("btrfs", "receive", folder) if remote else ["btrfs", "receive", folder]
            syncfs(self.src, fs)
            Gate.wait("%s raw" % scenario)
            t0 = time.perf_counter()
            m1 = timed([list(wrap) + ["btrfs", "subvolume", "snapshot", "-r", self.data, new]], label="raw snapshot")
            m2 = timed([["btrfs", "send", "-q", "-p", previous, new], receive], label="%s raw" % scenario)
            m = Measurement(time.perf_counter() - t0, m1.cpu + m2.cpu, max(m1.stall, m2.stall))
            stages = [["btrfs", "subvolume", "snapshot", "-r", self.data, new], ["&&"],
                      ["btrfs", "send", "-q", "-p", previous, new], receive]
        else:
            if tool == "ours":
                stages, env = [self._ours("-P", "-q", "-f", snap_dir, *self._ssh_opt_args(remote), self.data, dest)], self.py_env
            elif tool == "0.3.1":
                stages, env = [[OLD_SCRIPT, "-q", "-f", snap_dir, *self._ssh_opt_args(remote), self.data, dest]], self.env_031
            else:
                conf = self._btrbk_config("inc-%s" % ("s" if remote else "l"), self.src, "data",
                                          "snaps/" + snap_dir.name, self._btrbk_target(folder, remote))
                stages, env = [[BTRBK, "-q", "-c", conf, "run"]], self.btrbk_env
            syncfs(self.src, fs)
            m = timed([list(wrap) + stages[0]], env=env, label="%s %s" % (scenario, tool), gate=not wrap)
        # Check: one new backup, received incrementally from the chain's previous backup.
        new_names = sorted(set(subvolumes_in(folder)) - before)
        if len(new_names) != 1:
            raise BenchError("%s %s: expected one new backup in %s, got %s" % (scenario, tool, folder, new_names))
        info = subvol_info(folder / new_names[0])
        chain = self._chain(tool, remote)
        if info.get("Parent UUID") != self.chain_last[chain] or info.get("Received UUID") in (None, "-"):
            raise BenchError("%s %s: %s was not received incrementally from the previous backup (%s): %s" % (
                scenario, tool, new_names[0], self.chain_last[chain], info))
        self.chain_last[chain] = info["UUID"]
        return m, stages

    def noop(self, tool, remote, rnd, wrap=()):
        scenario = "noop-ssh" if remote else "noop-local"
        fs = self.mrdst if remote else self.mdst
        folder = fs / ("btrbk" if tool == "btrbk" else "many")
        dest = self._url(folder) if remote else str(folder)
        snap_dir = self.msrc / "snaps" / ("btrbk" if tool == "btrbk" else "many")
        small = self.msrc / "small"
        if tool == "raw":
            listing = ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R"]
            dest_list = self._ssh_argv(*listing, folder) if remote else listing + [folder]
            syncfs(self.msrc, fs)
            Gate.wait("%s raw" % scenario)
            t0 = time.perf_counter()
            m1 = timed([list(wrap) + listing + [snap_dir]], label="raw list")
            m2 = timed([dest_list], label="raw list dest")
            m = Measurement(time.perf_counter() - t0, m1.cpu + m2.cpu, max(m1.stall, m2.stall))
            stages = [listing + [snap_dir], ["&&"], dest_list]
        else:
            if tool == "ours":
                stages, env = [self._ours("-S", "-P", "-q", "-f", snap_dir, *self._ssh_opt_args(remote), small, dest)], self.py_env
            elif tool == "0.3.1":
                stages, env = [[OLD_SCRIPT, "-S", "-q", "-f", snap_dir, *self._ssh_opt_args(remote), small, dest]], self.env_031
            else:
                conf = self._btrbk_config("noop-%s" % ("s" if remote else "l"), self.msrc, "small",
                                          "snaps/btrbk", self._btrbk_target(folder, remote))
                stages, env = [[BTRBK, "-q", "-c", conf, "resume"]], self.btrbk_env
            syncfs(self.msrc, fs)
            m = timed([list(wrap) + stages[0]], env=env, label="%s %s" % (scenario, tool), gate=not wrap)
        for d in (folder, snap_dir):
            if len(subvolumes_in(d)) != self.args.pairs:
                raise BenchError("%s %s: %s no longer holds %d subvolumes" % (scenario, tool, d, self.args.pairs))
        return m, stages

    # -- driver -------------------------------------------------------------------------------

    def warm_up(self):
        """Untimed: page cache, Python bytecode, ssh host key; also fails fast on a broken setup."""
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            subprocess.run(["btrfs", "send", "-q", self.full_snap], stdout=null, check=True)
        for tool in TOOLS:
            for remote in (False, True):
                self.noop(tool, remote, -1)
        log("warm-up done in %.1fs" % (time.perf_counter() - t0))

    def run_rounds(self):
        for rnd in range(self.args.rounds):
            order = TOOLS[rnd % len(TOOLS):] + TOOLS[:rnd % len(TOOLS)]
            log("round %d of %d, order: %s" % (rnd + 1, self.args.rounds, ", ".join(order)))
            wanted = self.args.only
            for remote in (False, True):
                if ("full-ssh" if remote else "full-local") not in wanted:
                    continue
                # Over ssh the AES-GCM reference runs right after raw, so it rotates along.
                tools = [x for t in order for x in ((t, "raw-gcm") if remote and t == "raw" else (t,))]
                for tool in tools:
                    m, stages = self.full(tool, remote, rnd)
                    self.record("full-ssh" if remote else "full-local", tool, m, rnd, stages)
            if wanted & {"inc-local", "inc-ssh"}:
                changes = modify_tree(self.data, self.args.change_mib * MiB, seed=100 + rnd)
                syncfs(self.src)
                log("  changed %.1f MiB: %d files modified, %d added, %d removed" % (
                    changes.bytes / MiB, len(changes.modified), len(changes.added), len(changes.removed)))
            for remote in (False, True):
                if ("inc-ssh" if remote else "inc-local") not in wanted:
                    continue
                for tool in order:
                    m, stages = self.incremental(tool, remote, rnd)
                    self.record("inc-ssh" if remote else "inc-local", tool, m, rnd, stages)
            for remote in (False, True):
                if ("noop-ssh" if remote else "noop-local") not in wanted:
                    continue
                for _ in range(self.args.noop_reps):
                    for tool in order:
                        m, stages = self.noop(tool, remote, rnd)
                        self.record("noop-ssh" if remote else "noop-local", tool, m, rnd, stages)

    # -- diagnosis ----------------------------------------------------------------------------

    def diagnose(self):
        """Untimed: the processes each run starts, our tool's per-process timeline, its start-up
        cost and a cProfile of its no-op run."""
        d = self.diagnosis
        # Start-up: interpreter + imports + argument parsing, no work.
        # (Ours without bytecode cannot be timed through its launcher: python3 -I ignores PYTHON* variables.)
        variants = (
            ("ours, bytecode cached (as timed)", self._ours("--help"), self.py_env),
            ("ours run as `bin/btrfs-backup` with this machine's PATH (python3 -> %s)" % (shutil.which("python3") or "?"),
             [OURS_SCRIPT, "--help"], dict(os.environ)),
            ("btrfs-backup 0.3.1, bytecode cached (as timed)", [OLD_SCRIPT, "--help"], self.py_env),
        )
        d.append("Start-up (`--help`: interpreter, imports, argument parsing; median / min of 9, each after "
                 "the quiet gate):")
        d.append("")
        for label, argv, env in variants + (("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"],
                                             self.py_env),):
            samples = sorted(timed([argv], env=env, label=label, gate=True).seconds for _ in range(9))
            d.append("- %s: %.0f / %.0f ms" % (label, samples[4] * 1000, samples[0] * 1000))
        import_cli = "import sys; sys.path.insert(0, %r); import engine.frontends.cli" % str(REPO / "plugins" / "module_utils")
        imports = subprocess.run([sys.executable, "-X", "importtime", "-c", import_cli], env=self.py_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
        top = re.search(r"\|\s*(\d+) \| engine\.cli\s*$", imports, re.M)
        heavy = sorted(((int(m.group(1)), m.group(2).strip()) for m in
                        re.finditer(r"^import time:\s*(\d+) \|\s*\d+ \|(.*)$", imports, re.M)), reverse=True)[:8]
        d.append("- `python -X importtime` (cached): importing engine.frontends.cli takes %s ms in all; largest own times: %s" % (
            "%.1f" % (int(top.group(1)) / 1000) if top else "?",
            ", ".join("%s %.1f ms" % (name, us / 1000) for us, name in heavy)))
        if not shutil.which("strace"):
            d.append("")
            d.append("strace is not installed: no process counts or timelines.")
        else:
            d.append("")
            d.append("Processes started by one run (`strace --seccomp-bpf -f -e trace=execve,exit_group`; "
                     "successful execs; under strace, so slower than the timed runs):")
            d.append("")
            d.append("| scenario | tool | execs | of which ssh | programs |")
            d.append("|---|---|---:|---:|---|")
            timelines = {}
            for scenario, method, remote in (("noop-local", self.noop, False), ("noop-ssh", self.noop, True),
                                             ("inc-local", self.incremental, False), ("inc-ssh", self.incremental, True)):
                for tool in ("ours", "0.3.1", "btrbk"):
                    trace = self.tmp / ("trace-%s-%s" % (scenario, tool))
                    wrap = ["strace", "--seccomp-bpf", "-f", "-ttt", "-qq", "-s", "512", "-e", "trace=execve,exit_group",
                            "-e", "signal=none", "-o", str(trace)]
                    method(tool, remote, self.args.rounds, wrap=wrap)
                    rows = parse_exec_trace(trace, skip_prefix=str(self.wrapper_dir))
                    programs = collections.Counter(os.path.basename(r[2][0]) for r in rows)
                    shown = ", ".join("%s %d" % (k, v) for k, v in programs.most_common())
                    d.append("| %s | %s | %d | %d | %s |" % (scenario, tool, len(rows), programs.get("ssh", 0), shown))
                    if tool == "ours":
                        timelines[scenario] = rows
            for scenario, rows in timelines.items():
                d.append("")
                d.append("Timeline of one run of ours, %s (start and duration in ms from its exec; "
                         "`-o` options left out):" % scenario)
                d.append("```")
                for start, duration, argv in rows:
                    d.append("%7.1f %7.1f  %s" % (start * 1000, duration * 1000 if duration is not None else -1,
                                                  short_command(argv)))
                d.append("```")
        # Where our no-op time goes inside Python.
        import io
        import pstats
        for remote in (False, True):
            prof = self.tmp / ("ours-noop-%s.prof" % ("ssh" if remote else "local"))
            fs = self.mrdst if remote else self.mdst
            dest = self._url(fs / "many") if remote else str(fs / "many")
            args = ["-S", "-P", "-q", "-f", self.msrc / "snaps" / "many", *self._ssh_opt_args(remote),
                    self.msrc / "small", dest]
            # The engine's main() under the profiler, imports included. Not through bin/btrfs-backup:
            # it leaves with os._exit, before `python -m cProfile` could write its file.
            statement = "import engine.frontends.cli; engine.frontends.cli.main(%r)" % [str(a) for a in args]
            code = "import cProfile, sys; sys.path.insert(0, %r); cProfile.run(%r, %r)" % (
                str(REPO / "plugins" / "module_utils"), statement, str(prof))
            timed([[sys.executable, "-c", code]], env=self.py_env, label="profile")
            for order, count in (("cumulative", 15), ("tottime", 12)):
                out = io.StringIO()
                pstats.Stats(str(prof), stream=out).sort_stats(order).print_stats(count)
                keep = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
                d.append("")
                d.append("cProfile of ours, noop-%s, %d pairs (top %d by %s time; the profiler slows "
                         "pure-Python code down):" % ("ssh" if remote else "local", self.args.pairs, count, order))
                d.append("```")
                d.extend(keep[1:])
                d.append("```")

    # -- report -------------------------------------------------------------------------------

    def _median(self, scenario, tool, field="seconds"):
        """Median of one Measurement field over a tool's runs in a scenario."""
        return statistics.median(getattr(m, field) for m in self.results[scenario][tool])

    def report(self):
        titles = {
            "full-local": "full send, local",
            "full-ssh": "full send, ssh",
            "inc-local": "incremental run (~%d MiB changed), local" % self.args.change_mib,
            "inc-ssh": "incremental run (~%d MiB changed), ssh" % self.args.change_mib,
            "noop-local": "nothing to send, %d pairs, local" % self.args.pairs,
            "noop-ssh": "nothing to send, %d pairs, ssh" % self.args.pairs,
        }
        lines = []
        lines.append("Times in seconds, median / min over %d run(s) each (tools interleaved, order rotated "
                     "per round); ratios are medians over raw's median." % self.args.rounds)
        lines.append("")
        lines.append("| scenario | raw | ours | btrfs-backup 0.3.1 | btrbk | ours/raw | 0.3.1/raw | btrbk/raw |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for scenario in SCENARIOS:
            med = {t: self._median(scenario, t) for t in TOOLS if self.results[scenario][t]}
            mins = {t: min(m.seconds for m in self.results[scenario][t]) for t in med}
            if not med:
                continue
            cells = ["%s / %s" % (fmt_s(med[t]), fmt_s(mins[t])) if t in med else "-" for t in TOOLS]
            ratios = ["%.3f" % (med[t] / med["raw"]) if t in med and med.get("raw") else "-"
                      for t in ("ours", "0.3.1", "btrbk")]
            name = titles[scenario] + (" (raw: list src + dest)" if scenario.startswith("noop") else "")
            lines.append("| %s | %s |" % (name, " | ".join(cells + ratios)))
        for scenario in ("noop-local", "noop-ssh"):
            ours, old = self.results[scenario]["ours"], self.results[scenario]["0.3.1"]
            if min(len(ours), len(old)) >= 2:
                # The k-th runs of the two come from the same round and repetition: one after the
                # other, so the machine's load changes little between them.
                paired = [a.seconds / b.seconds for a, b in zip(ours, old)]
                lines.append("")
                lines.append("%s, ours / 0.3.1 paired run by run (%d pairs): median %.3f, quartiles %.3f-%.3f." % (
                    titles[scenario], len(paired), statistics.median(paired),
                    *statistics.quantiles(paired, n=4)[::2]))
        ref = self.results["full-ssh"].get("raw-gcm")
        if ref:
            med_ref = self._median("full-ssh", "raw-gcm")
            med_ours = self._median("full-ssh", "ours")
            lines.append("")
            lines.append("Reference, full send over ssh: raw with `-c %s` (the cipher ours negotiates, see "
                         "Environment): %s / %s s; ours / raw-gcm = %.3f; raw-gcm / raw = %.3f." % (
                             GCM, fmt_s(med_ref), fmt_s(min(m.seconds for m in ref)), med_ours / med_ref,
                             med_ref / self._median("full-ssh", "raw")))
        for scenario in ("full-local", "full-ssh"):
            own = self.own_time.get(scenario)
            if own:
                whole = self._median(scenario, "ours")
                lines.append("")
                lines.append("Ours outside the send | receive pipeline, %s (its own start-up, listing, locks and "
                             "verification; wall time minus the pipeline time in its --json result): median %.3f s, "
                             "max %.3f s, %.1f%% of its median run. The rest is the same pipeline raw runs%s." % (
                                 scenario, statistics.median(own), max(own), 100 * statistics.median(own) / whole,
                                 " (over ssh this part also opens the connection, which raw does inside its pipeline)"
                                 if scenario == "full-ssh" else ""))
        for scenario, base in (("full-local", "raw"), ("full-ssh", "raw"), ("full-ssh", "raw-gcm")):
            pairs = list(zip(self.results[scenario].get(base, []), self.results[scenario]["ours"]))
            if len(pairs) > 1:
                diffs = [o.seconds - r.seconds for r, o in pairs]
                base_med = statistics.median(r.seconds for r, _ in pairs)
                lines.append("")
                lines.append("Paired by round, %s: ours - %s = %s s; median %+.3f s (%+.1f%% of %s's median)." % (
                    scenario, base, ", ".join("%+.3f" % x for x in diffs), statistics.median(diffs),
                    100 * statistics.median(diffs) / base_med, base))
        if LINGERING:
            lines.append("")
            lines.append("Processes left running after a run ended (stopped by the benchmark):")
            lines.extend("- " + x for x in LINGERING)
        lines.append("")
        lines.append("CPU seconds on the sending side (user+sys of every process the run started, "
                     "median; over ssh the receiving sshd/btrfs are not included):")
        lines.append("")
        lines.append("| scenario | raw | ours | btrfs-backup 0.3.1 | btrbk | MB/s raw | MB/s ours |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for scenario in SCENARIOS:
            cpu = {t: self._median(scenario, t, "cpu") for t in TOOLS if self.results[scenario][t]}
            if not cpu:
                continue
            rates = ["-", "-"]
            if scenario.startswith("full"):
                rates = ["%.0f" % (self.data_bytes / 1e6 / self._median(scenario, t)) for t in ("raw", "ours")]
            lines.append("| %s | %s | %s |" % (scenario, " | ".join(
                "%.2f" % cpu[t] if t in cpu else "-" for t in TOOLS), " | ".join(rates)))
        lines.append("")
        lines.append("All samples, in run order (seconds, with the CPU pressure during the run in brackets): " + "; ".join(
            "%s %s: %s" % (s, t, ", ".join("%s [%.0f%%]" % (fmt_s(m.seconds), m.stall * 100) for m in self.results[s][t]))
            for s in SCENARIOS for t in TOOLS + ("raw-gcm",) if self.results[s].get(t)))
        if Gate.enabled and Gate.waits:
            lines.append("")
            lines.append("Quiet gate: before each measurement the benchmark waited for CPU pressure under %.0f%% "
                         "(two %.1fs windows with nothing of ours running): median wait %.1fs, longest %.0fs; "
                         "%d of %d measurements started on a busy machine after waiting %.0fs." % (
                             Gate.threshold * 100, Gate.window, statistics.median(Gate.waits), max(Gate.waits),
                             Gate.timeouts, len(Gate.waits), Gate.max_wait))
        print()
        print("## Environment")
        print()
        for line in self.info:
            print("- " + line)
        print("- load average (1/5/15 min) at the start: %s; at the end: %s (other work on the machine shows here)" % (
            self.load_start, " ".join("%.2f" % x for x in os.getloadavg())))
        now = engine_fingerprint()
        if now != self.fingerprint:
            print("- WARNING: our tool's code changed during this run (fingerprint %s at the start, %s at the "
                  "end): the figures mix versions; run again." % (self.fingerprint, now))
        else:
            print("- our tool's code (bin/, plugins/module_utils) fingerprint %s, unchanged during the run" % now)
        print()
        print("## Results")
        print()
        print("\n".join(lines))
        print()
        print("## Commands (round 1; temporary paths differ per run)")
        print()
        for scenario in SCENARIOS:
            for tool in TOOLS + ("raw-gcm",):
                if tool in self.commands[scenario]:
                    print("- %s, %s: `%s`" % (scenario, tool, self.commands[scenario][tool]))
            if scenario in self.btrbk_confs:
                print("  - btrbk config for %s:" % scenario)
                print("    ```")
                print("\n".join("    " + line for line in self.btrbk_confs[scenario].splitlines()))
                print("    ```")
        sys.stdout.flush()

    def print_diagnosis(self):
        print()
        print("## Diagnosis")
        print()
        print("\n".join(self.diagnosis))
        sys.stdout.flush()


def _mib(size: str) -> int:
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    size = size.strip().upper()
    return int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size) // MiB


_T0 = time.monotonic()


def log(message: str) -> None:
    print("[%6.1fs] %s" % (time.monotonic() - _T0, message), file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: ~200 MB, 2k small files, 30 pairs, 1 round")
    p.add_argument("--rounds", type=int,
                   help="rounds (default 4, so every tool takes every place in the order once; --quick: 1)")
    p.add_argument("--pairs", type=int, help="snapshot/backup pairs for the no-op scenario (default 300; --quick: 30)")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help="comma-separated scenarios to run (default: all of %s)" % ", ".join(SCENARIOS))
    p.add_argument("--noop-reps", type=int, default=3, help="no-op runs per tool per round (default 3)")
    p.add_argument("--change-mib", type=int, default=10, help="MiB changed before the incremental runs (default 10)")
    p.add_argument("--no-gate", action="store_true",
                   help="do not wait for a quiet machine (CPU pressure) before each measurement")
    p.add_argument("--gate-threshold", type=float, default=5.0,
                   help="CPU pressure (%%) under which the machine counts as quiet (default 5)")
    p.add_argument("--gate-max-wait", type=float, default=60.0,
                   help="longest wait for a quiet machine per measurement, seconds (default 60)")
    p.add_argument("--keep-remote-bashrc", action="store_true",
                   help="let remote commands read root's ~/.bashrc (by default the sshd sessions get an empty HOME)")
    p.add_argument("--no-bytecode-cache", action="store_true",
                   help="run the Python tools with this environment's bytecode settings as they are")
    p.add_argument("--diagnose", action="store_true",
                   help="afterwards count the processes of each run (strace) and profile our no-op runs")
    args = p.parse_args(argv)
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = args.only - set(SCENARIOS)
    if unknown or not args.only:
        p.error("--only takes scenarios from: %s (got %s)" % (", ".join(SCENARIOS), ", ".join(sorted(unknown)) or "none"))
    if args.quick:
        args.large_mib, args.small_files = [96, 64, 32], 2000
        args.src_size, args.dst_size = "1G", "1G"
        args.rounds = args.rounds or 1
        args.pairs = args.pairs or 30
    else:
        # ~1.5 GB: 1424 MiB in 12 large files + 20k small files of 2-6 KiB (~80 MiB).
        args.large_mib, args.small_files = [512, 384, 256, 128, 64, 32, 16, 8, 8, 8, 4, 4], 20000
        args.src_size, args.dst_size = "3G", "4608M"
        args.rounds = args.rounds or 4
        args.pairs = args.pairs or 300
    return args


def _on_signal(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def interrupt_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt, so every cleanup runs."""
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def cannot_run_here(benchmark: str, needs: str, tools: Sequence = ()) -> bool:
    """Whether this machine lacks what `benchmark` needs: root (for `needs`, e.g. "loop devices,
    mount, sshd") or one of `tools` (names on PATH, or paths); it says which."""
    if os.geteuid() != 0:
        log("%s needs root (%s)" % (benchmark, needs))
        return True
    missing = [os.fspath(tool) for tool in tools if not shutil.which(os.fspath(tool))]
    if missing:
        log("missing tools: %s" % ", ".join(missing))
    return bool(missing)


def quiet_cleanup() -> None:
    """Once cleaning up, a second Ctrl-C must not leave mounts behind."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def main(argv=None) -> int:
    args = parse_args(argv)
    Gate.enabled = not args.no_gate
    Gate.threshold = args.gate_threshold / 100
    Gate.max_wait = args.gate_max_wait
    if cannot_run_here("bench_send.py", "loop devices, mount, sshd",
                       ("btrfs", "mkfs.btrfs", "losetup", "ssh", "/usr/sbin/sshd", BTRBK, OLD_SCRIPT)):
        return 2

    interrupt_on_signals()
    become_subreaper()
    started = time.perf_counter()
    # Unwinds in reverse: our children are stopped first, then sshd (by its PID), then every
    # mount, loop device and the tmpfs (BtrfsPool), then the config dir.
    with contextlib.ExitStack() as stack:
        bench = Bench(args, stack)
        with children_stopped_on_failure():
            bench.setup()
            bench.warm_up()
            bench.run_rounds()
            # The figures first: a diagnosis that fails must not cost the rounds' results.
            bench.report()
            if args.diagnose:
                bench.diagnose()
                bench.print_diagnosis()
    log("total %.0fs; everything unmounted and removed" % (time.perf_counter() - started))
    return 0


@contextlib.contextmanager
def children_stopped_on_failure() -> Iterator[None]:
    """Around a benchmark's work, inside the stack that unmounts: after a failure or Ctrl-C, every
    process it started is stopped (by its id) before the mounts unwind; either way, a second Ctrl-C
    while cleaning up is ignored."""
    try:
        yield
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            log("interrupted: cleaning up")
        quiet_cleanup()
        kill_live_children()
        raise
    quiet_cleanup()


def run_benchmark(main) -> None:
    """Run a benchmark's main() and exit with its status: 130 after Ctrl-C, 1 with the reason after a BenchError."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BenchError as err:
        log("benchmark failed: %s" % err)
        sys.exit(1)


if __name__ == "__main__":
    run_benchmark(main)
