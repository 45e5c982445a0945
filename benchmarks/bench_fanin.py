#!/usr/bin/env python3
"""Fan-in: N source hosts pushing full backups to one backup server at once, through `serve`.

Run as root from the repository:

    .venv/bin/python benchmarks/bench_fanin.py                 # N = 4, 8, 16; 32 MiB per host; 2 rounds
    .venv/bin/python benchmarks/bench_fanin.py --n 4 --mib 16 --rounds 1 --slots 2

Every host has its own key on one sshd (loopback), confined by its own `serve --append-only
--root SERVER/HOST` forced command, and its own source subvolume (half random bytes, half text
that compresses); the sshd includes the role's drop-in (MaxStartups sized for the fleet). For
each N the variants take turns (their order rotated per round), each on the same data:

  ours       N CLI runs started together (`btrfs-backup SOURCE ssh://...`, --compress auto)
  ours-slots the same with `serve --receive-slots K` (K = --slots, 0 to leave it out)
  raw-ssh    N `btrfs send | zstd -3 | ssh ... 'zstd -d | btrfs receive'` at once (a plain key)
  raw        N local `btrfs send | btrfs receive` at once (no ssh, no compression)

Each time ends when every process ended and the server's filesystem is synced. Aggregate MB/s
is the data written by the hosts (N x --mib MiB) over the wall time. CPU is per process, read
from /proc every 0.1 s (utime + stime of every process of the run: the CLIs, ssh, sshd's
session processes, serve, zstd, btrfs send/receive), grouped by program; the btrfs kernel
threads are shared with the rest of the machine and shown apart, with the whole machine's busy
time (from /proc/stat) so that a busy machine is seen. Every run is checked: each host's
backup arrived complete. Everything it sets up (a tmpfs, loop btrfs, an sshd) is removed at the
end; it stops only processes it started.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import cannot_run_here, run_benchmark  # noqa: E402
from support.btrfs_loop import BtrfsPool, run  # noqa: E402
from support.role_sshd import render_sshd_dropin  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.tenant_keys import authorize_hosts, cli_ssh_flags  # noqa: E402
from support.trees import MiB, write_file  # noqa: E402

CLI = REPO / "bin" / "btrfs-backup"
#: Every program of a run from the system's folders, as on a fleet's hosts (no pyenv shims).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TICK = os.sysconf("SC_CLK_TCK")
MB = 1_000_000


def write_text(path: Path, size: int, seed: int) -> None:
    """Log-like lines that compress about 4x with zstd -3."""
    rng = random.Random(seed)
    words = ["backup", "received", "snapshot", "error", "ok", "host", "disk", "user", "session", "GET", "POST"]
    with open(path, "w") as out:
        written = 0
        while written < size:
            line = "%d %s %s %d %s\n" % (rng.randrange(1 << 30), rng.choice(words), rng.choice(words),
                                           rng.randrange(1000), " ".join(rng.choice(words) for _ in range(6)))
            out.write(line)
            written += len(line)


def make_source(path: Path, mib: int, seed: int) -> None:
    run(["btrfs", "subvolume", "create", path])
    write_file(path / "random.bin", mib * MiB // 2, seed=seed)
    write_text(path / "text.log", mib * MiB // 2, seed)


def cli_succeeded(out: str) -> bool:
    """The CLI's --json result is there and names no failed destination."""
    result = json.loads(out) if out.strip() else None
    return bool(result) and not result.get("failed")


# -- CPU per program --------------------------------------------------------------------------
def _stat(pid: str):
    try:
        with open("/proc/%s/stat" % pid) as handle:
            text = handle.read()
        with open("/proc/%s/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, [c.decode(errors="replace") for c in cmdline]


def program(comm: str, cmdline: list) -> str:
    """The group a process's CPU time is counted in."""
    words = " ".join(cmdline)
    if comm == "btrfs" or (comm == "sudo" and "btrfs" in words):
        return "btrfs receive" if " receive" in words else "btrfs send" if " send" in words else "btrfs other"
    if comm == "zstd":
        return "zstd -d" if " -d" in words else "zstd"
    if comm.startswith("sshd"):
        return "sshd"
    if comm == "ssh":
        return "ssh"
    if comm.startswith("python") or comm == "btrfs-backup":
        return "serve" if " serve " in words else "cli"
    if comm in ("sh", "bash", "dash"):
        return "shell"
    return "other"


def tree_seconds(pid: int) -> float:
    """CPU seconds of a process and of every descendant it (and they) reaped: utime, stime, cutime, cstime."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICK


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # not idle, not iowait


class CpuSampler:
    """CPU seconds per program of the processes below `roots` (pids), and of btrfs kernel threads."""

    def __init__(self, roots):
        self.roots = set(roots)
        self.last = {}  # pid -> (group, seconds)
        self.kernel_start, self.kernel_last = {}, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.busy_start = machine_busy()
        self._sample(first=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._sample()
        self.busy = machine_busy() - self.busy_start

    def _loop(self):
        while not self.stop.wait(0.1):
            self._sample()

    def _sample(self, first=False):
        table = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                got = _stat(pid)
                if got:
                    table[int(pid)] = got
        for pid, (comm, ppid, seconds, cmdline) in table.items():
            if ppid == 2 and (comm.startswith("btrfs") or comm.startswith("kworker")):
                (self.kernel_start.setdefault(pid, seconds) if first else None)
                self.kernel_last[pid] = seconds
                continue
            if first:
                continue
            ancestor, hops = pid, 0
            while ancestor in table and ancestor not in self.roots and hops < 20:
                ancestor, hops = table[ancestor][1], hops + 1
            if ancestor in self.roots:
                self.last[pid] = (program(comm, cmdline), seconds)

    def split(self) -> dict:
        groups = collections.Counter()
        for group, seconds in self.last.values():
            groups[group] += seconds
        kernel = sum(v - self.kernel_start.get(pid, 0.0) for pid, v in self.kernel_last.items())
        groups["kernel threads (machine)"] = kernel
        return dict(groups)


# -- one fan-in ---------------------------------------------------------------------------------
class Bench:
    def __init__(self, pool, options):
        self.options = options
        self.pool = pool
        size = "%dM" % (max(options.n) * options.mib * 3 + 1024)
        self.sources_fs = pool.filesystem("sources", size=size)
        self.server_fs = pool.filesystem("server", size="%dM" % (max(options.n) * options.mib * 4 + 1024))
        self.hosts = ["host%02d" % i for i in range(max(options.n))]
        for number, host in enumerate(self.hosts):
            make_source(self.sources_fs / host, options.mib, number)
            run(["btrfs", "subvolume", "snapshot", "-r", self.sources_fs / host, self.sources_fs / ("%s.raw" % host)])
        self.round = 0

    def plain_shell(self):
        """Each key's session with a HOME that has no shell start-up files: sshd runs the commands
        through root's login shell here (bash), and root's ~/.bashrc here starts pyenv, which a
        backup server's receive user (/bin/sh) never pays for."""
        keys = self.sshd.workdir / "authorized_keys"
        lines = keys.read_text().splitlines()
        keys.write_text("".join('environment="HOME=%s",%s\n' % (self.empty_home, line) if line.startswith("restrict")
                                else 'environment="HOME=%s" %s\n' % (self.empty_home, line) for line in lines))

    def fresh_roots(self, hosts):
        """A new folder (subvolume) per host on the server, as the role makes them."""
        self.round += 1
        base = self.server_fs / ("r%03d" % self.round)
        base.mkdir()
        roots = {}
        for host in hosts:
            roots[host] = base / host
            run(["btrfs", "subvolume", "create", roots[host]])
            (roots[host] / "data").mkdir()
        return base, roots

    def clean(self, base, hosts):
        subvols = [str(p) for host in hosts for p in (base / host / "data").iterdir()] if base else []
        subvols += [str(base / host) for host in hosts]
        for host in hosts:
            snapdir = self.sources_fs / host / "snapshot"
            if snapdir.exists():
                subvols += [str(p) for p in snapdir.iterdir() if p.is_dir()]
        if subvols:
            run(["btrfs", "subvolume", "delete"] + subvols)
        for host in hosts:
            lock = self.sources_fs / host / "snapshot" / ".outstanding_transfers"
            if lock.exists():
                lock.unlink()
        run(["btrfs", "subvolume", "sync", self.server_fs])

    def failed_then_clean(self, hosts, base, roots, statuses, succeeded=lambda out: True) -> list:
        """The hosts whose run failed (exit status, or `succeeded` of its output) or whose backup did not
        arrive (one subvolume in its folder), each with its last error line; then the round's subvolumes
        are deleted."""
        failed = []
        for host, (status, out, err) in zip(hosts, statuses):
            arrived = list((roots[host] / "data").iterdir())
            if status != 0 or not succeeded(out) or len(arrived) != 1:
                failed.append("%s: exit %s: %s" % (host, status, (err.strip().splitlines() or [""])[-1]))
        self.clean(base, hosts)
        return failed

    def timed(self, procs_started, hosts, base):
        """Start, sample, wait, sync: (seconds, cpu split, machine busy seconds, statuses)."""
        server_before, sources_before = tree_seconds(self.sshd.pid), children_seconds()
        started = time.monotonic()
        procs = procs_started()
        roots = [p.pid for p in procs] + [self.sshd.pid]
        with CpuSampler(roots) as sampler:
            statuses = []
            for proc in procs:
                out, err = proc.communicate(timeout=900)
                statuses.append((proc.returncode, out, err))
            seconds = time.monotonic() - started
            run(["btrfs", "filesystem", "sync", self.server_fs])
        seconds = time.monotonic() - started
        cpu = sampler.split()
        # Exact totals: every reaped process below sshd (the server side) and below this process.
        cpu["TOTAL server (sshd tree)"] = tree_seconds(self.sshd.pid) - server_before
        cpu["TOTAL sources"] = children_seconds() - sources_before
        return seconds, cpu, sampler.busy, statuses

    def ours(self, hosts, slots):
        base, roots = self.fresh_roots(hosts)
        flags = ["--append-only"]
        if slots:
            flags += ["--receive-slots", str(slots), "--slot-folder", str(self.server_fs / "slots")]
        for host in hosts:  # a new key each time: authorize_hosts makes them
            for key in self.sshd.workdir.glob("id_%s*" % host):
                key.unlink()
        keys = authorize_hosts(self.sshd, CLI, roots, flags)
        self.plain_shell()
        state = tempfile.mkdtemp(prefix="bench-fanin-state-")
        env = dict(os.environ, BTRFS_BACKUP_STATE_DIR=state, PATH=SYSTEM_PATH)

        def start():
            return [subprocess.Popen([str(CLI), "--json"] + cli_ssh_flags(self.sshd, keys[host])
                                     + [str(self.sources_fs / host), self.sshd.url(roots[host] / "data")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True) for host in hosts]
        seconds, cpu, busy, statuses = self.timed(start, hosts, base)
        waited = sum(err.count("waiting for a receive slot") for _status, _out, err in statuses)
        failed = self.failed_then_clean(hosts, base, roots, statuses, cli_succeeded)
        subprocess.run(["rm", "-rf", state])
        return seconds, cpu, busy, failed, waited

    def raw_ssh(self, hosts):
        base, roots = self.fresh_roots(hosts)
        # The server's own client key, unconfined (ours() replaces authorized_keys with the hosts' keys).
        (self.sshd.workdir / "authorized_keys").write_text((self.sshd.workdir / "id_ed25519.pub").read_text())
        self.plain_shell()

        def start():
            procs = []
            for host in hosts:
                remote = "zstd -d -q | btrfs receive -q %s" % shlex.quote(str(roots[host] / "data"))
                pipe = "%s | zstd -3 -q | %s" % (shlex.join(["btrfs", "send", "-q", str(self.sources_fs / ("%s.raw" % host))]),
                                                 shlex.join(self.sshd.ssh_argv(remote)))
                procs.append(subprocess.Popen(["bash", "-o", "pipefail", "-c", pipe], env=dict(os.environ, PATH=SYSTEM_PATH),
                                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
            return procs
        seconds, cpu, busy, statuses = self.timed(start, hosts, base)
        return seconds, cpu, busy, self.failed_then_clean(hosts, base, roots, statuses), 0

    def raw(self, hosts):
        base, roots = self.fresh_roots(hosts)

        def start():
            procs = []
            for host in hosts:
                pipe = "btrfs send -q %s | btrfs receive -q %s" % (self.sources_fs / ("%s.raw" % host),
                                                                   roots[host] / "data")
                procs.append(subprocess.Popen(["sh", "-c", pipe], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            return procs
        seconds, cpu, busy, statuses = self.timed(start, hosts, base)
        return seconds, cpu, busy, self.failed_then_clean(hosts, base, roots, statuses), 0


def fmt_cpu(cpu: dict) -> str:
    totals = ", ".join("%s %.1f" % (k[6:], v) for k, v in sorted(cpu.items()) if k.startswith("TOTAL "))
    shown = sorted(((v, k) for k, v in cpu.items() if v >= 0.05 and not k.startswith("TOTAL ")), reverse=True)
    return "[%s] %s" % (totals, ", ".join("%s %.1f" % (k, v) for v, k in shown))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4, 8, 16], help="numbers of sources at once")
    parser.add_argument("--mib", type=int, default=32, help="data per source host (MiB)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slots", type=int, default=2, help="receive slots of the ours-slots variant (0: leave it out)")
    options = parser.parse_args()
    if cannot_run_here("bench_fanin.py", "loop devices, mount, sshd"):
        return 2
    print("machine: %d cores, load average before: %s; sshd MaxStartups from the role's drop-in for %d sources"
          % (os.cpu_count(), open("/proc/loadavg").read().split()[:3], max(options.n)))
    tmpfs = "%dM" % (max(options.n) * options.mib * 8 + 3072)
    with BtrfsPool(tmpfs_size=tmpfs, prefix="bench-fanin-") as pool:
        bench = Bench(pool, options)
        dropin = Path(tempfile.mkdtemp(prefix="bench-fanin-sshd-")) / "btrfs-backup.conf"
        dropin.write_text(render_sshd_dropin(max(options.n)))
        bench.empty_home = dropin.parent
        with Sshd(host="127.0.0.9", max_startups=None,
                  extra_config=["Include %s" % dropin, "PermitUserEnvironment yes"]) as sshd:
            bench.sshd = sshd
            variants = [("ours", lambda h: bench.ours(h, 0)), ("raw-ssh", bench.raw_ssh), ("raw", bench.raw)]
            if options.slots:
                variants.insert(1, ("ours-slots", lambda h: bench.ours(h, options.slots)))
            results = collections.defaultdict(list)
            dropped = 0
            for n in options.n:
                hosts = bench.hosts[:n]
                for rnd in range(options.rounds):
                    order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
                    for name, fn in order:
                        seconds, cpu, busy, failed, waited = fn(hosts)
                        results[(n, name)].append((seconds, cpu, busy, failed, waited))
                        sshd_log = sshd.log_file.read_text(errors="replace")
                        dropped, before = sshd_log.count("past MaxStartups"), dropped
                        print("  N=%-2d %-10s %6.2f s  %s%s%s  (machine busy %.1f cpu-s)%s" % (
                            n, name, seconds, "ALL OK" if not failed else "%d FAILED" % len(failed),
                            ", %d waited for a slot" % waited if waited else "",
                            ", sshd dropped %d connections" % (dropped - before) if dropped > before else "", busy,
                            "" if not failed else "\n      " + "\n      ".join(failed[:3])), flush=True)
        dropin.unlink()
        dropin.parent.rmdir()
    print("load average after: %s" % open("/proc/loadavg").read().split()[:3])
    print()
    print("Fan-in, %d MiB per host (half random, half text), median of %d round(s); MB/s = N x data / wall"
          % (options.mib, options.rounds))
    names = [name for name, _fn in variants]
    print("%-3s %-10s %8s %8s %9s %10s %9s  %s" % ("N", "variant", "wall s", "min s", "agg MB/s", "time/raw",
                                                  "/raw-ssh", "CPU seconds by program (median run)"))
    for n in options.n:
        raw_wall = statistics.median(r[0] for r in results[(n, "raw")])
        ssh_wall = statistics.median(r[0] for r in results[(n, "raw-ssh")])
        for name in names:
            runs = results[(n, name)]
            wall = statistics.median(r[0] for r in runs)
            middle = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]
            ok = all(not r[3] for r in runs)
            print("%-3d %-10s %8.2f %8.2f %9.1f %10.2f %9.2f  %s; machine %.1f%s" % (
                n, name, wall, min(r[0] for r in runs), n * options.mib * MiB / MB / wall, wall / raw_wall,
                wall / ssh_wall, fmt_cpu(middle[1]), middle[2], "" if ok else "  (FAILURES)"))
    return 0


if __name__ == "__main__":
    run_benchmark(main)
