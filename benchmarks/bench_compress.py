#!/usr/bin/env python3
"""Benchmark `--compress auto` on incrementals: does it judge the data the stream carries?

Run as root from the repository:

    .venv/bin/python benchmarks/bench_compress.py               # 5 rounds, 48 MiB changed
    .venv/bin/python benchmarks/bench_compress.py --rounds 3 --change-mib 24

Two incremental sends over ssh, each by ours with --compress auto, none and zstd, in turns (the
order rotates every round), the same snapshot pair every time:

  fast  the unshaped loopback of a network namespace of our own; a snapshot of text, then
        random data added (incompressible): auto should send it plain, as fast as none
  slow  a loopback shaped with tbf (default 100mbit); a snapshot of random data, then text
        added (compressible): auto should compress it, as fast as zstd

Before judging the changes, auto judged the whole snapshot: text in `fast` (so it compressed
random data) and random data in `slow` (so it sent text plain): the zstd row of `fast` and the
none row of `slow` are what that cost.

Each run sends the prepared snapshot (-S: no new one) incrementally from the base the destination
holds; the backup is checked (received UUID, parent) and deleted before the next run. It prints
figures, never pass/fail. Everything it sets up (a tmpfs, loop-mounted btrfs images, two network
namespaces, two sshds) is removed at the end; it stops only processes it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import (  # noqa: E402
    KEEP_PIDS, BenchError, Gate, become_subreaper, cannot_run_here, children_stopped_on_failure, fmt_s, interrupt_on_signals, log,
    ours_argv, ours_env, run_benchmark, sh, subvol_info, syncfs, timed)
from bench_streams import Link, Netns  # noqa: E402
from support.btrfs_loop import BtrfsPool  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.trees import MiB, write_file, write_text_files  # noqa: E402

BASE, CHANGED = "20200101-000000", "20200101-010000"
SETTINGS = ("auto", "none", "zstd")
SCENARIOS = {  # name: (base data, added data)
    "fast": ("text", "random"),
    "slow": ("random", "text"),
}


class CompressBench:
    def __init__(self, args, stack: contextlib.ExitStack):
        self.args, self.stack = args, stack
        self.samples = {(s, c): [] for s in SCENARIOS for c in SETTINGS}
        self.notes = {}

    def setup(self):
        a = self.args
        size = "%dM" % (4 * (a.base_mib + a.change_mib) + 256)
        self.pool = self.stack.enter_context(BtrfsPool(tmpfs_size="%dM" % (12 * (a.base_mib + a.change_mib) + 1024),
                                                       prefix="bench-compress-"))
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-compress-cfg-")))
        self.src = self.pool.filesystem("src", size)
        tag = "bench-compress-%d" % os.getpid()
        (self.tmp / "remote-home").mkdir()
        extra = ["SetEnv HOME=%s" % (self.tmp / "remote-home")]
        self.links, self.dests = {}, {}
        for name, qdisc, port in (("fast", [], 2232),
                                  ("slow", ["tbf", "rate", a.link_rate, "burst", "256kb", "latency", "200ms"], 2233)):
            netns = self.stack.enter_context(Netns("%s-%s" % (tag, name), qdisc))
            sshd = self.stack.enter_context(Sshd(host="127.0.0.1", port=port, extra_config=extra,
                                                 run_prefix=netns.prefix))
            KEEP_PIDS.add(sshd.pid)
            self.links[name] = Link(netns, sshd)
            self.dests[name] = self.pool.filesystem("dst-" + name, size)
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env = ours_env(self.env)
        for name, (base, added) in SCENARIOS.items():
            self._prepare(name, base, added)
        log("links: fast %s; slow %s" % (self.links["fast"].netns.qdisc_line() or "unshaped",
                                         self.links["slow"].netns.qdisc_line()))

    def _prepare(self, name, base, added):
        """A subvolume of `base` data, its snapshot BASE (received at the destination), then
        `added` data and its snapshot CHANGED: what every run sends."""
        a = self.args
        data = self.pool.subvolume(self.src / name)
        self._write(data / "base", base, a.base_mib, seed=1)
        snaps = self.src / ("snaps-" + name)
        snaps.mkdir()
        self.pool.snapshot(data, snaps / BASE)
        self._write(data / "added", added, a.change_mib, seed=2)
        self.pool.snapshot(data, snaps / CHANGED)
        folder = self.dests[name] / "backups"
        folder.mkdir()
        timed([["btrfs", "send", "-q", snaps / BASE], ["btrfs", "receive", folder]], label="base")
        syncfs(self.src, self.dests[name])
        self.base_uuid = getattr(self, "base_uuid", {})
        self.base_uuid[name] = subvol_info(snaps / BASE)["UUID"]
        self.changed_uuid = getattr(self, "changed_uuid", {})
        self.changed_uuid[name] = subvol_info(snaps / CHANGED)["UUID"]
        stream = subprocess.run(["btrfs", "send", "-q", "-p", snaps / BASE, snaps / CHANGED],
                                stdout=subprocess.PIPE, check=True).stdout
        packed = subprocess.run(["zstd", "-3", "-c"], input=stream, stdout=subprocess.PIPE, check=True).stdout
        self.notes[name] = (len(stream), len(packed))
        log("%s: base %d MiB of %s, %d MiB of %s added; incremental stream %.1f MiB (zstd -3: %.1f MiB)" % (
            name, a.base_mib, base, a.change_mib, added, len(stream) / MiB, len(packed) / MiB))

    @staticmethod
    def _write(folder: Path, kind: str, mib: int, seed: int):
        if kind == "text":
            write_text_files(folder, mib * 4, 256 * 1024, seed=seed)
        else:
            folder.mkdir()
            for number in range(mib // 8):
                write_file(folder / ("r%d.bin" % number), 8 * MiB, seed=seed, file_no=number)

    def run(self, name: str, setting: str, rnd: int):
        link, folder = self.links[name], self.dests[name] / "backups"
        argv = link.netns.prefix + ours_argv("-S", "-q", "--compress", setting, "-f", self.src / ("snaps-" + name),
                                             *link.ssh_opt_args(), self.src / name, link.url(folder))
        syncfs(self.src, self.dests[name])
        Gate.wait("%s %s" % (name, setting))
        before = link.netns.lo_bytes()
        m = timed([argv], env=self.env, label="%s %s" % (name, setting))
        wire = link.netns.lo_bytes() - before
        info = subvol_info(folder / CHANGED)
        if info.get("Received UUID") != self.changed_uuid[name]:
            raise BenchError("%s %s: %s did not arrive complete: %s" % (name, setting, CHANGED, info))
        self.samples[name, setting].append((m.seconds, wire, m.cpu))
        log("  round %d  %-4s %-4s %8s s  link %6.1f MiB  cpu %5.2f s  cpu pressure %3.0f%%" % (
            rnd + 1, name, setting, fmt_s(m.seconds), wire / MiB, m.cpu, m.stall * 100))
        sh("btrfs", "subvolume", "delete", "-c", folder / CHANGED)

    def run_rounds(self):
        for rnd in range(self.args.rounds):
            for name in SCENARIOS:
                order = SETTINGS[rnd % 3:] + SETTINGS[:rnd % 3]
                for setting in order:
                    self.run(name, setting, rnd)

    def report(self):
        a = self.args
        print("# --compress auto on incrementals\n")
        print("%d rounds; base %d MiB, %d MiB added; load at the end %s\n" % (
            a.rounds, a.base_mib, a.change_mib, " ".join("%.2f" % x for x in os.getloadavg())))
        titles = {"fast": "fast link (unshaped loopback), text snapshot, random data added",
                  "slow": "slow link (tbf %s), random snapshot, text added" % a.link_rate}
        for name in SCENARIOS:
            stream, packed = self.notes[name]
            print("## %s\n\nIncremental stream %.1f MiB (zstd -3: %.1f MiB).\n" % (
                titles[name], stream / MiB, packed / MiB))
            print("Ratios are medians of the ratios within each round (the three runs of a round follow "
                  "each other, so the machine's load changes less between them).\n")
            print("| --compress | seconds (median / min) | link MiB | CPU s | / none | / zstd |")
            print("|---|---:|---:|---:|---:|---:|")
            med = {c: statistics.median(s[0] for s in self.samples[name, c]) for c in SETTINGS}
            for c in SETTINGS:
                runs = self.samples[name, c]
                paired = {other: statistics.median(mine[0] / theirs[0] for mine, theirs in
                                                   zip(runs, self.samples[name, other])) for other in ("none", "zstd")}
                print("| %s | %s / %s | %.1f | %.2f | %.2f | %.2f |" % (
                    c, fmt_s(med[c]), fmt_s(min(s[0] for s in runs)),
                    statistics.median(s[1] for s in runs) / MiB, statistics.median(s[2] for s in runs),
                    paired["none"], paired["zstd"]))
            print()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6, help="rounds (default 6: each order twice)")
    p.add_argument("--base-mib", type=int, default=48, help="MiB in the base snapshot (default 48)")
    p.add_argument("--change-mib", type=int, default=48,
                   help="MiB added for the incremental (default 48, a multiple of 8)")
    p.add_argument("--link-rate", default="100mbit", help="the slow link's rate, as tc reads it (default 100mbit)")
    p.add_argument("--no-gate", action="store_true", help="do not wait for a quiet machine before each run")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    Gate.enabled = not args.no_gate
    Gate.max_wait = 10.0
    if cannot_run_here("bench_compress.py", "loop devices, mounts, network namespaces, sshd",
                       ("btrfs", "ip", "tc", "nsenter", "ssh", "/usr/sbin/sshd", "zstd")):
        return 2
    interrupt_on_signals()
    become_subreaper()
    with contextlib.ExitStack() as stack:
        bench = CompressBench(args, stack)
        with children_stopped_on_failure():
            bench.setup()
            bench.run_rounds()
            bench.report()
    return 0


if __name__ == "__main__":
    run_benchmark(main)
