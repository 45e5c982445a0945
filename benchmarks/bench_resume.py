#!/usr/bin/env python3
"""Benchmark resumable transfers on a link shaped to 200 Mbit/s: a cut at 90 % and its resume
against an uncut transfer, against btrbk (which starts over), and the cost of staging uncut.

Run as root from the repository:

    .venv/bin/python benchmarks/bench_resume.py              # a 1.1 GiB stream of random data
    .venv/bin/python benchmarks/bench_resume.py --mib 300    # a quicker look

Scenarios, each on the same read-only snapshot (random data: compression cannot help anyone):

  direct        ours, --resumable never: btrfs send | ssh btrfs receive
  staged        ours, --resumable always, uncut: chunks land, then the destination receives them
  cut+resume    ours, --resumable always, the whole run killed (SIGKILL, its process group) when
                90 % of the stream has crossed the link, then the next run (which resumes)
  btrbk         btrbk uncut, and btrbk cut at 90 % then run again (its partial receive deleted by
                hand first, as btrbk tells its users): it sends the whole stream again

Time is wall time of the runs (a cut run until it was killed); bytes are those counted on the
namespace's loopback (both directions, headers included). Everything it sets up (tmpfs, loop
btrfs, a network namespace, an sshd in it) is removed at the end, also after a failure or Ctrl-C.
It prints figures, never pass or fail.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import BTRBK, BenchError, cannot_run_here, log, ours_argv, ours_env, run_benchmark, sh  # noqa: E402
from bench_streams import Link, Netns  # noqa: E402
from support.btrfs_loop import BtrfsPool  # noqa: E402
from support.sshd import Sshd  # noqa: E402

MiB = 1 << 20
SNAP_NAME = "20200101-000000"
BTRBK_SNAP_NAME = "data.20200101T0000"
STAGING = ".btrfs-backup-staging"


class ResumeBench:
    def __init__(self, args, stack: contextlib.ExitStack):
        self.args, self.stack = args, stack
        self.rows = []

    def setup(self):
        mib = self.args.mib
        self.pool = self.stack.enter_context(BtrfsPool(tmpfs_size="%dM" % (mib * 7 + 1024), prefix="bench-resume-"))
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-resume-cfg-")))
        self.src = self.pool.filesystem("src", "%dM" % (mib * 1.3 + 256))
        # Room for each run's backup side by side: deleting 1 GiB between runs takes minutes here.
        self.dst = self.pool.filesystem("dst", "%dM" % (mib * 5.5 + 256))
        netns = self.stack.enter_context(Netns("bench-resume-%d" % os.getpid(),
                                               ["tbf", "rate", self.args.link_rate, "burst", "256kb", "latency", "200ms"]))
        (self.tmp / "home").mkdir()
        sshd = self.stack.enter_context(Sshd(host="127.0.0.1", port=2224, run_prefix=netns.prefix,
                                             extra_config=["SetEnv HOME=%s" % (self.tmp / "home")]))
        self.link = Link(netns, sshd)
        log("namespace %s (%s), sshd pid %d" % (netns.name, netns.qdisc_line(), sshd.pid))
        data = self.src / "data"
        sh("btrfs", "subvolume", "create", data)
        with open(data / "random.bin", "wb") as out:
            for _ in range(mib):
                out.write(os.urandom(MiB))
        (self.src / "snaps").mkdir()
        self.snap = self.src / "snaps" / SNAP_NAME
        sh("btrfs", "subvolume", "snapshot", "-r", data, self.snap)
        (self.src / "snaps" / "btrbk").mkdir()
        sh("btrfs", "subvolume", "snapshot", "-r", data, self.src / "snaps" / "btrbk" / BTRBK_SNAP_NAME)
        sh("sync", "-f", self.src)
        self.stream = len(subprocess.run(["btrfs", "send", "-q", self.snap], stdout=subprocess.PIPE,
                                         check=True).stdout)
        log("stream of %s: %d bytes (%.2f GiB)" % (SNAP_NAME, self.stream, self.stream / (1 << 30)))
        self.env = ours_env()
        btrbk_ssh = self.tmp / "ssh-wrapper"
        btrbk_ssh.mkdir()
        extra = [o for o in self.link.opts if not o.startswith("IdentityFile=")]
        (btrbk_ssh / "ssh").write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (
            shutil.which("ssh"), " ".join("-o '%s'" % o for o in extra)))
        os.chmod(btrbk_ssh / "ssh", 0o755)
        self.btrbk_env = dict(os.environ, PATH="%s:%s" % (btrbk_ssh, os.environ.get("PATH", "")))

    # -- one run ---------------------------------------------------------------------------------

    def _run(self, argv, env, cut_when=None):
        """(seconds, link bytes, exit status) of one run; `cut_when()` true kills its process group."""
        before = self.link.netns.lo_bytes()
        started = time.monotonic()
        proc = subprocess.Popen(self.link.netns.prefix + argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=open(self.tmp / "last.log", "wb"), start_new_session=True)
        try:
            while proc.poll() is None:
                if cut_when is not None and cut_when(before):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        seconds = time.monotonic() - started
        time.sleep(1)  # the destination's end sees the cut and exits
        return seconds, self.link.netns.lo_bytes() - before, proc.returncode

    def _crossed(self, share):
        return lambda before: self.link.netns.lo_bytes() - before >= share * self.stream

    def _ours(self, dest, *flags, cut_at=None):
        argv = ours_argv("-S", "-q", "--compress", "none", "-f", self.snap.parent, *self.link.ssh_opt_args(),
                         *flags, self.src / "data", self.link.url(dest))
        return self._run(argv, self.env, self._crossed(cut_at) if cut_at else None)

    def _clear(self, dest):
        for sub in sorted(dest.iterdir()) if dest.exists() else []:
            if sub.name != STAGING:
                subprocess.run(["btrfs", "subvolume", "delete", sub], stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(dest, ignore_errors=True)
        sh("btrfs", "subvolume", "sync", self.dst)

    def _check(self, dest, name):
        show = sh("btrfs", "subvolume", "show", dest / name)
        if "Received UUID:" not in show or "Received UUID: \t\t-" in show:
            raise BenchError("%s at %s is not a complete backup" % (name, dest))

    def _row(self, label, seconds, link_bytes, note=""):
        self.rows.append((label, seconds, link_bytes, note))
        log("%-34s %7.1f s %8.1f MiB %s" % (label, seconds, link_bytes / MiB, note))

    def run(self):
        chunk = ["--resumable-chunk-size", self.args.chunk]
        for label, flags, dest in (
                ("ours direct (--resumable never)", ["--resumable", "never"], self.dst / "direct"),
                ("ours staged, uncut", ["--resumable", "always"] + chunk, self.dst / "staged")):
            dest.mkdir()
            seconds, link_bytes, code = self._ours(dest, *flags)
            if code:
                raise BenchError("%s failed: %s" % (label, (self.tmp / "last.log").read_text()[-2000:]))
            self._check(dest, SNAP_NAME)
            self._row(label, seconds, link_bytes)
        dest = self.dst / "cut"
        dest.mkdir()
        cut = self._ours(dest, "--resumable", "always", *chunk, cut_at=self.args.cut)
        staged = sum(1 for _ in (dest / STAGING).glob("*/*.chunk"))
        self._row("ours cut at %d%%" % (self.args.cut * 100), cut[0], cut[1], "(%d chunks staged)" % staged)
        resumed = self._ours(dest, "--resumable", "always", *chunk)
        if resumed[2]:
            raise BenchError("the resumed run failed: %s" % (self.tmp / "last.log").read_text()[-2000:])
        self._check(dest, SNAP_NAME)
        if (dest / STAGING).exists():
            raise BenchError("staging left behind after the resume")
        self._row("ours resumed run", resumed[0], resumed[1])
        self._row("ours cut + resumed, total", cut[0] + resumed[0], cut[1] + resumed[1])
        if not self.args.no_btrbk:
            for name in ("direct", "staged", "cut"):
                self._clear(self.dst / name)
            self._btrbk(self.dst / "btrbk")

    def _btrbk(self, dest):
        conf = self.tmp / "btrbk.conf"
        conf.write_text("\n".join([
            "timestamp_format        long", "snapshot_preserve_min   all", "snapshot_preserve       no",
            "target_preserve_min     all", "target_preserve         no",
            "ssh_identity            %s" % self.link.sshd.identity_file, "ssh_user                root",
            "ssh_port                %d" % self.link.port, "incremental             no",
            "volume %s" % self.src, "  subvolume data", "    snapshot_dir snaps/btrbk",
            "    target send-receive ssh://127.0.0.1%s" % dest]) + "\n")
        argv = [BTRBK, "-q", "-c", str(conf), "resume"]
        dest.mkdir()
        uncut = self._run(argv, self.btrbk_env)
        if uncut[2]:
            raise BenchError("btrbk failed: %s" % (self.tmp / "last.log").read_text()[-2000:])
        self._check(dest, BTRBK_SNAP_NAME)
        self._row("btrbk uncut", uncut[0], uncut[1])
        self._clear(dest)
        dest.mkdir()
        cut = self._run(argv, self.btrbk_env, self._crossed(self.args.cut))
        self._clear(dest)  # its partial receive: btrbk leaves it to the user
        dest.mkdir()
        again = self._run(argv, self.btrbk_env)
        self._check(dest, BTRBK_SNAP_NAME)
        self._row("btrbk cut at %d%%" % (self.args.cut * 100), cut[0], cut[1])
        self._row("btrbk run again (starts over)", again[0], again[1])
        self._row("btrbk cut + again, total", cut[0] + again[0], cut[1] + again[1])
        self._clear(dest)

    def report(self):
        rows = {label: (seconds, link_bytes) for label, seconds, link_bytes, _note in self.rows}
        direct = rows["ours direct (--resumable never)"]
        print("# Resumable transfers on a %s link (stream %.2f GiB, chunk %s)\n" % (
            self.args.link_rate, self.stream / (1 << 30), self.args.chunk))
        print("| run | time s | × direct time | link MiB | × stream bytes | note |")
        print("|---|---:|---:|---:|---:|---|")
        for label, seconds, link_bytes, note in self.rows:
            print("| %s | %.1f | %.2f | %.1f | %.3f | %s |" % (label, seconds, seconds / direct[0], link_bytes / MiB,
                                                            link_bytes / self.stream, note))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=1130, help="MiB of random data (default 1130: a 1.1 GiB stream)")
    parser.add_argument("--chunk", default="16M", help="--resumable-chunk-size (default 16M, the default of the setting)")
    parser.add_argument("--cut", type=float, default=0.9, help="cut when this share of the stream crossed")
    parser.add_argument("--link-rate", default="200mbit")
    parser.add_argument("--no-btrbk", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if cannot_run_here("bench_resume.py", "loop devices, mounts, a network namespace, sshd"):
        return 2
    with contextlib.ExitStack() as stack:
        bench = ResumeBench(args, stack)
        bench.setup()
        bench.run()
        bench.report()
    return 0


if __name__ == "__main__":
    run_benchmark(main)
