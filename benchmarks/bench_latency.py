#!/usr/bin/env python3
"""Backups to a far-away server: a link shaped to 200 Mbit/s with a 50 ms round trip.

This kernel has no `netem`, so the latency comes from a small TCP proxy on the loopback of a network
namespace of our own: it holds each direction's bytes for 25 ms before passing them on, in front
of a private sshd; the hop from the proxy to the sshd is shaped to 200 Mbit/s (htb, only that
port). Every tool runs in the namespace and reaches the sshd through the proxy, each with its own
ssh connections, so each handshake and each remote command pays the round trips a real WAN would.

Scenarios, each in paired rounds (the order of the tools alternates from round to round):

  full         one snapshot sent in full: ours (`--compress auto`) against the raw pipe
               `btrfs subvolume snapshot -r` + `btrfs send | zstd -3 -T0 | ssh 'zstd -d | btrfs receive'`
  incremental  --change-mib MiB changed (default 10, an hourly run), then ours' run (snapshot,
               incremental send, verification, lock file) against the raw snapshot + `send -p` pipe
  nothing      a run with nothing to send (-S): ours against btrfs-backup 0.3.1, on the same
               snapshot folder and backups; with --baseline, also another checkout's engine
  pull         --change-mib MiB changed, then an incremental pull from the far source (`ssh://` as
               the source, the backups here): ours against the raw `ssh 'btrfs subvolume snapshot -r
               && btrfs send -p | zstd' | zstd -d | btrfs receive`; with --baseline, also another
               checkout's bin/btrfs-backup (the engine before a change), in the same rotation
  relay        with --relay, the pulls' backups go back to the far host (`ssh://` to `ssh://`, the
               stream crossing the link twice): ours against the raw `ssh 'snapshot && send -p |
               zstd' | ssh 'zstd -d | btrfs receive'`; with --baseline, also the other checkout

A forced command on the server's key logs every remote command before running it, so the report
gives the remote commands per run next to the times. It prints figures and never says pass or fail.

Run as root from the repository: `.venv/bin/python benchmarks/bench_latency.py [--quick]`. Everything
it makes (a tmpfs with loop-mounted btrfs images, a network namespace, an sshd, the proxy) is
removed at the end, also after a failure or Ctrl-C; it stops only the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shlex
import shutil
import socket
import statistics
import subprocess
import sysconfig
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import (  # noqa: E402
    KEEP_PIDS, OLD_SCRIPT, BenchError, Gate, become_subreaper, delete_subvolumes, engine_fingerprint, env_of_031,
    OURS_SCRIPT, children_stopped_on_failure, interrupt_on_signals, log, ours_argv, ours_env, sh, subvol_info,
    run_benchmark, subvolumes_in, syncfs, timed)
from bench_streams import Netns, StreamBench  # noqa: E402
from support.btrfs_loop import BtrfsPool  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.trees import MiB, modify_tree, write_file  # noqa: E402

SSHD_PORT = 2222
PROXY_PORT = 2200
CHUNK = 256 << 10


# -- the proxy: run as `bench_latency.py --proxy LISTEN_PORT TARGET_PORT DELAY` inside the namespace --


def _pass_on(source: socket.socket, target: socket.socket, delay: float) -> None:
    """Bytes from `source` reach `target` `delay` seconds after they arrived (one direction)."""
    held: queue.Queue = queue.Queue(maxsize=256)  # bounded: the sender still feels the link's pace

    def read():
        while True:
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            held.put((time.monotonic() + delay, data))
            if not data:
                return

    threading.Thread(target=read, daemon=True).start()
    while True:
        due, data = held.get()
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            if not data:
                target.shutdown(socket.SHUT_WR)
                return
            target.sendall(data)
        except OSError:
            return


def proxy_main(listen_port: int, target_port: int, delay: float) -> None:
    server = socket.create_server(("127.0.0.1", listen_port))
    while True:
        client, _address = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pass_on, args=(source, target, delay), daemon=True).start()


# -- the benchmark -----------------------------------------------------------------------------------


class LatencyBench:
    def __init__(self, args, stack: contextlib.ExitStack):
        self.args, self.stack = args, stack
        self.samples: Dict[str, Dict[str, List[float]]] = {}
        self.commands: Dict[str, Dict[str, List[int]]] = {}

    # setup

    def setup(self):
        a = self.args
        mib = a.data_mib
        # The destination holds the pushes' chains and then a full chain per pulling tool (ours, raw, a baseline).
        self.pool = self.stack.enter_context(BtrfsPool(tmpfs_size="%dM" % (mib * 9 + 1536), prefix="bench-latency-"))
        self.src = self.pool.filesystem("src", "%dM" % (mib * 2 + 512))
        self.dst = self.pool.filesystem("dst", "%dM" % (mib * 6 + 512))
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-latency-cfg-")))
        self.netns = self.stack.enter_context(Netns("bench-latency-%d" % os.getpid()))
        self._shape()
        (self.tmp / "remote-home").mkdir()
        self.sshd = self.stack.enter_context(Sshd(
            host="127.0.0.1", port=SSHD_PORT, run_prefix=self.netns.prefix,
            extra_config=["SetEnv HOME=%s" % (self.tmp / "remote-home")]))
        KEEP_PIDS.add(self.sshd.pid)
        self._log_remote_commands()
        self._start_proxy()
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        self.env = ours_env(self.env)
        # The interpreter a managed host runs ours with (the launcher's `python3`), and 0.3.1 too.
        python_bin = self.tmp / "python-bin"
        python_bin.mkdir()
        (python_bin / "python3").symlink_to(self.args.python)
        self.env["PATH"] = "%s:%s" % (python_bin, self.env["PATH"])
        self.python_version = subprocess.run([self.args.python, "-c", "import sys; print(sys.version.split()[0])"],
                                             stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        self.env_031 = env_of_031(dict(self.env, PYTHONPATH=sysconfig.get_paths()["purelib"]), self.tmp)  # its package
        self.env["BTRFS_BACKUP_STATE_DIR"] = str(self.tmp / "job-state")  # not the machine's
        self.fingerprint = engine_fingerprint()
        self._make_data()

    def _shape(self):
        """Only the hop from the proxy to the sshd (its port, both ways) is shaped: the rest of the
        namespace's loopback (a tool to the proxy) is not, so the stream crosses the rate once."""
        ns, rate = self.netns.name, self.args.link_rate
        sh("tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
        sh("tc", "-n", ns, "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "40gbit")
        sh("tc", "-n", ns, "class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", rate,
           "ceil", rate, "burst", "256kb")
        for direction in ("sport", "dport"):
            sh("tc", "-n", ns, "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
               "match", "ip", direction, str(SSHD_PORT), "0xffff", "flowid", "1:20")

    def _log_remote_commands(self):
        """The key's forced command writes each remote command to a log, then runs it."""
        self.command_log = self.tmp / "remote-commands.log"
        script = self.sshd.workdir / "log-and-run"
        log_file = shlex.quote(str(self.command_log))
        # One write per command: commands that start at once (a survey beside a receive) never mix.
        script.write_text("#!/bin/sh\nline=$(printf '%%s' \"$SSH_ORIGINAL_COMMAND\" | tr '\\n' ' ')\n"
                          "printf '%%s\\n' \"$line\" >> %s\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n" % log_file)
        script.chmod(0o755)
        key = (self.sshd.workdir / "id_ed25519.pub").read_text().strip()
        (self.sshd.workdir / "authorized_keys").write_text('command="%s" %s\n' % (script, key))

    def _start_proxy(self):
        argv = self.netns.prefix + [sys.executable, __file__, "--proxy", str(PROXY_PORT), str(SSHD_PORT),
                                    str(self.args.delay_ms / 1000)]
        self.proxy = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        KEEP_PIDS.add(self.proxy.pid)
        self.stack.callback(self._stop_proxy)
        known = self.tmp / "known_hosts"
        host_key = (self.sshd.workdir / "ssh_host_ed25519_key.pub").read_text().split()
        known.write_text("[127.0.0.1]:%d %s %s\n" % (PROXY_PORT, host_key[0], host_key[1]))
        self.ssh_options = ["IdentityFile=%s" % self.sshd.identity_file, "UserKnownHostsFile=%s" % known,
                            "StrictHostKeyChecking=yes", "BatchMode=yes", "IdentitiesOnly=yes", "ConnectTimeout=10"]
        deadline = time.monotonic() + 10
        while subprocess.run(self._ssh("true"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            if time.monotonic() > deadline or self.proxy.poll() is not None:
                raise BenchError("the proxy in front of the sshd did not come up")
            time.sleep(0.2)

    def _stop_proxy(self):
        if self.proxy.poll() is None:
            self.proxy.terminate()
            self.proxy.wait(timeout=5)

    def _ssh(self, remote_command: str) -> List[str]:
        argv = self.netns.prefix + ["ssh", "-F", "none"]
        for option in self.ssh_options:
            argv += ["-o", option]
        return argv + ["-p", str(PROXY_PORT), "root@127.0.0.1", remote_command]

    def _url(self, folder: Path) -> str:
        return "ssh://root@127.0.0.1:%d%s" % (PROXY_PORT, folder)

    def _ours(self, *args) -> List[str]:
        flags = [x for o in self.ssh_options for x in ("--ssh-opt", o)]
        return self.netns.prefix + self._traced() + ours_argv("-q", *flags, *args)

    def _traced(self) -> List[str]:
        """With --strace DIR: strace's words before ours' command (one file per run, DIR/ours-N.trace)."""
        if not self.args.strace:
            return []
        self.traces = getattr(self, "traces", 0) + 1
        Path(self.args.strace).mkdir(parents=True, exist_ok=True)
        return ["strace", "-f", "--seccomp-bpf", "-ttt", "-s", "300", "-e", "trace=execve,connect,wait4,exit_group",
                "-o", str(Path(self.args.strace) / ("ours-%d.trace" % self.traces))]

    def _make_data(self):
        t0 = time.perf_counter()
        self.data = self.pool.subvolume(self.src / "data")
        files, real = StreamBench._copy_real_files(self.data / "files", int(self.args.data_mib * 0.9) * MiB)
        (self.data / "random").mkdir()
        for i in range(4):
            write_file(self.data / "random" / ("part%d" % i), self.args.data_mib * MiB // 40, seed=7, file_no=i)
        syncfs(self.src)
        stream = int(sh("sh", "-c", "btrfs subvolume snapshot -r %s %s >/dev/null && btrfs send -q %s | wc -c" % (
            self.data, self.src / "probe", self.src / "probe")).strip())
        compressed = int(sh("sh", "-c", "btrfs send -q %s | zstd -3 -T0 -q | wc -c" % (self.src / "probe")).strip())
        sh("btrfs", "subvolume", "delete", "-c", self.src / "probe")
        self.stream_mib, self.zstd_mib = stream / MiB, compressed / MiB
        log("data: %d real files (%.0f MiB) + %d MiB random; stream %.1f MiB, zstd -3 %.1f MiB; %.1fs" % (
            files, real / MiB, self.args.data_mib // 10, self.stream_mib, self.zstd_mib, time.perf_counter() - t0))

    # measuring

    def _measure(self, scenario: str, tool: str, stages, env=None) -> float:
        before = self._remote_commands()
        m = timed(stages, env=env or self.env, label="%s %s" % (scenario, tool), gate=True)
        self.samples.setdefault(scenario, {}).setdefault(tool, []).append(m.seconds)
        self.commands.setdefault(scenario, {}).setdefault(tool, []).append(self._remote_commands() - before)
        log("  %-11s %-6s %.3fs (%d remote commands, CPU pressure %.0f%%)" % (
            scenario, tool, m.seconds, self.commands[scenario][tool][-1], m.stall * 100))
        return m.seconds

    def _remote_commands(self) -> int:
        return len(self.command_log.read_text().splitlines()) if self.command_log.exists() else 0

    def _raw_pipe(self, snapshot: Path, parent: Path | None, folder: Path) -> List[List[str]]:
        send = ["btrfs", "send", "-q"] + (["-p", str(parent)] if parent else []) + [str(snapshot)]
        return [send, ["zstd", "-3", "-T0", "-q"],
                self._ssh("zstd -d -q | btrfs receive %s" % shlex.quote(str(folder)))]

    def _raw(self, scenario: str, snap_dir: Path, folder: Path, parent: Path | None, name: str) -> Path:
        snapshot = snap_dir / name
        Gate.wait("%s raw" % scenario)
        t0 = time.perf_counter()
        before = self._remote_commands()
        sh("btrfs", "subvolume", "snapshot", "-r", self.data, snapshot)
        timed(self._raw_pipe(snapshot, parent, folder), label="%s raw" % scenario)
        seconds = time.perf_counter() - t0
        self.samples.setdefault(scenario, {}).setdefault("raw", []).append(seconds)
        self.commands.setdefault(scenario, {}).setdefault("raw", []).append(self._remote_commands() - before)
        log("  %-11s %-6s %.3fs (%d remote commands)" % (scenario, "raw", seconds, self.commands[scenario]["raw"][-1]))
        self._check(folder / name, snapshot, parent)
        return snapshot

    def _check(self, backup: Path, snapshot: Path, parent: Path | None):
        info = subvol_info(backup)
        if info.get("Received UUID") != subvol_info(snapshot)["UUID"]:
            raise BenchError("%s is not a complete backup of %s: %s" % (backup, snapshot, info))

    def _newest(self, folder: Path) -> str:
        return sorted(subvolumes_in(folder))[-1]

    def full(self, rnd: int):
        ours_dst, raw_dst = self.dst / "full-ours", self.dst / "full-raw"
        ours_snaps, raw_snaps = self.src / "full-ours-snaps", self.src / "full-raw-snaps"
        for folder in (ours_dst, raw_dst, ours_snaps, raw_snaps):
            if folder.exists():
                delete_subvolumes(folder, folder.parent)
                shutil.rmtree(folder)  # the lock file too: every round starts as a first run
            folder.mkdir()
        syncfs(self.src, self.dst)
        for tool in (("ours", "raw") if rnd % 2 == 0 else ("raw", "ours")):
            if tool == "raw":
                self._raw("full", raw_snaps, raw_dst, None, "20200101-000000")
            else:
                self._measure("full", "ours", [self._ours("-f", ours_snaps, self.data, self._url(ours_dst))])
                name = self._newest(ours_dst)
                self._check(ours_dst / name, ours_snaps / name, None)

    def incremental_setup(self):
        """Untimed: one full backup in each chain, so that every timed run is incremental (the
        full scenario's backups and snapshots go first: room for the chains)."""
        for fs, folders in ((self.dst, ("full-ours", "full-raw")), (self.src, ("full-ours-snaps", "full-raw-snaps"))):
            for folder in (fs / name for name in folders):
                if folder.exists():
                    delete_subvolumes(folder, fs)
                    shutil.rmtree(folder)
        for tool in ("ours", "raw"):
            for folder in (self.dst / ("inc-" + tool), self.src / ("inc-%s-snaps" % tool)):
                folder.mkdir()
        subprocess.run(self._ours("-f", self.src / "inc-ours-snaps", self.data, self._url(self.dst / "inc-ours")),
                       env=self.env, check=True)
        self.raw_parent = self._raw("incremental-setup", self.src / "inc-raw-snaps", self.dst / "inc-raw", None,
                                    "20200101-000000")
        self.samples.pop("incremental-setup")
        self.commands.pop("incremental-setup")

    def incremental(self, rnd: int):
        modify_tree(self.data / "files", self.args.change_mib * MiB, seed=100 + rnd, add_files=1, remove_files=1)
        syncfs(self.src)
        time.sleep(1.05)  # ours names its snapshots by the second
        for tool in (("ours", "raw") if rnd % 2 == 0 else ("raw", "ours")):
            if tool == "raw":
                self.raw_parent = self._raw("incremental", self.src / "inc-raw-snaps", self.dst / "inc-raw",
                                            self.raw_parent, "20200101-%06d" % (rnd + 1))
            else:
                folder = self.dst / "inc-ours"
                self._measure("incremental", "ours",
                              [self._ours("-f", self.src / "inc-ours-snaps", self.data, self._url(folder))])
                name = self._newest(folder)
                self._check(folder / name, self.src / "inc-ours-snaps" / name, None)

    def pull_setup(self):
        """Untimed: one full pull into each chain (ours, the baseline's, raw's), so that every timed
        pull is incremental. The snapshot folders are at the far source, the backups here."""
        self.pull_tools = ["ours", "raw"] + (["baseline"] if self.args.baseline else [])
        for tool in self.pull_tools:
            for folder in (self.dst / ("pull-" + tool), self.src / ("pull-%s-snaps" % tool)):
                folder.mkdir()
            if tool != "raw":
                subprocess.run(self._pull_argv(tool), env=self.env, check=True)
        self.pull_raw_parent = None
        self._raw_pull("pull-setup", 0)
        self.samples.pop("pull-setup")
        self.commands.pop("pull-setup")

    @property
    def pulled(self) -> str:
        """The pulls' scenario: a pull, or with --relay a relay back to the far host."""
        return "relay" if self.args.relay else "pull"

    def _pull_argv(self, tool: str) -> List[str]:
        dest = self.dst / ("pull-" + tool)
        argv = self._ours("-f", self.src / ("pull-%s-snaps" % tool), self._url(self.data),
                          self._url(dest) if self.args.relay else dest)
        if tool == "baseline":
            argv[argv.index(os.fspath(OURS_SCRIPT))] = os.fspath(self.args.baseline)
        return argv

    def _raw_pull(self, scenario: str, rnd: int):
        snaps, folder = self.src / "pull-raw-snaps", self.dst / "pull-raw"
        snapshot = snaps / ("20200101-%06d" % rnd)
        send = "btrfs send -q %s%s | zstd -3 -T0 -q" % (
            "-p %s " % shlex.quote(str(self.pull_raw_parent)) if self.pull_raw_parent else "", shlex.quote(str(snapshot)))
        remote = "btrfs subvolume snapshot -r %s %s >/dev/null && %s" % (
            shlex.quote(str(self.data)), shlex.quote(str(snapshot)), send)
        Gate.wait("%s raw" % scenario)
        before = self._remote_commands()
        if self.args.relay:
            stages = [self._ssh(remote), self._ssh("zstd -d -q | btrfs receive %s" % shlex.quote(str(folder)))]
        else:
            stages = [self._ssh(remote), ["zstd", "-d", "-q"], ["btrfs", "receive", str(folder)]]
        m = timed(stages, label="%s raw" % scenario)
        self.samples.setdefault(scenario, {}).setdefault("raw", []).append(m.seconds)
        self.commands.setdefault(scenario, {}).setdefault("raw", []).append(self._remote_commands() - before)
        log("  %-11s %-8s %.3fs (%d remote commands)" % (scenario, "raw", m.seconds, self.commands[scenario]["raw"][-1]))
        self._check(folder / snapshot.name, snapshot, self.pull_raw_parent)
        self.pull_raw_parent = snapshot

    def pull(self, rnd: int):
        modify_tree(self.data / "files", self.args.change_mib * MiB, seed=500 + rnd, add_files=1, remove_files=1)
        syncfs(self.src)
        time.sleep(1.05)  # ours names its snapshots by the second
        shift = rnd % len(self.pull_tools)
        for tool in self.pull_tools[shift:] + self.pull_tools[:shift]:
            if tool == "raw":
                self._raw_pull(self.pulled, rnd + 1)
                continue
            self._measure(self.pulled, tool, [self._pull_argv(tool)])
            folder, snaps = self.dst / ("pull-" + tool), self.src / ("pull-%s-snaps" % tool)
            name = self._newest(folder)
            self._check(folder / name, snaps / name, None)

    def nothing(self, rnd: int):
        snaps, folder = self.src / "inc-ours-snaps", self.dst / "inc-ours"
        held = len(subvolumes_in(folder))
        tools = ("ours", "0.3.1") + (("baseline",) if self.args.baseline else ())
        for tool in (tools if rnd % 2 == 0 else tools[::-1]):
            flags = [x for o in self.ssh_options for x in ("--ssh-opt", o)]
            if tool in ("ours", "baseline"):
                stages = [self._ours("-S", "-P", "-f", snaps, self.data, self._url(folder))]
                if tool == "baseline":
                    stages[0][stages[0].index(os.fspath(OURS_SCRIPT))] = os.fspath(self.args.baseline)
            else:
                stages = [self.netns.prefix + [self.args.python, str(OLD_SCRIPT), "-S", "-q", *flags, "-f", str(snaps),
                                               str(self.data), self._url(folder)]]
            self._measure("nothing", tool, stages, env=self.env_031 if tool == "0.3.1" else None)
            if len(subvolumes_in(folder)) != held:
                raise BenchError("a run with nothing to send changed %s" % folder)

    # report

    def report(self, load_start: str):
        a = self.args
        out = ["# Latency benchmark (`bench_latency.py`)", "",
               "Engine %s; a link of %s with a %d ms round trip (a proxy holding each direction %d ms); %s." % (
                   self.fingerprint, a.link_rate, 2 * a.delay_ms, a.delay_ms, time.strftime("%Y-%m-%d %H:%M")),
               "Data: stream %.1f MiB (zstd -3: %.1f MiB); %d MiB changed before each incremental run." % (
                   self.stream_mib, self.zstd_mib, a.change_mib),
               "Ours and btrfs-backup 0.3.1 run by %s (Python %s)." % (a.python, self.python_version),
               "Load average at the start: %s; at the end: %s." % (load_start, _load()), "",
               "| scenario | tool | runs | median s | min s | max s | remote commands per run |",
               "|---|---|---:|---:|---:|---:|---:|"]
        for scenario, tools in self.samples.items():
            for tool, values in tools.items():
                counts = sorted(set(self.commands[scenario][tool]))
                out.append("| %s | %s | %d | %.3f | %.3f | %.3f | %s |" % (
                    scenario, tool, len(values), statistics.median(values), min(values), max(values),
                    "/".join(map(str, counts))))
        out.append("")
        for scenario, (ours, other), goal in (("full", ("ours", "raw"), 1.03), ("incremental", ("ours", "raw"), 1.1),
                                              ("nothing", ("ours", "0.3.1"), 0.8), ("nothing", ("ours", "baseline"), None),
                                              ("pull", ("ours", "raw"), 1.1),
                                              ("pull", ("ours", "baseline"), None), ("relay", ("ours", "raw"), None),
                                              ("relay", ("ours", "baseline"), None)):
            tools = self.samples.get(scenario, {})
            if ours in tools and other in tools:
                ratio = statistics.median(tools[ours]) / statistics.median(tools[other])
                pairs = [x / y for x, y in zip(tools[ours], tools[other])]
                out.append("- %s: ours / %s = **%.3f** (median of the pairs' ratios %.3f%s)" % (
                    scenario, other, ratio, statistics.median(pairs), "" if goal is None else "; goal <= %.2f" % goal))
        print("\n".join(out))


def _load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxy", nargs=3, metavar=("LISTEN_PORT", "TARGET_PORT", "DELAY"), help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="100 MiB, 2 full and 4 incremental rounds")
    p.add_argument("--data-mib", type=int, default=300, help="data in the source (default 300)")
    p.add_argument("--change-mib", type=int, default=10, help="MiB changed before each incremental run (default 10)")
    p.add_argument("--full-rounds", type=int, default=4, help="rounds of the full send (default 4)")
    p.add_argument("--rounds", type=int, default=10, help="rounds of the incremental and nothing-to-send runs")
    p.add_argument("--delay-ms", type=int, default=25, help="what the proxy holds each direction (default 25)")
    p.add_argument("--link-rate", default="200mbit", help="the shaped hop's rate, as tc reads it (default 200mbit)")
    p.add_argument("--no-gate", action="store_true", help="do not wait for a quiet machine before each run")
    p.add_argument("--only", choices=("all", "push", "pull"), default="all",
                   help="run every scenario, only the pushes (full, incremental, nothing) or only the pulls")
    p.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                   help="the python3 that runs ours and btrfs-backup 0.3.1 (default: the distribution's "
                        "/usr/bin/python3, as on a managed host; else this benchmark's)")
    p.add_argument("--baseline", type=Path,
                   help="another checkout's bin/btrfs-backup, paired with ours in the pulls and the runs with nothing to send")
    p.add_argument("--relay", action="store_true", help="the pulls' backups go to the far host too: a relay")
    p.add_argument("--strace", metavar="DIR", help="run ours under strace -f -ttt, one trace file per run in DIR "
                   "(for where the time goes; the times are then strace's, not ours)")
    args = p.parse_args(argv)
    if args.quick:
        args.data_mib, args.full_rounds, args.rounds = 100, 2, 4
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.proxy:
        proxy_main(int(args.proxy[0]), int(args.proxy[1]), float(args.proxy[2]))
        return 0
    if os.geteuid() != 0:
        log("bench_latency.py needs root (loop devices, mounts, a network namespace, sshd)")
        return 2
    missing = [t for t in ("btrfs", "ip", "tc", "nsenter", "ssh", "/usr/sbin/sshd", "zstd") if not shutil.which(t)]
    if missing or not OLD_SCRIPT.exists():
        log("missing: %s" % ", ".join(missing + ([] if OLD_SCRIPT.exists() else [str(OLD_SCRIPT)])))
        return 2
    Gate.enabled, Gate.max_wait = not args.no_gate, 5.0
    interrupt_on_signals()
    become_subreaper()
    load_start = _load()
    with contextlib.ExitStack() as stack:
        bench = LatencyBench(args, stack)
        with children_stopped_on_failure():
            bench.setup()
            for rnd in range(args.full_rounds if args.only != "pull" else 0):
                log("full, round %d of %d" % (rnd + 1, args.full_rounds))
                bench.full(rnd)
            if args.only != "pull":
                bench.incremental_setup()
            for rnd in range(args.rounds if args.only != "pull" else 0):
                log("incremental and nothing to send, round %d of %d" % (rnd + 1, args.rounds))
                bench.incremental(rnd)
                bench.nothing(rnd)
            if args.only != "push":
                bench.pull_setup()
            for rnd in range(args.rounds if args.only != "push" else 0):
                log("pull, round %d of %d" % (rnd + 1, args.rounds))
                bench.pull(rnd)
            bench.report(load_start)
    return 0


if __name__ == "__main__":
    run_benchmark(main)
