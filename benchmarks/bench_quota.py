#!/usr/bin/env python3
"""What a per-host quota costs a transfer on the backup server.

The same full and incremental streams are received by `btrfs-backup serve` three ways: into a
filesystem without quotas; into one with btrfs quotas enabled (the kernel's accounting alone);
and with `serve --quota` there (the host's level-1 qgroup, the usage check, the capped copy
through serve, the assignment of the new backup). Filesystems are loop-backed on a private
tmpfs; the order rotates each round, and medians are reported with their ratio to no quota.

    python3 benchmarks/bench_quota.py [--rounds 5] [--mib 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.btrfs_loop import BtrfsPool, run  # noqa: E402
from support.trees import MiB, write_mixed_tree  # noqa: E402

CLI = REPO / "bin" / "btrfs-backup"


def subvolume_id(path: Path) -> int:
    out = run(["btrfs", "subvolume", "show", path], env=dict(os.environ, LC_ALL="C")).stdout
    return int(next(line for line in out.splitlines() if "Subvolume ID:" in line).split(":")[1])


def host_folder(fs: Path, name: str, quota: bool) -> Path:
    folder = fs / name
    run(["btrfs", "subvolume", "create", folder])
    if quota:
        qgroup = "1/%d" % subvolume_id(folder)
        run(["btrfs", "qgroup", "create", qgroup, fs])
        run(["btrfs", "qgroup", "assign", "0/%d" % subvolume_id(folder), qgroup, fs])
    (folder / "data").mkdir()
    return folder


VARIANTS = (("no quotas", False, False), ("quotas enabled", True, False), ("serve --quota", True, True))


def receive(stream: Path, folder: Path, quota: bool) -> float:
    """Seconds for serve to receive `stream` into folder/data, until the data is on disk."""
    argv = [sys.executable, str(CLI), "serve", "--root", str(folder)] + (["--quota", "1T"] if quota else [])
    env = dict(os.environ, SSH_ORIGINAL_COMMAND="btrfs receive %s" % (folder / "data"))
    started = time.monotonic()
    with open(stream, "rb") as handle:
        subprocess.run(argv, stdin=handle, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run(["btrfs", "filesystem", "sync", folder])
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=512, help="size of the full stream's data")
    options = parser.parse_args()
    size = "%dM" % (options.mib * 3 + 512)
    with BtrfsPool(tmpfs_size="%dM" % (options.mib * 12 + 2048), prefix="bench-quota-") as pool:
        source_fs = pool.filesystem("src", size=size)
        source = source_fs / "data"
        run(["btrfs", "subvolume", "create", source])
        write_mixed_tree(source, n_small=2000, small_size=8192,
                         large_files=[options.mib * MiB // 4] * 4, seed=1)
        run(["btrfs", "subvolume", "snapshot", "-r", source, source_fs / "one"])
        write_mixed_tree(source / "more", n_small=500, small_size=8192, large_files=[32 * MiB], seed=2)
        run(["btrfs", "subvolume", "snapshot", "-r", source, source_fs / "two"])
        full, incremental = source_fs / "full.stream", source_fs / "incr.stream"
        with open(full, "wb") as out:
            subprocess.run(["btrfs", "send", "-q", source_fs / "one"], stdout=out, check=True)
        with open(incremental, "wb") as out:
            subprocess.run(["btrfs", "send", "-q", "-p", source_fs / "one", source_fs / "two"],
                           stdout=out, check=True)
        times = {(kind, name): [] for kind in ("full", "incremental") for name, _q, _c in VARIANTS}
        for round_number in range(options.rounds):
            order = VARIANTS[round_number % 3:] + VARIANTS[:round_number % 3]
            for name, quotas, cap in order:
                fs = pool.filesystem("dst-%d-%d%d" % (round_number, quotas, cap), size=size)
                if quotas:
                    run(["btrfs", "quota", "enable", fs])
                folder = host_folder(fs, "web1", quotas)
                times[("full", name)].append(receive(full, folder, cap))
                times[("incremental", name)].append(receive(incremental, folder, cap))
                pool.release(fs)
        print("stream sizes: full %.0f MiB, incremental %.0f MiB; %d rounds, medians in seconds"
              % (full.stat().st_size / MiB, incremental.stat().st_size / MiB, options.rounds))
        print("| receive | " + " | ".join(name for name, _q, _c in VARIANTS) + " | ratios to no quotas |")
        print("|---|---:|---:|---:|---:|")
        for kind in ("full", "incremental"):
            medians = [statistics.median(times[(kind, name)]) for name, _q, _c in VARIANTS]
            print("| %s | %s | %s |" % (kind, " | ".join("%.3f" % m for m in medians),
                                        " / ".join("%.2f" % (m / medians[0]) for m in medians[1:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
