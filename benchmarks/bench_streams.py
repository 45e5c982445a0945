#!/usr/bin/env python3
"""Benchmark the stream features: compression on a shaped link, fan-out, pull, rate limit.

Run as root from the repository:

    .venv/bin/python benchmarks/bench_streams.py            # 500 MiB, each tool in every place (~15 min)
    .venv/bin/python benchmarks/bench_streams.py --quick    # 150 MiB, 1 round (~3 min)

Scenarios (every tool does the same work on the same data, in the same run; the tools take
turns, their order rotated per round; the report gives medians, minimums and ratios):

  shaped   a full send over ssh on a link shaped to 200 Mbit/s (tbf on the loopback of a
           network namespace of our own), of real files of this machine plus ~10% random
           bytes: raw, raw with zstd -3, btrbk (stream_compress zstd), btrfs-backup 0.3.1,
           ours (--compress auto) and ours --compress none
  plain    a full send over ssh on the unshaped loopback of a second namespace, of random
           (incompressible) bytes: raw, raw with AES-GCM, ours and ours --compress none
  fanout   data of the same kind (250 MiB) to three local filesystems: ours in one run, ours in
           three runs, raw `btrfs send | tee | btrfs receive` (one send) and three raw sends
  pull     the same data from the plain namespace's sshd (ssh://root@127.0.0.1:PORT/...) to two
           local filesystems: ours in one run, ours in two runs, raw `ssh … btrfs send | tee`
  rate     ours --limit-rate 20M and raw `pv -L 20M` to a local filesystem

Every run is checked: exactly the expected subvolume arrived at each destination, complete
(its received UUID is the snapshot's UUID) and in full (no parent). It prints figures, never
pass/fail. Everything it sets up (a tmpfs, loop-mounted btrfs images on mktemp folders, two
network namespaces, two sshds) is removed at the end, also after a failure, Ctrl-C or SIGTERM;
it stops only processes it started, by PID. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import fnmatch
import glob
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import (  # noqa: E402
    BTRBK, GCM, KEEP_PIDS, LINGERING, OLD_SCRIPT, OURS_SCRIPT, REPO, BenchError, Gate, Launcher, Measurement, env_of_031,
    become_subreaper, cannot_run_here, children_stopped_on_failure, delete_subvolumes, engine_fingerprint, fmt_s, interrupt_on_signals,
    log, ours_argv, ours_env, run_benchmark, sh, subvol_info, subvolumes_in, syncfs, timed, timed_run)
from support.btrfs_loop import BtrfsPool  # noqa: E402
from support.procs import children  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.trees import MiB, write_file  # noqa: E402

SNAP_NAME = "20200101-000000"            # btrfs-backup's scheme: %Y%m%d-%H%M%S
BTRBK_SNAP_NAME = "comp.20200101T0000"   # btrbk's (timestamp_format long): NAME.%Y%m%dT%H%M

TOOLS = {
    "shaped": ("raw", "raw-zstd", "btrbk", "0.3.1", "ours", "ours-none"),
    "plain": ("raw", "raw-gcm", "ours", "ours-none"),
    "fanout": ("ours-one", "ours-three", "raw-tee", "raw-three"),
    "pull": ("ours-one", "ours-two", "raw-tee"),
    "rate": ("ours", "raw-pv"),
}
SCENARIOS = tuple(TOOLS)
LABELS = {
    ("shaped", "raw"): "raw: `btrfs send | ssh … btrfs receive`",
    ("shaped", "raw-zstd"): "raw zstd: `btrfs send | zstd -3 -T0 | ssh … 'zstd -d | btrfs receive'`",
    ("shaped", "btrbk"): "btrbk, `stream_compress zstd`",
    ("shaped", "0.3.1"): "btrfs-backup 0.3.1",
    ("shaped", "ours"): "ours, `--compress auto`",
    ("shaped", "ours-none"): "ours, `--compress none`",
    ("plain", "raw"): "raw: `btrfs send | ssh … btrfs receive`",
    ("plain", "raw-gcm"): "raw with `ssh -c %s` (reference)" % GCM,
    ("plain", "ours"): "ours, `--compress auto`",
    ("plain", "ours-none"): "ours, `--compress none`",
    ("fanout", "ours-one"): "ours, one run to the three",
    ("fanout", "ours-three"): "ours, three runs (one destination each)",
    ("fanout", "raw-tee"): "raw: `btrfs send | tee >(receive) >(receive) | receive`",
    ("fanout", "raw-three"): "raw: three `btrfs send | btrfs receive`",
    ("pull", "ours-one"): "ours, one run to the two",
    ("pull", "ours-two"): "ours, two runs (one destination each)",
    ("pull", "raw-tee"): "raw: `ssh … btrfs send | tee >(receive) | receive`",
    ("rate", "ours"): "ours, `--limit-rate %s`",
    ("rate", "raw-pv"): "raw: `btrfs send | pv -L %s | btrfs receive`",
}
# Ours' runs that need an option of the engine, by the option its --help must list.
NEEDS = {("shaped", "ours"): "--compress", ("shaped", "ours-none"): "--compress",
         ("plain", "ours"): "--compress", ("plain", "ours-none"): "--compress", ("rate", "ours"): "--limit-rate"}

# Real files of this machine for the compressible data: (folder globs, share, file name patterns).
# Files under 8 KiB are left out: btrfs receive pays per file, and tens of thousands of tiny files
# would make a 2-CPU machine's receive, not the link, the bottleneck of the shaped scenario.
REAL_FILES = (
    (("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"), 0.45, ("*.so", "*.so.*")),
    (("/usr/lib/python3*",), 0.20, None),
    (("/usr/share/locale",), 0.20, None),
    (("/usr/share/doc",), 0.15, None),
)
MIN_FILE = 8 << 10
RANDOM_SHARE = 0.10


# -- network namespaces ----------------------------------------------------------------------------


class Netns:
    """A network namespace of our own: only its loopback, up, optionally shaped by a tc qdisc.
    Processes join it with `nsenter --net=` (not `ip netns exec`: that also gives them a mount
    namespace of their own, where btrfs mounts made later are not seen)."""

    def __init__(self, name: str, qdisc: Sequence[str] = ()):
        self.name = name
        self.qdisc = list(qdisc)
        self.path = Path("/run/netns") / name
        self.prefix = ["nsenter", "--net=%s" % self.path]
        self.made = False

    def __enter__(self) -> "Netns":
        if self.path.exists():
            raise BenchError("network namespace %s exists already" % self.name)
        sh("ip", "netns", "add", self.name)
        self.made = True
        try:
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
            if self.qdisc:
                sh("tc", "-n", self.name, "qdisc", "add", "dev", "lo", "root", *self.qdisc)
            links = json.loads(sh("ip", "-n", self.name, "-j", "link", "show"))
            if [link["ifname"] for link in links] != ["lo"]:
                raise BenchError("namespace %s has more than its loopback: %s" % (self.name, links))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.made:
            subprocess.run(["ip", "netns", "del", self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.made = False

    def lo_bytes(self) -> int:
        """Bytes sent on the namespace's loopback so far: every packet of both directions, headers included."""
        links = json.loads(sh("ip", "-n", self.name, "-s", "-j", "link", "show", "dev", "lo"))
        return int(links[0]["stats64"]["tx"]["bytes"])

    def qdisc_line(self) -> str:
        return " / ".join(line.strip() for line in sh("tc", "-n", self.name, "qdisc", "show", "dev", "lo").splitlines())


class Link:
    """An sshd on 127.0.0.1:PORT inside a namespace, and how each tool reaches it from the same namespace."""

    def __init__(self, netns: Netns, sshd: Sshd):
        self.netns, self.sshd = netns, sshd
        self.port = sshd.port
        self.opts = sshd.ssh_options()

    def ssh(self, remote_command: str = "", flags: Sequence[str] = ()) -> List[str]:
        """`nsenter --net=NS ssh -o OPT... [flags] -p PORT root@127.0.0.1 [command]`."""
        argv = self.netns.prefix + ["ssh"]
        for option in self.opts:
            argv += ["-o", option]
        argv += list(flags) + ["-p", str(self.port), "root@127.0.0.1"]
        return argv + ([remote_command] if remote_command else [])

    def url(self, path: Path, user: str = "root@") -> str:
        return "ssh://%s127.0.0.1:%d%s" % (user, self.port, path)

    def ssh_opt_args(self) -> List[str]:
        return [x for o in self.opts for x in ("--ssh-opt", o)]


# -- which processes a run started, and what they wrote ---------------------------------------------


def _is_send(process: dict) -> bool:
    argv = process["argv"]
    words = [w for w in argv[1:] if not w.startswith("-")]
    return process["comm"] == "btrfs" and bool(words) and words[0] == "send"


def _is_ssh(process: dict) -> bool:
    # By its name: a multiplexing master renames its command line ("ssh: PATH [mux]").
    return process["comm"] == "ssh"


class ProcessWatch:
    """From a thread, every `interval` seconds: the processes below some roots, each one's command
    line, and the I/O counters of `btrfs send` and `ssh` processes (the last values read before
    they ended: up to one interval of their output can be missing)."""

    def __init__(self, roots: Dict[str, Sequence[int]], skip: Sequence[int] = (), interval: float = 0.02):
        self.roots = {side: list(pids) for side, pids in roots.items()}
        self.skip = set(skip)
        self.interval = interval
        self.seen: Dict[Tuple[str, int, str], dict] = {}  # (side, pid, start time) -> comm, argv, io
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-watch", daemon=True)

    def __enter__(self) -> "ProcessWatch":
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self) -> None:
        for side, roots in self.roots.items():
            todo = [c for r in roots for c in children(r) if c not in self.skip]
            while todo:
                pid = todo.pop()
                self._sample(side, pid)
                todo.extend(c for c in children(pid) if c not in self.skip)

    def _sample(self, side: str, pid: int) -> None:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                stat = f.read()
            comm = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
            start = stat[stat.rfind(b")") + 2:].split()[19].decode()
            key = (side, pid, start)
            entry = self.seen.get(key)
            if entry is None or entry["comm"] != comm:  # new, or it has exec'd since
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
                entry = self.seen.setdefault(key, {"io": {}})
                entry.update(comm=comm, argv=argv)
            if _is_send(entry) or _is_ssh(entry):
                with open("/proc/%d/io" % pid) as f:
                    entry["io"] = {k: int(v) for k, v in (line.split(": ") for line in f.read().splitlines())}
        except (OSError, ValueError, IndexError):
            pass

    def processes(self, side: str, match: Callable[[dict], bool]) -> List[dict]:
        return [e for (s, _, _), e in self.seen.items() if s == side and match(e)]

    def total(self, side: str, match, counter: str) -> int:
        return sum(e["io"].get(counter, 0) for e in self.processes(side, match))

    def programs(self, side: str) -> str:
        """'btrfs send 1, ssh 2, ...': the processes seen on a side by name (btrfs with its command)."""
        names = collections.Counter()
        for (s, _, _), e in self.seen.items():
            if s != side or e["comm"] == "sshd":
                continue
            words = [w for w in e["argv"][1:] if not w.startswith("-")]
            names[e["comm"] + (" " + words[0] if e["comm"] == "btrfs" and words else "")] += 1
        return ", ".join("%s %d" % kv for kv in sorted(names.items())) or "none"


# -- results ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    seconds: float
    cpu: float
    stall: float
    link_bytes: Optional[int] = None       # on the namespace's loopback, both directions
    sends: Optional[int] = None            # btrfs send processes started here
    send_bytes: Optional[int] = None       # what they wrote
    remote_sends: Optional[int] = None     # btrfs send processes started by the sshd
    remote_send_bytes: Optional[int] = None
    ssh_rchar: Optional[int] = None        # what the ssh clients here read (pull: the stream coming in)
    pipeline_seconds: Optional[float] = None  # ours: the send | receive pipeline's time in its --json
    programs: Optional[str] = None         # the processes the run started, here and behind the sshd


def _rate_bytes(text: str) -> float:
    """pv's reading of a rate such as 20M: binary multiples."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def _mib(n: Optional[float]) -> str:
    return "-" if n is None else "%.1f" % (n / MiB)


# -- the benchmark ---------------------------------------------------------------------------------


class StreamBench:
    def __init__(self, args, stack: contextlib.ExitStack):
        self.args = args
        self.stack = stack
        self.results: Dict[str, Dict[str, List[Sample]]] = {s: collections.defaultdict(list) for s in SCENARIOS}
        self.commands: Dict[str, Dict[str, str]] = {s: {} for s in SCENARIOS}
        self.unavailable: Dict[Tuple[str, str], str] = {}
        self.info: List[str] = []
        self.btrbk_conf = ""
        self.pull_pids: List[int] = []  # ours' pull runs: their job lock in /run/lock names them

    # -- setup ----------------------------------------------------------------------------------

    def setup(self):
        a = self.args
        data, fan, rand, rate = a.data_mib, a.fan_mib, a.random_mib, a.rate_mib
        sizes = {"src": int((data + fan + rand + rate) * 1.4) + 256, "sdst": int(data * 1.4) + 256,
                 "pdst": int(rand * 1.4) + 256, "fan1": int(max(fan, rate) * 1.4) + 256,
                 "fan2": int(fan * 1.4) + 256, "fan3": int(fan * 1.4) + 256}
        total = sum(sizes.values()) + 256
        self.pool = self.stack.enter_context(BtrfsPool(tmpfs_size="%dM" % total, prefix="bench-streams-"))
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-streams-cfg-")))
        self.stack.callback(self._remove_pull_locks, set(os.listdir("/run/lock")) if os.path.isdir("/run/lock") else set())
        fs = {name: self.pool.filesystem(name, "%dM" % mib) for name, mib in sizes.items()}
        self.src, self.sdst, self.pdst = fs["src"], fs["sdst"], fs["pdst"]
        self.fans = [fs["fan1"], fs["fan2"], fs["fan3"]]
        log("filesystems (MiB): %s; tmpfs %d MiB at %s" % (
            ", ".join("%s %d" % kv for kv in sizes.items()), total, self.pool.tmpfs))

        # Two namespaces of our own, each with an sshd on its 127.0.0.1.
        tag = "bench-streams-%d" % os.getpid()
        shaped = self.stack.enter_context(Netns(tag + "-shaped", ["tbf", "rate", a.link_rate, "burst", "256kb",
                                                                  "latency", "200ms"]))
        plain = self.stack.enter_context(Netns(tag + "-plain"))
        (self.tmp / "remote-home").mkdir()
        # Remote commands skip root's ~/.bashrc (see bench_send): an empty HOME for the sessions.
        extra = ["SetEnv HOME=%s" % (self.tmp / "remote-home")]
        self.links = {}
        for netns, port in ((shaped, 2222), (plain, 2223)):
            sshd = self.stack.enter_context(Sshd(host="127.0.0.1", port=port, extra_config=extra,
                                                 run_prefix=netns.prefix))
            KEEP_PIDS.add(sshd.pid)
            self.links["shaped" if netns is shaped else "plain"] = Link(netns, sshd)
        self.shaped, self.plain = self.links["shaped"], self.links["plain"]
        log("namespaces %s (lo: %s) and %s, sshd pids %d and %d" % (
            shaped.name, shaped.qdisc_line(), plain.name, self.shaped.sshd.pid, self.plain.sshd.pid))

        # btrbk reads no ssh options but identity/user/port: a wrapper first on its PATH adds the rest.
        wrapper_dir = self.tmp / "ssh-wrapper"
        wrapper_dir.mkdir()
        extra_opts = [o for o in self.shaped.opts if not o.startswith("IdentityFile=")]
        (wrapper_dir / "ssh").write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (
            shutil.which("ssh"), " ".join("-o " + shlex.quote(o) for o in extra_opts)))
        os.chmod(wrapper_dir / "ssh", 0o755)
        self.btrbk_env = dict(os.environ, PATH="%s:%s" % (wrapper_dir, os.environ.get("PATH", "")))
        # 0.3.1 with compiled bytecode, as an installed copy (see bench_send); ours' launcher runs python3 -I.
        self.py_env = dict(os.environ)
        self.py_env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.py_env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        self.py_env = ours_env(self.py_env)

        self.help = subprocess.run(ours_argv("--help"), env=self.py_env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True).stdout
        for key, option in NEEDS.items():
            if option not in self.help:
                self.unavailable[key] = "not available (no %s in bin/btrfs-backup --help)" % option

        self._make_data()
        self.load_start = self._load()
        self.fingerprint = engine_fingerprint()

    def _make_data(self):
        a = self.args
        t0 = time.perf_counter()
        comp = self.pool.subvolume(self.src / "comp")
        files, real, random_mib = self._compressible(comp, a.data_mib, seed=11)
        fan = self.pool.subvolume(self.src / "fan")
        self._compressible(fan, a.fan_mib, seed=15)
        rand = self.pool.subvolume(self.src / "rand")
        for i in range(max(1, a.random_mib // 64)):
            write_file(rand / ("part%d" % i), a.random_mib * MiB // max(1, a.random_mib // 64), seed=12, file_no=i)
        rate = self.pool.subvolume(self.src / "rate")
        write_file(rate / "part0", a.rate_mib * MiB, seed=13)
        syncfs(self.src)
        self.real_files = (files, real)
        log("data: %d real files of this machine, %.0f MiB, plus %d MiB random; the same kind, %d MiB (fanout, "
            "pull); %d MiB random (plain); %d MiB random (rate); written in %.1fs" % (
                files, real / MiB, random_mib, a.fan_mib, a.random_mib, a.rate_mib, time.perf_counter() - t0))
        self.snaps = {}
        for name, subvol, snap_name in (("comp", comp, SNAP_NAME), ("btrbk-comp", comp, BTRBK_SNAP_NAME),
                                        ("fan", fan, SNAP_NAME), ("rand", rand, SNAP_NAME), ("rate", rate, SNAP_NAME)):
            (self.src / "snaps" / name).mkdir(parents=True)
            self.snaps[name] = self.pool.snapshot(subvol, self.src / "snaps" / name / snap_name)
        self.uuids = {snap: subvol_info(snap)["UUID"] for snap in self.snaps.values()}
        # Stream sizes (this also brings the data into the page cache).
        self.stream = {name: self._count([["btrfs", "send", "-q", self.snaps[name]]])
                       for name in ("comp", "fan", "rand", "rate")}
        self.stream["comp-zstd"] = self._count([["btrfs", "send", "-q", self.snaps["comp"]], ["zstd", "-3", "-T0", "-q"]])
        log("streams: comp %.1f MiB (zstd -3: %.1f MiB, ratio %.2f), fan %.1f MiB, rand %.1f MiB, rate %.1f MiB" % (
            self.stream["comp"] / MiB, self.stream["comp-zstd"] / MiB, self.stream["comp"] / self.stream["comp-zstd"],
            self.stream["fan"] / MiB, self.stream["rand"] / MiB, self.stream["rate"] / MiB))

    def _compressible(self, subvol: Path, mib: int, seed: int) -> Tuple[int, int, int]:
        """Real files of this machine plus RANDOM_SHARE random bytes: (files, their bytes, random MiB)."""
        random_mib = round(mib * RANDOM_SHARE)
        files, real = self._copy_real_files(subvol / "files", (mib - random_mib) * MiB)
        (subvol / "random").mkdir()
        for i in range(4):
            write_file(subvol / "random" / ("part%d" % i), random_mib * MiB // 4, seed=seed, file_no=i)
        return files, real, random_mib

    @staticmethod
    def _copy_real_files(dest: Path, budget: int) -> Tuple[int, int]:
        """Copy regular files (and symlinks) from REAL_FILES, each source up to its share; deterministic order."""
        files = copied = 0
        share_left = sum(share for _, share, _ in REAL_FILES)
        for n, (patterns, share, names) in enumerate(REAL_FILES):
            target = (budget - copied) * share / share_left
            share_left -= share
            took = 0
            roots = [r for p in patterns for r in sorted(glob.glob(p)) if os.path.isdir(r)]
            seen_roots = set()
            for root in roots:
                real_root = os.path.realpath(root)
                if real_root in seen_roots or took >= target:
                    continue
                seen_roots.add(real_root)
                for folder, dirs, names_here in os.walk(root):
                    dirs.sort()
                    for name in sorted(names_here):
                        if took >= target:
                            break
                        if names and not any(fnmatch.fnmatch(name, p) for p in names):
                            continue
                        path = os.path.join(folder, name)
                        out = dest / ("s%d" % n) / os.path.relpath(path, "/")
                        if out.exists() or out.is_symlink():
                            continue
                        try:
                            if os.path.islink(path):
                                out.parent.mkdir(parents=True, exist_ok=True)
                                os.symlink(os.readlink(path), out)
                                continue
                            size = os.path.getsize(path)
                            if not os.path.isfile(path) or size < MIN_FILE or took + size > target * 1.02 + MiB:
                                continue
                            out.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(path, out)
                        except OSError:
                            continue
                        took += size
                        files += 1
                    if took >= target:
                        break
            copied += took
        return files, copied

    @staticmethod
    def _count(stages) -> int:
        """Bytes out of `stage1 | stage2 ...` (untimed)."""
        procs, previous = [], None
        try:
            for argv in stages:
                proc = subprocess.Popen([os.fspath(a) for a in argv], stdin=previous.stdout if previous else None,
                                        stdout=subprocess.PIPE)
                if previous:
                    previous.stdout.close()
                procs.append(proc)
                previous = proc
            total = 0
            while True:
                chunk = previous.stdout.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
            previous.stdout.close()
            if any(p.wait() != 0 for p in procs):
                raise BenchError("%s failed" % " | ".join(shlex.join(map(str, s)) for s in stages))
            return total
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def probe_links(self):
        """Untimed: each link's bare rate (random bytes through ssh into cat), to see the shaping work.
        The time of an `ssh … true` (connection, authentication) is taken off."""
        self.probe = {}
        for name, link in self.links.items():
            mib = self.args.probe_mib * (1 if name == "shaped" else 4)
            probe = self.pool.tmpfs / "probe"
            write_file(probe, mib * MiB, seed=14)
            connect = min(timed([link.ssh("true")], label="ssh true").seconds for _ in range(3))
            m = timed([["cat", probe], link.ssh("cat > /dev/null")], label="probe %s" % name, gate=True)
            probe.unlink()
            self.probe[name] = mib * MiB / max(1e-3, m.seconds - connect)
            log("link %s: %d MiB in %.2fs, less %.2fs for an `ssh true`: %.1f Mbit/s (%.1f MiB/s)" % (
                name, mib, m.seconds, connect, self.probe[name] * 8 / 1e6, self.probe[name] / MiB))

    def describe(self):
        ciphers = {}
        for name, link in self.links.items():
            verbose = subprocess.run(link.ssh("true", flags=["-v"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True).stderr
            hit = re.search(r"kex: client->server cipher: (\S+)", verbose)
            ciphers[name] = hit.group(1) if hit else "?"
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "bin", "plugins/module_utils/engine"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.splitlines()
        options = [o for o in ("--compress", "--limit-rate", "--buffer") if o in self.help]

        def version(*argv):
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "?"

        files, real = self.real_files
        self.info = [
            "date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "host: %s, %d CPUs, %.1f GiB RAM, kernel %s" % (
                platform.node(), os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                platform.release()),
            "tools: %s; %s; %s; %s; %s; btrfs-backup 0.3.1 (%s); ours: %s with python3 = %s" % (
                version("btrfs", "--version"), version(BTRBK, "--version"), version("ssh", "-V"),
                version("zstd", "--version"), version("pv", "--version"), OLD_SCRIPT,
                OURS_SCRIPT.relative_to(REPO), sys.executable),
            "ours: engine at commit %s%s; stream options in its --help: %s" % (
                head, " + uncommitted changes in " + ", ".join(d[3:] for d in dirty) if dirty else "",
                ", ".join(options) or "none"),
            "compressible data (shaped): %d files copied from %s (%.0f MiB) + %d MiB random bytes; "
            "its send stream %.1f MiB, %.1f MiB through zstd -3 (ratio %.2f)" % (
                files, ", ".join(sorted({p for ps, _, _ in REAL_FILES for p in ps[:1]})), real / MiB,
                round(self.args.data_mib * RANDOM_SHARE), self.stream["comp"] / MiB, self.stream["comp-zstd"] / MiB,
                self.stream["comp"] / self.stream["comp-zstd"]),
            "the same kind, %d MiB (fanout, pull): stream %.1f MiB" % (self.args.fan_mib, self.stream["fan"] / MiB),
            "incompressible data: plain %.1f MiB stream, rate %.1f MiB stream (random bytes)" % (
                self.stream["rand"] / MiB, self.stream["rate"] / MiB),
            "shaped link: network namespace %s, its lo: `%s`; bare rate (%d MiB of random bytes through "
            "`ssh … 'cat > /dev/null'`, less the time of an `ssh … true`): %.1f Mbit/s = %.1f MiB/s" % (
                self.shaped.netns.name, self.shaped.netns.qdisc_line(), self.args.probe_mib,
                self.probe["shaped"] * 8 / 1e6, self.probe["shaped"] / MiB),
            "plain link: network namespace %s, unshaped lo; bare rate %.0f Mbit/s = %.0f MiB/s" % (
                self.plain.netns.name, self.probe["plain"] * 8 / 1e6, self.probe["plain"] / MiB),
            "sshd: one per namespace on 127.0.0.1 (ports %d, %d), started and reached with `nsenter --net=`; "
            "sessions with an empty HOME; negotiated cipher for a plain `ssh`: %s" % (
                self.shaped.port, self.plain.port, ", ".join("%s %s" % kv for kv in ciphers.items())),
            "ssh options for every tool: %s" % " ".join("-o " + o for o in self.shaped.opts),
            "rounds: %s; the tool order rotated per round" % ", ".join(
                "%s %d" % (s, self.rounds(s)) for s in SCENARIOS if s in self.args.only),
        ]
        for line in self.info:
            log(line)

    @staticmethod
    def _load() -> str:
        try:
            with open("/proc/pressure/cpu") as f:
                some = f.readline().split()
            psi = ", CPU pressure %s %% / %s %% (avg10 / avg60)" % (some[1].split("=")[1], some[2].split("=")[1])
        except (OSError, IndexError):
            psi = ""
        return "load average %s%s" % (" ".join("%.2f" % x for x in os.getloadavg()), psi)

    def _remove_pull_locks(self, before: set) -> None:
        """Ours' pull runs leave a job lock in /run/lock: remove those that hold one of their PIDs."""
        pids = {str(p) for p in self.pull_pids}
        with contextlib.suppress(OSError):
            for name in set(os.listdir("/run/lock")) - before:
                path = Path("/run/lock") / name
                if name.startswith("btrfs-backup-") and path.read_text().strip() in pids:
                    path.unlink()

    # -- one measurement --------------------------------------------------------------------------

    def measure(self, scenario: str, tool: str, rnd: int, start: Callable[[Launcher], None], env=None,
                link: Optional[Link] = None, shown: str = "") -> Sample:
        label = "%s %s" % (scenario, tool)
        for fs in (self.src, self.sdst, self.pdst, *self.fans):
            syncfs(fs)
        Gate.wait(label)
        before = link.netns.lo_bytes() if link else None
        roots = {"here": [os.getpid()]}
        if link:
            roots["there"] = [link.sshd.pid]
        with ProcessWatch(roots, skip=KEEP_PIDS) as watch:
            m: Measurement = timed_run(start, env=env, label=label)
        sample = Sample(m.seconds, m.cpu, m.stall)
        sample.sends = len(watch.processes("here", _is_send))
        sample.send_bytes = watch.total("here", _is_send, "wchar")
        sample.programs = "here: %s" % watch.programs("here")
        if link:
            sample.link_bytes = link.netns.lo_bytes() - before
            sample.ssh_rchar = watch.total("here", _is_ssh, "rchar")
            sample.remote_sends = len(watch.processes("there", _is_send))
            sample.remote_send_bytes = watch.total("there", _is_send, "wchar")
            sample.programs += "; behind the sshd: %s" % watch.programs("there")
        self.results[scenario][tool].append(sample)
        if shown:
            self.commands[scenario].setdefault(tool, shown)
        extra = ""
        if sample.link_bytes is not None:
            extra += "  link %s MiB" % _mib(sample.link_bytes)
        if sample.sends:
            extra += "  sends %d (%s MiB)" % (sample.sends, _mib(sample.send_bytes))
        if sample.remote_sends:
            extra += "  remote sends %d (%s MiB)" % (sample.remote_sends, _mib(sample.remote_send_bytes))
        log("  round %d  %-7s %-10s %8s s  cpu %6.2f s  cpu pressure %3.0f%%%s" % (
            rnd + 1, scenario, tool, fmt_s(m.seconds), m.cpu, m.stall * 100, extra))
        return sample

    def check_full(self, label: str, folder: Path, snap: Path) -> None:
        """Exactly the snapshot arrived at `folder`, complete and in full."""
        got = subvolumes_in(folder)
        if got != [snap.name]:
            raise BenchError("%s: expected [%s] at %s, found %s" % (label, snap.name, folder, got))
        info = subvol_info(folder / snap.name)
        if info.get("Received UUID") != self.uuids[snap] or info.get("Parent UUID") != "-":
            raise BenchError("%s: %s is not a complete full copy of %s: %s" % (label, folder / snap.name, snap, info))

    @staticmethod
    def clear(folder: Path, fs: Path) -> None:
        delete_subvolumes(folder, fs)
        shutil.rmtree(folder)

    @staticmethod
    def _pipeline(launcher: Launcher, stages, stdout=None) -> List[subprocess.Popen]:
        previous, procs = None, []
        for i, argv in enumerate(stages):
            last = i == len(stages) - 1
            proc = launcher.popen(argv, stdin=previous.stdout if previous else subprocess.DEVNULL,
                                  stdout=(stdout or subprocess.DEVNULL) if last else subprocess.PIPE)
            if previous:
                previous.stdout.close()
            procs.append(proc)
            previous = proc
        return procs

    @staticmethod
    def _tee(launcher: Launcher, source: Sequence[str], receivers: Sequence[Sequence[str]]) -> None:
        """`source | tee /dev/fd/N... | last receiver`, the other receivers reading the pipes N."""
        ends = []
        try:
            for argv in receivers[:-1]:
                read_end, write_end = os.pipe()
                ends.append(write_end)
                try:
                    launcher.popen(argv, stdin=read_end)
                finally:
                    os.close(read_end)
            send = launcher.popen(source, stdout=subprocess.PIPE)
            tee = launcher.popen(["tee", *("/dev/fd/%d" % fd for fd in ends)], stdin=send.stdout,
                                 stdout=subprocess.PIPE, pass_fds=ends)
            send.stdout.close()
            launcher.popen(receivers[-1], stdin=tee.stdout)
            tee.stdout.close()
        finally:
            for fd in ends:
                os.close(fd)

    @staticmethod
    def _one_after_another(launcher: Launcher, runs: Sequence[Sequence[Sequence[str]]]) -> None:
        for stages in runs:
            for proc in StreamBench._pipeline(launcher, stages):
                proc.wait()

    def _ours(self, *args) -> List[str]:
        return ours_argv("-S", "-P", "-q", *args)

    # -- scenarios --------------------------------------------------------------------------------

    def shaped_run(self, tool: str, rnd: int) -> None:
        link, fs = self.shaped, self.sdst
        folder = fs / ("%s-r%d" % (tool, rnd + 1))
        folder.mkdir()
        snap = self.snaps["btrbk-comp" if tool == "btrbk" else "comp"]
        send = ["btrfs", "send", "-q", snap]
        env = None
        if tool == "raw":
            stages = [send, link.ssh(shlex.join(["btrfs", "receive", str(folder)]))]
        elif tool == "raw-zstd":
            stages = [send, ["zstd", "-3", "-T0", "-q"],
                      link.ssh("zstd -d -q | " + shlex.join(["btrfs", "receive", str(folder)]))]
        elif tool == "btrbk":
            conf = self._btrbk_config(rnd, link.url(folder, user=""))
            stages, env = [link.netns.prefix + [BTRBK, "-q", "-c", conf, "resume"]], self.btrbk_env
        elif tool == "0.3.1":
            stages = [link.netns.prefix + [OLD_SCRIPT, "-S", "-q", "-f", snap.parent, *link.ssh_opt_args(),
                                           self.src / "comp", link.url(folder)]]
            env = env_of_031(self.py_env, self.tmp)
        else:
            compress = "none" if tool == "ours-none" else "auto"
            stages = [link.netns.prefix + self._ours("--compress", compress, "-f", snap.parent, *link.ssh_opt_args(),
                                                     self.src / "comp", link.url(folder))]
            env = self.py_env
        self.measure("shaped", tool, rnd, lambda launcher: self._pipeline(launcher, stages), env=env, link=link,
                     shown=show(stages))
        self.check_full("shaped %s" % tool, folder, snap)
        self.clear(folder, fs)

    def plain_run(self, tool: str, rnd: int) -> None:
        link, fs = self.plain, self.pdst
        folder = fs / ("%s-r%d" % (tool, rnd + 1))
        folder.mkdir()
        snap = self.snaps["rand"]
        env = None
        if tool in ("raw", "raw-gcm"):
            flags = ["-c", GCM] if tool == "raw-gcm" else []
            stages = [["btrfs", "send", "-q", snap], link.ssh(shlex.join(["btrfs", "receive", str(folder)]), flags=flags)]
        else:
            compress = "none" if tool == "ours-none" else "auto"
            stages = [link.netns.prefix + self._ours("--compress", compress, "-f", snap.parent, *link.ssh_opt_args(),
                                                     self.src / "rand", link.url(folder))]
            env = self.py_env
        self.measure("plain", tool, rnd, lambda launcher: self._pipeline(launcher, stages), env=env, link=link,
                     shown=show(stages))
        self.check_full("plain %s" % tool, folder, snap)
        self.clear(folder, fs)

    def fanout_run(self, tool: str, rnd: int) -> None:
        snap = self.snaps["fan"]
        folders = [fs / ("fanout-%s-r%d" % (tool, rnd + 1)) for fs in self.fans]
        for folder in folders:
            folder.mkdir()
        send = ["btrfs", "send", "-q", snap]
        receives = [["btrfs", "receive", folder] for folder in folders]
        ours = [self._ours("-f", snap.parent, self.src / "fan", *folders)]
        env = None
        if tool == "ours-one":
            start, shown, env = (lambda launcher: self._pipeline(launcher, ours)), show(ours), self.py_env
        elif tool == "ours-three":
            runs = [[self._ours("-f", snap.parent, self.src / "fan", folder)] for folder in folders]
            start, env = (lambda launcher: self._one_after_another(launcher, runs)), self.py_env
            shown = " ; ".join(show(r) for r in runs)
        elif tool == "raw-tee":
            start = lambda launcher: self._tee(launcher, send, receives)  # noqa: E731
            shown = "%s | tee %s | %s" % (shlex.join(map(str, send)), " ".join(
                ">(%s)" % shlex.join(map(str, r)) for r in receives[:-1]), shlex.join(map(str, receives[-1])))
        else:
            runs = [[send, receive] for receive in receives]
            start = lambda launcher: self._one_after_another(launcher, runs)  # noqa: E731
            shown = " ; ".join(show(r) for r in runs)
        self.measure("fanout", tool, rnd, start, env=env, shown=shown)
        for folder, fs in zip(folders, self.fans):
            self.check_full("fanout %s" % tool, folder, snap)
        for folder, fs in zip(folders, self.fans):
            self.clear(folder, fs)

    def pull_run(self, tool: str, rnd: int) -> None:
        link, snap = self.plain, self.snaps["fan"]
        fans = self.fans[:2]
        folders = [fs / ("pull-%s-r%d" % (tool, rnd + 1)) for fs in fans]
        for folder in folders:
            folder.mkdir()
        source = link.url(self.src / "fan")
        env, pids = None, []

        def ours(*dests):
            return [link.netns.prefix + self._ours("-f", snap.parent, *link.ssh_opt_args(), source, *dests)]

        def run_all(launcher, runs):
            for stages in runs:
                procs = self._pipeline(launcher, stages)
                pids.append(procs[0].pid)
                for proc in procs:
                    proc.wait()

        if tool in ("ours-one", "ours-two"):
            runs = [ours(*folders)] if tool == "ours-one" else [ours(folder) for folder in folders]
            start, env, shown = (lambda launcher: run_all(launcher, runs)), self.py_env, " ; ".join(show(r) for r in runs)
        else:
            send = link.ssh(shlex.join(["btrfs", "send", "-q", str(snap)]))
            receives = [["btrfs", "receive", folder] for folder in folders]
            start = lambda launcher: self._tee(launcher, send, receives)  # noqa: E731
            shown = "%s | tee >(%s) | %s" % (shlex.join(map(str, send)), shlex.join(map(str, receives[0])),
                                             shlex.join(map(str, receives[1])))
        try:
            self.measure("pull", tool, rnd, start, env=env, link=link, shown=shown)
        finally:
            self.pull_pids.extend(pids)
        for folder in folders:
            self.check_full("pull %s" % tool, folder, snap)
        for folder, fs in zip(folders, fans):
            self.clear(folder, fs)

    def rate_run(self, tool: str, rnd: int) -> None:
        fs, snap = self.fans[0], self.snaps["rate"]
        folder = fs / ("rate-%s-r%d" % (tool, rnd + 1))
        folder.mkdir()
        limit = self.args.limit
        out = tempfile.TemporaryFile()
        if tool == "ours":
            stages, env = [self._ours("--json", "--limit-rate", limit, "-f", snap.parent, self.src / "rate", folder)], self.py_env
        else:
            stages, env = [["btrfs", "send", "-q", snap], ["pv", "-q", "-L", limit], ["btrfs", "receive", folder]], None
        with out:
            sample = self.measure("rate", tool, rnd, lambda launcher: self._pipeline(launcher, stages, stdout=out),
                                  env=env, shown=show(stages))
            if tool == "ours":
                out.seek(0)
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                    sample.pipeline_seconds = json.loads(out.read().decode())["destinations"][0]["transfers"][0]["seconds"]
        self.check_full("rate %s" % tool, folder, snap)
        self.clear(folder, fs)

    def _btrbk_config(self, rnd: int, target: str) -> Path:
        lines = [
            "timestamp_format        long",
            "snapshot_preserve_min   all",
            "snapshot_preserve       no",
            "target_preserve_min     all",
            "target_preserve         no",
            "ssh_identity            %s" % self.shaped.sshd.identity_file,
            "ssh_user                root",
            # A full stream, as every other tool here sends (btrbk would otherwise look for a parent).
            "incremental             no",
            "stream_compress         zstd",
            "volume %s" % self.src,
            "  subvolume comp",
            "    snapshot_dir snaps/btrbk-comp",
            "    target send-receive %s" % target,
        ]
        path = self.tmp / ("btrbk-r%d.conf" % (rnd + 1))
        path.write_text("\n".join(lines) + "\n")
        self.btrbk_conf = self.btrbk_conf or path.read_text()
        return path

    # -- driver -------------------------------------------------------------------------------------

    def warm_up(self):
        """Untimed: Python bytecode and the ssh host keys; fails fast on a broken setup."""
        subprocess.run([OLD_SCRIPT, "--help"], env=self.py_env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(ours_argv("--help"), env=self.py_env, stdout=subprocess.DEVNULL, check=True)
        for link in self.links.values():
            subprocess.run(link.ssh("btrfs --version"), stdout=subprocess.DEVNULL, check=True)

    def rounds(self, scenario: str) -> int:
        """As many as the scenario has tools (each takes every place in the order once), unless given."""
        return self.args.rounds or len(TOOLS[scenario])

    def run_rounds(self):
        runs = {"shaped": self.shaped_run, "plain": self.plain_run, "fanout": self.fanout_run,
                "pull": self.pull_run, "rate": self.rate_run}
        wanted = [s for s in SCENARIOS if s in self.args.only]
        total = max(self.rounds(s) for s in wanted)
        for rnd in range(total):
            log("round %d of %d" % (rnd + 1, total))
            for scenario in wanted:
                if rnd >= self.rounds(scenario):
                    continue
                tools = TOOLS[scenario]
                order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
                for tool in order:
                    if (scenario, tool) in self.unavailable:
                        continue
                    runs[scenario](tool, rnd)

    # -- report -------------------------------------------------------------------------------------

    def _med(self, scenario, tool, field="seconds"):
        values = [getattr(s, field) for s in self.results[scenario].get(tool, []) if getattr(s, field) is not None]
        return statistics.median(values) if values else None

    def _ratio(self, scenario, a, b) -> Optional[float]:
        x, y = self._med(scenario, a), self._med(scenario, b)
        return x / y if x is not None and y else None

    def _label(self, scenario, tool):
        """The tool's name for a table cell (a | there, even in code, must be escaped)."""
        text = LABELS[scenario, tool]
        return (text % self.args.limit if scenario == "rate" else text).replace("|", "\\|")

    def _time_cells(self, scenario, tool):
        samples = self.results[scenario].get(tool)
        if not samples:
            return None
        return "%s / %s" % (fmt_s(self._med(scenario, tool)), fmt_s(min(s.seconds for s in samples)))

    def report(self):
        out: List[str] = []
        emit = out.append
        na = "not available"

        def row(scenario, tool, cells: Callable[[], List[str]], width):
            times = self._time_cells(scenario, tool)
            if times is None:
                why = self.unavailable.get((scenario, tool), "not run")
                emit("| %s | %s |" % (self._label(scenario, tool), " | ".join([why] + ["-"] * (width - 1))))
            else:
                emit("| %s | %s |" % (self._label(scenario, tool), " | ".join([times] + cells())))

        def ratio_text(scenario, a, b, target=None):
            r = self._ratio(scenario, a, b)
            if r is None:
                return "%s / %s: %s" % (a, b, na)
            return "%s / %s = **%.3f**%s" % (a, b, r, " (target ≤ %.2f)" % target if target else "")

        stream = self.stream
        if "shaped" in self.args.only:
            emit("### 1. Full send over ssh on a shaped link (%s), compressible data" % self.args.link_rate)
            emit("")
            emit("Stream %.1f MiB (zstd -3: %.1f MiB). Times in seconds, median / min over the rounds; "
                 "MiB/s is the stream's size over the median time; link MiB is what crossed the namespace's "
                 "loopback (both directions, headers included), median." % (stream["comp"] / MiB, stream["comp-zstd"] / MiB))
            emit("")
            emit("| tool | seconds | stream MiB/s | link MiB | CPU s here |")
            emit("|---|---:|---:|---:|---:|")
            for tool in TOOLS["shaped"]:
                row("shaped", tool, lambda t=tool: [
                    "%.1f" % (stream["comp"] / MiB / self._med("shaped", t)), _mib(self._med("shaped", t, "link_bytes")),
                    "%.2f" % self._med("shaped", t, "cpu")], 4)
            emit("")
            raw = self._med("shaped", "raw")
            if raw:
                emit("Raw over the shaped link: %.1f Mbit/s of stream (the bare link carried %.1f Mbit/s)." % (
                    stream["comp"] * 8 / 1e6 / raw, self.probe["shaped"] * 8 / 1e6))
            emit("")
            emit("- " + ratio_text("shaped", "ours", "btrbk", 0.90))
            emit("- " + ratio_text("shaped", "ours", "raw-zstd", 1.05))
            emit("- " + ratio_text("shaped", "ours", "raw"))
            emit("- " + ratio_text("shaped", "ours-none", "raw"))
            emit("- " + ratio_text("shaped", "btrbk", "raw-zstd"))
            emit("")
        if "plain" in self.args.only:
            emit("### 2. Full send over ssh on the unshaped loopback, incompressible data")
            emit("")
            emit("Stream %.1f MiB of random bytes. Ratios are to raw in the same run." % (stream["rand"] / MiB))
            emit("")
            emit("| tool | seconds | stream MiB/s | link MiB | CPU s here | / raw |")
            emit("|---|---:|---:|---:|---:|---:|")
            for tool in TOOLS["plain"]:
                row("plain", tool, lambda t=tool: [
                    "%.1f" % (stream["rand"] / MiB / self._med("plain", t)), _mib(self._med("plain", t, "link_bytes")),
                    "%.2f" % self._med("plain", t, "cpu"),
                    "%.3f" % self._ratio("plain", t, "raw") if self._med("plain", "raw") else "-"], 5)
            emit("")
        if "fanout" in self.args.only:
            emit("### 3. Fan-out: the compressible data to three local filesystems")
            emit("")
            emit("Data of the same kind as above, %d MiB: its stream %.1f MiB. `btrfs send` processes this side "
                 "started, and what they wrote (/proc/PID/io wchar, sampled every 20 ms, so up to ~20 ms of output "
                 "may be missing), median." % (self.args.fan_mib, stream["fan"] / MiB))
            emit("")
            emit("| run | seconds | btrfs send processes | MiB the sends wrote | CPU s |")
            emit("|---|---:|---:|---:|---:|")
            for tool in TOOLS["fanout"]:
                row("fanout", tool, lambda t=tool: [
                    "%g" % self._med("fanout", t, "sends"), _mib(self._med("fanout", t, "send_bytes")),
                    "%.2f" % self._med("fanout", t, "cpu")], 4)
            emit("")
            emit("- " + ratio_text("fanout", "ours-one", "ours-three", 0.60))
            emit("- " + ratio_text("fanout", "raw-tee", "raw-three"))
            emit("- " + ratio_text("fanout", "ours-one", "raw-tee"))
            emit("")
        if "pull" in self.args.only:
            emit("### 4. Pull from an ssh source to two local filesystems")
            emit("")
            emit("The fan-out's data (stream %.1f MiB) from `ssh://root@127.0.0.1:%d%s` on the plain (unshaped) "
                 "namespace's sshd; ours with its default `--compress auto`. Remote sends are `btrfs send` processes "
                 "below that sshd; link MiB crossed its loopback (both directions); ssh rchar is what the ssh clients "
                 "here read. Medians." % (stream["fan"] / MiB, self.plain.port, self.src / "fan"))
            emit("")
            emit("| run | seconds | remote btrfs send processes | MiB they wrote | link MiB | ssh rchar MiB |")
            emit("|---|---:|---:|---:|---:|---:|")
            for tool in TOOLS["pull"]:
                row("pull", tool, lambda t=tool: [
                    "%g" % self._med("pull", t, "remote_sends"), _mib(self._med("pull", t, "remote_send_bytes")),
                    _mib(self._med("pull", t, "link_bytes")), _mib(self._med("pull", t, "ssh_rchar"))], 5)
            emit("")
            emit("- " + ratio_text("pull", "ours-one", "ours-two"))
            emit("- " + ratio_text("pull", "ours-one", "raw-tee"))
            emit("")
        if "rate" in self.args.only:
            limit = _rate_bytes(self.args.limit)
            emit("### 5. Rate limit %s (%.1f MiB/s, as pv reads it) to a local filesystem" % (self.args.limit, limit / MiB))
            emit("")
            emit("Stream %.1f MiB of random bytes; throughput = stream size / wall time of the whole run "
                 "(ours: also over its pipeline's own time from --json). Target: within 10 %% of the limit." % (
                     stream["rate"] / MiB))
            emit("")
            emit("| run | seconds | MiB/s | deviation | MiB/s over the pipeline time | deviation |")
            emit("|---|---:|---:|---:|---:|---:|")
            for tool in TOOLS["rate"]:
                def cells(t=tool):
                    out = []
                    for seconds in (self._med("rate", t), self._med("rate", t, "pipeline_seconds")):
                        rate = stream["rate"] / seconds if seconds else None
                        out += ["%.2f" % (rate / MiB), "%+.1f %%" % (100 * (rate / limit - 1))] if rate else ["-", "-"]
                    return out
                row("rate", tool, cells, 5)
            emit("")
        if LINGERING:
            emit("Processes left running after a run ended (stopped by the benchmark):")
            emit("")
            out.extend("- " + x for x in LINGERING)
            emit("")
        emit("All samples in run order (seconds [CPU pressure during the run]):")
        emit("")
        for scenario in SCENARIOS:
            for tool in TOOLS[scenario]:
                samples = self.results[scenario].get(tool)
                if samples:
                    emit("- %s %s: %s" % (scenario, tool, ", ".join(
                        "%s [%.0f%%]" % (fmt_s(s.seconds), s.stall * 100) for s in samples)))
        if Gate.enabled and Gate.waits:
            emit("")
            emit("Quiet gate: before each measurement the benchmark waited for CPU pressure under %.0f%% "
                 "(two %.1fs windows): median wait %.1fs, longest %.0fs; %d of %d measurements started on a "
                 "busy machine after waiting %.0fs." % (
                     Gate.threshold * 100, Gate.window, statistics.median(Gate.waits), max(Gate.waits),
                     Gate.timeouts, len(Gate.waits), Gate.max_wait))

        print("## Environment")
        print()
        for line in self.info:
            print("- " + line)
        print("- machine load at the start: %s; at the end: %s (other work on the machine shows here)" % (
            self.load_start, self._load()))
        now = engine_fingerprint()
        if now != self.fingerprint:
            print("- WARNING: our tool's code changed during this run (fingerprint %s at the start, %s at the end): "
                  "the figures mix versions; run again." % (self.fingerprint, now))
        else:
            print("- our tool's code (bin/, plugins/module_utils) fingerprint %s, unchanged during the run" % now)
        print()
        print("## Results")
        print()
        print("\n".join(out))
        print()
        print("## Commands (round 1; temporary paths differ per run)")
        print()
        for scenario in SCENARIOS:
            for tool in TOOLS[scenario]:
                if tool in self.commands[scenario]:
                    print("- %s, %s: `%s`" % (scenario, tool, self.commands[scenario][tool]))
        print()
        print("## Processes of one run (round 1, sampled every 20 ms; sshd's own processes left out)")
        print()
        for scenario in SCENARIOS:
            for tool in TOOLS[scenario]:
                samples = self.results[scenario].get(tool)
                if samples:
                    print("- %s, %s: %s" % (scenario, tool, samples[0].programs))
        if self.btrbk_conf:
            print()
            print("btrbk's configuration (shaped):")
            print()
            print("```")
            print(self.btrbk_conf.rstrip())
            print("```")
        sys.stdout.flush()


def show(stages) -> str:
    return " | ".join(shlex.join(map(str, argv)) for argv in stages)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: ~150 MiB, 1 round")
    p.add_argument("--rounds", type=int, help="rounds of every scenario (default: as many as it has tools, so "
                                              "each tool takes every place in the order once; --quick: 1)")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help="comma-separated scenarios to run (default: all of %s)" % ", ".join(SCENARIOS))
    p.add_argument("--data-mib", type=int, help="compressible data, MiB (default 500; --quick: 150)")
    p.add_argument("--fan-mib", type=int, help="data of the same kind for fanout and pull, MiB (default 250; "
                                               "--quick: 100)")
    p.add_argument("--random-mib", type=int, help="random data for the plain link, MiB (default 300; --quick: 100)")
    p.add_argument("--rate-mib", type=int, help="random data for the rate limit, MiB (default 200; --quick: 60)")
    p.add_argument("--limit", default="20M", help="the rate limit (default 20M: 20 MiB/s, as pv reads it)")
    p.add_argument("--link-rate", default="200mbit", help="the shaped link's rate, as tc reads it (default 200mbit)")
    p.add_argument("--probe-mib", type=int, default=48, help="MiB through each link to measure its bare rate (default 48)")
    p.add_argument("--no-gate", action="store_true", help="do not wait for a quiet machine before each measurement")
    p.add_argument("--gate-threshold", type=float, default=5.0,
                   help="CPU pressure (%%) under which the machine counts as quiet (default 5)")
    p.add_argument("--gate-max-wait", type=float, default=5.0,
                   help="longest wait for a quiet machine per measurement, seconds (default 5)")
    args = p.parse_args(argv)
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = args.only - set(SCENARIOS)
    if unknown or not args.only:
        p.error("--only takes scenarios from: %s" % ", ".join(SCENARIOS))
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else None)
    args.data_mib = args.data_mib or (150 if quick else 500)
    args.fan_mib = args.fan_mib or (100 if quick else 250)
    args.random_mib = args.random_mib or (100 if quick else 300)
    args.rate_mib = args.rate_mib or (60 if quick else 200)
    if quick and args.probe_mib == 48:
        args.probe_mib = 24
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    Gate.enabled = not args.no_gate
    Gate.threshold = args.gate_threshold / 100
    Gate.max_wait = args.gate_max_wait
    if cannot_run_here("bench_streams.py", "loop devices, mounts, network namespaces, sshd",
                       ("btrfs", "mkfs.btrfs", "losetup", "ip", "tc", "nsenter", "ssh", "/usr/sbin/sshd", "zstd",
                        "pv", "tee", BTRBK, OLD_SCRIPT)):
        return 2
    interrupt_on_signals()
    become_subreaper()
    started = time.perf_counter()
    # Unwinds in reverse: our children first, then the sshds (by PID), the namespaces, every
    # mount, loop device and the tmpfs, the config folder.
    with contextlib.ExitStack() as stack:
        bench = StreamBench(args, stack)
        with children_stopped_on_failure():
            bench.setup()
            bench.warm_up()
            bench.probe_links()
            bench.describe()
            bench.run_rounds()
            bench.report()
    log("total %.0fs; everything unmounted and removed" % (time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    run_benchmark(main)
