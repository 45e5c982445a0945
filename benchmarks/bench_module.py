#!/usr/bin/env python3
"""Benchmark the ad hoc module: `ansible localhost -m btrfs.backup.btrfs_send_backup` with nothing
to do, next to `ansible localhost -m ping` in the same run.

Run as root from the repository, after ./scripts/install-deps.sh:

    .venv/bin/python benchmarks/bench_module.py             # 15 rounds, 20 snapshot/backup pairs
    .venv/bin/python benchmarks/bench_module.py --rounds 5

It makes two loop-backed btrfs filesystems on a private tmpfs. It backs a small subvolume up
--pairs times and copies the collection to a temp dir. Then it runs the two ad hoc commands
alternately, each after a wait for a quiet machine (CPU pressure, as in bench_send.py). Every
module run is checked: it succeeded, it reported no change, and it sent nothing. The report gives
the median and minimum of each command and their ratio; it prints figures, never pass/fail.
Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_send import Gate, cannot_run_here, log  # noqa: E402
from support.btrfs_loop import BtrfsPool  # noqa: E402
from support.trees import write_mixed_tree  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLI = REPO / "bin" / "btrfs-backup"
# What a Debian target runs modules with: the system Python, no venv.
TARGET_PYTHON = "/usr/bin/python3"


def ansible_env(collections: Path, home: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        # The integration tests' callback: every task's result as one JSON document on stdout.
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "tests" / "integration" / "callback_plugins"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "task_results",
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
    })
    return env


def timed(name, argv, env, cwd):
    Gate.wait(name)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("%s failed (exit %d):\n%s\n%s" % (" ".join(argv), proc.returncode,
                                                            proc.stdout[-3000:], proc.stderr[-3000:]))
    return seconds, proc.stdout


def module_result(stdout: str) -> dict:
    """The localhost result of the ad hoc run, from the task_results callback."""
    return json.loads(stdout)["results"][-1]["result"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--pairs", type=int, default=20, help="snapshot/backup pairs present (default 20)")
    parser.add_argument("--no-gate", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args()
    Gate.enabled = not args.no_gate
    if cannot_run_here("bench_module.py", "loop devices, mount"):
        return 2
    with BtrfsPool(tmpfs_size="1200M", prefix="bench-module-") as pool, \
            tempfile.TemporaryDirectory(prefix="bench-module-") as tmp:
        tmp = Path(tmp)
        src, dst = pool.filesystem("src", "512M"), pool.filesystem("dst", "512M")
        data = pool.subvolume(src / "data")
        write_mixed_tree(data, n_small=50, small_size=2048, specials=False, seed=5)
        backups = dst / "backups"
        for i in range(args.pairs):
            if i:
                time.sleep(1.01)  # one snapshot name per second
            subprocess.run([sys.executable, CLI, "-q", data, backups], check=True)
        subprocess.run([str(REPO / "scripts" / "copy-collection.sh"), str(tmp / "collections")], check=True,
                       stdout=subprocess.DEVNULL)
        (tmp / "home").mkdir()
        (tmp / "inventory").write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                                       % TARGET_PYTHON)
        env = ansible_env(tmp / "collections", tmp / "home")
        ansible = [str(VENV_BIN / "ansible"), "-i", str(tmp / "inventory"), "localhost"]
        commands = {
            "btrfs_send_backup, nothing to do": ansible + [
                "-m", "btrfs.backup.btrfs_send_backup", "-a",
                json.dumps({"source": str(data), "dest": [str(backups)], "snapshot": False})],
            "ping": ansible + ["-m", "ping"],
        }
        # Warm-up: bytecode caches, Ansible's first-run set-up; also checks the module's answer.
        for name, argv in commands.items():
            _, out = timed(name, argv, env, tmp)
            if name != "ping":
                result = module_result(out)
                if result.get("changed") or result.get("failed") or result.get("transfers"):
                    raise SystemExit("the module did something with nothing to do: %s" % json.dumps(result)[:2000])
        samples = {name: [] for name in commands}
        for rnd in range(args.rounds):
            order = list(commands) if rnd % 2 == 0 else list(reversed(commands))
            for name in order:
                seconds, out = timed(name, commands[name], env, tmp)
                if name != "ping" and module_result(out).get("changed"):
                    raise SystemExit("round %d: the module reported a change" % (rnd + 1))
                samples[name].append(seconds)
                log("round %d  %-34s %.3f s" % (rnd + 1, name, seconds))
        ansible_version = subprocess.run([str(VENV_BIN / "ansible"), "--version"], stdout=subprocess.PIPE,
                                         text=True, env=env).stdout.splitlines()[0]
    print("## Ad hoc module run against localhost")
    print()
    print("- %s; modules run with %s; %d pairs present; %d rounds, alternating, each run after the quiet gate"
          % (ansible_version, TARGET_PYTHON, args.pairs, args.rounds))
    print("- load average at the end: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    print()
    print("| command | median s | min s |")
    print("|---|---:|---:|")
    shown = {"btrfs_send_backup, nothing to do": "`ansible localhost -m btrfs.backup.btrfs_send_backup` (nothing to do)",
             "ping": "`ansible localhost -m ping`"}
    for name, values in samples.items():
        print("| %s | %.3f | %.3f |" % (shown[name], statistics.median(values), min(values)))
    ratio = statistics.median(samples["btrfs_send_backup, nothing to do"]) / statistics.median(samples["ping"])
    print()
    print("btrfs_send_backup / ping (medians): %.2f" % ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
