#!/usr/bin/env python3
"""Benchmark archive destinations (borg, restic): our run against the raw pipe, storage and time per
run over daily changes for each full/incremental policy, and restore time of the newest snapshot.

Run as root from the repository (borg and restic installed):

    .venv/bin/python benchmarks/bench_archive.py             # ~200 MB source, 3 pairs, 10 days
    .venv/bin/python benchmarks/bench_archive.py --quick     # ~60 MB, 2 pairs, 4 days

1. Throughput: the same read-only snapshot stored in a fresh repository by the raw pipe
   (`btrfs send | borg create ... -` resp. `| restic backup --stdin`) and by
   `btrfs-backup -S` (our whole run: listing, the guarded stream, the check of what arrived), in
   alternating order (raw first in even pairs), so that the shared machine's noise cancels; then
   the same into repositories that hold the job's last archive (a daily run's case: our run plans
   on what its last run left), a later snapshot as a full stream.
2. Daily changes: for each policy (archive_full_every 1 = every archive full, 7 = the default, 1000
   = incremental only) the same base tree and the same deterministic daily change (new and
   rewritten files), one run per day; the repository's size and each run's time are recorded.
3. Restore: the newest snapshot of each policy restored with `btrfs-backup restore` (a chain of up
   to N archives replayed), checked equal to the snapshot.

It prints a Markdown report on stdout (figures, never pass/fail) and its progress on stderr.
Everything it makes (a tmpfs, loop-mounted btrfs images, repositories) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.btrfs_loop import BtrfsPool, run  # noqa: E402
from support.trees import MiB, assert_same_tree, write_mixed_tree  # noqa: E402

CLI = REPO / "bin" / "btrfs-backup"
PASSPHRASE = "bench-passphrase-not-secret"
_T0 = time.monotonic()


def log(message: str) -> None:
    print("[%6.1fs] %s" % (time.monotonic() - _T0, message), file=sys.stderr, flush=True)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


class Stores:
    """Fresh repositories in a scratch folder, and the environment their tools read the key from."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key = folder / "key"
        self.key.write_text(PASSPHRASE + "\n")
        self.key.chmod(0o600)
        self.env = dict(os.environ, BORG_PASSCOMMAND=f"cat {self.key}", RESTIC_PASSWORD_FILE=str(self.key),
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        self.count = 0

    def fresh(self, tool: str) -> Path:
        self.count += 1
        path = self.folder / f"{tool}-{self.count}"
        argv = ["borg", "init", "--encryption", "repokey", str(path)] if tool == "borg" else \
            ["restic", "init", "--repo", str(path)]
        subprocess.run(argv, env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return path

    def remove(self, path: Path) -> None:
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)


def children_cpu() -> float:
    """CPU seconds (user + system) of every process this one has waited for, and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raw_store(tool: str, snapshot: Path, repo: Path, env: dict) -> float:
    """The raw pipe into a repository (an archive named after the snapshot): seconds."""
    send = ["btrfs", "send", "-q", str(snapshot)]
    if tool == "borg":
        store = ["borg", "create", "--stdin-name", "s.btrfs", f"{repo}::{snapshot.name}", "-"]
    else:
        store = ["restic", "backup", "--quiet", "--repo", str(repo), "--stdin", "--stdin-filename", "s.btrfs"]
    begun = time.monotonic()
    sender = subprocess.Popen(send, stdout=subprocess.PIPE)
    receiver = subprocess.Popen(store, stdin=sender.stdout, env=env)
    sender.stdout.close()
    codes = receiver.wait(), sender.wait()
    seconds = time.monotonic() - begun
    if any(codes):
        raise RuntimeError(f"raw {tool} pipe failed: {codes}")
    return seconds


# The launcher runs `python3` from PATH: here the interpreter of this benchmark, as on a host where
# python3 is the distribution's (a version manager's shim in front of it costs ~60 ms per start).
OURS_ENV = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def ours(tool: str, source: Path, repo: Path, key: Path, *extra) -> float:
    """One `btrfs-backup` run to the repository: seconds (it must succeed)."""
    argv = [str(CLI), "-q", "--archive-key-file", str(key), *extra, str(source), f"{tool}:{repo}"]
    begun = time.monotonic()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=OURS_ENV)
    seconds = time.monotonic() - begun
    if done.returncode != 0:
        raise RuntimeError(f"btrfs-backup failed: {done.stderr}")
    return seconds


def throughput(pool_fs: Path, stores: Stores, source: Path, tools, pairs: int, next_snapshot: Path | None = None) -> dict:
    """Raw pipe vs our run, alternating, on one snapshot already in the job's snapshot folder. With
    `next_snapshot` (a later snapshot kept outside that folder): each repository first holds the
    snapshot's archive (stored untimed, by the raw pipe resp. our run), and the timed store is of a
    read-only snapshot of `next_snapshot` in the job's folder, as a full stream: a daily run's case,
    where the job's last run left the repository."""
    snapshot = sorted(p for p in (source / "snapshot").iterdir() if not p.name.startswith("."))[0]
    figures = {tool: {"raw": [], "ours": [], "raw_cpu": [], "ours_cpu": []} for tool in tools}
    for index in range(pairs):
        for tool in tools:
            order = ("raw", "ours") if index % 2 == 0 else ("ours", "raw")
            for which in order:
                repo = stores.fresh(tool)
                timed = snapshot
                if next_snapshot is not None:
                    if which == "raw":
                        raw_store(tool, snapshot, repo, stores.env)
                    else:
                        ours(tool, source, repo, stores.key, "-S")
                    timed = source / "snapshot" / next_snapshot.name
                    run(["btrfs", "subvolume", "snapshot", "-r", str(next_snapshot), str(timed)])
                cpu = children_cpu()
                try:
                    if which == "raw":
                        seconds = raw_store(tool, timed, repo, stores.env)
                    else:
                        seconds = ours(tool, source, repo, stores.key, "-S", "--archive-full-every", "1")
                finally:
                    if next_snapshot is not None:
                        run(["btrfs", "subvolume", "delete", str(timed)])
                cpu = children_cpu() - cpu
                figures[tool][which].append(seconds)
                figures[tool][which + "_cpu"].append(cpu)
                log(f"pair {index + 1} {tool} {which}: {seconds:.2f}s, {cpu:.2f} CPU s (load {load()})")
                stores.remove(repo)
    return figures


def daily_change(subvolume: Path, day: int, mib: int) -> None:
    """The same change for every policy: new random data, and a rewritten share of the small files."""
    import random
    rng = random.Random(day)
    (subvolume / "daily").mkdir(exist_ok=True)
    (subvolume / "daily" / f"day-{day:02d}.bin").write_bytes(rng.randbytes(mib * MiB))
    small = sorted((subvolume / "small").rglob("*"))
    for path in rng.sample([p for p in small if p.is_file()], k=max(1, len(small) // 20)):
        path.write_bytes(rng.randbytes(path.stat().st_size))


def policies(fs: Path, restore_fs: Path, stores: Stores, base: Path, tools, policy_list, days: int, mib: int):
    """Per tool and policy: the repository size and run time each day, then the newest snapshot's restore."""
    rows = []
    for tool in tools:
        for full_every in policy_list:
            work = fs / f"{tool}-{full_every}"
            run(["btrfs", "subvolume", "snapshot", str(base), str(work)])
            repo = stores.fresh(tool)
            sizes, times = [], []
            for day in range(days):
                if day:
                    daily_change(work, day, mib)
                times.append(ours(tool, work, repo, stores.key, "--archive-full-every", str(full_every)))
                sizes.append(du(repo))
            newest = sorted((work / "snapshot").iterdir())[-1]
            target = restore_fs / f"{tool}-{full_every}"
            begun = time.monotonic()
            done = subprocess.run([str(CLI), "restore", "-q", "--archive-key-file", str(stores.key),
                                   f"{tool}:{repo}", str(target)], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True)
            restore_seconds = time.monotonic() - begun
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            assert_same_tree(newest, target)
            chain = 1 + (days - 1) % full_every if full_every < days else days
            rows.append(dict(tool=tool, full_every=full_every, sizes=sizes, times=times,
                             restore=restore_seconds, chain=chain))
            log(f"{tool} full_every={full_every}: {sizes[-1] / MiB:.1f} MiB after {days} days, "
                f"restore {restore_seconds:.2f}s ({chain} archives)")
            run(["btrfs", "subvolume", "delete", str(target)])
            stores.remove(repo)
    return rows


def ratio_table(figures) -> None:
    print("| store | measure | raw median | ours median | ratio (median of pairs) | ratios | ours - raw (median) |")
    print("|---|---|---|---|---|---|---|")
    for tool, found in figures.items():
        for measure, key in (("wall s", ""), ("CPU s", "_cpu")):
            raw, ours_ = found["raw" + key], found["ours" + key]
            ratios = [o / r for o, r in zip(ours_, raw)]
            extra = [o - r for o, r in zip(ours_, raw)]
            print(f"| {tool} | {measure} | {statistics.median(raw):.2f} | {statistics.median(ours_):.2f} | "
                  f"{statistics.median(ratios):.3f} | {', '.join('%.2f' % r for r in ratios)} | "
                  f"{statistics.median(extra):+.2f} |")


def report(args, tree_bytes, figures, steady, rows, loads):
    print("# Archive destinations benchmark\n")
    print(f"Source: {tree_bytes / MiB:.0f} MiB mixed tree; {args.pairs} alternating pairs; "
          f"{args.days} days of {args.change_mib} MiB new data plus 5 % of the small files rewritten.")
    print(f"Load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]} (2 CPUs, shared).\n")
    print("## Our run against the raw pipe (fresh repository, full stream)\n")
    print("Wall time suffers from the other work on the machine; CPU time (user + system of every "
          "process of the run) does much less.\n")
    ratio_table(figures)
    if steady:
        print("\n## Our run against the raw pipe (the repository holds the job's last archive, full stream)\n")
        print("Each repository first gets the source's first snapshot (untimed; our run records what it "
              "left), then the timed store is of a later snapshot as a full stream (`--archive-full-every 1`).\n")
        ratio_table(steady)
    if not rows:
        return
    print("\n## Storage and time per run over daily changes, restore of the newest snapshot\n")
    print("| store | archive_full_every | repository after day 1 | after last day | added per day (mean) "
          "| run s (median) | restore s | archives replayed |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        per_day = (row["sizes"][-1] - row["sizes"][0]) / max(1, len(row["sizes"]) - 1)
        print(f"| {row['tool']} | {row['full_every']} | {row['sizes'][0] / MiB:.1f} MiB | "
              f"{row['sizes'][-1] / MiB:.1f} MiB | {per_day / MiB:.1f} MiB | "
              f"{statistics.median(row['times'][1:] or row['times']):.2f} | {row['restore']:.2f} | {row['chain']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small source, 2 pairs, 4 days")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--change-mib", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=160, help="the source's large files, in MiB")
    parser.add_argument("--tools", default="borg,restic")
    parser.add_argument("--policies", default="1,7,1000", help="archive_full_every values; '' for none")
    parser.add_argument("--no-fresh", dest="fresh", action="store_false",
                        help="skip the throughput into fresh repositories")
    parser.add_argument("--no-steady", dest="steady", action="store_false",
                        help="skip the throughput into repositories that hold the job's last archive")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.days, args.large_mib = 2, 4, 40
    tools = args.tools.split(",")
    policy_list = [int(p) for p in args.policies.split(",") if p]
    loads = [load()]
    with BtrfsPool(tmpfs_size="6G") as pool:
        fs = pool.filesystem("src", size="3G")
        restore_fs = pool.filesystem("restore", size="1G")
        scratch = Path(pool.filesystem("scratch", size="1500M"))
        stores = Stores(scratch)
        base = pool.subvolume(fs / "base")
        write_mixed_tree(base, n_small=2000, small_size=8192, large_files=[args.large_mib * MiB // 4] * 4, seed=7)
        tree_bytes = du(base)
        log(f"source written: {tree_bytes / MiB:.0f} MiB")
        bench_source = fs / "bench"
        run(["btrfs", "subvolume", "snapshot", str(base), str(bench_source)])
        (bench_source / "snapshot").mkdir()
        run(["btrfs", "subvolume", "snapshot", "-r", str(bench_source),
             str(bench_source / "snapshot" / "20240101-000000")])
        figures = throughput(fs, stores, bench_source, tools, args.pairs) if args.fresh else {}
        steady = {}
        if args.steady:
            held = fs / "held"
            held.mkdir()
            (bench_source / "added.bin").write_bytes(os.urandom(args.change_mib * MiB))
            run(["btrfs", "subvolume", "snapshot", "-r", str(bench_source), str(held / "20240102-000000")])
            steady = throughput(fs, stores, bench_source, tools, args.pairs, next_snapshot=held / "20240102-000000")
        rows = policies(fs, restore_fs, stores, base, tools, policy_list, args.days, args.change_mib)
        loads.append(load())
    report(args, tree_bytes, figures, steady, rows, loads)


if __name__ == "__main__":
    main()
