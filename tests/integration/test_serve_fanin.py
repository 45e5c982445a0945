"""Several source hosts receiving into one backup server at once through `serve`, and its receive slots.

Each source has its own key, confined by its own `serve --root` forced command, and its own
subvolume; all start their CLI runs together. With `--receive-slots`, a receive beyond the
slots waits for one (a flock on a slot file that the kernel releases when its holder ends):
the source logs the wait and records it, and a killed holder or waiter never keeps a slot.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time

import pytest

from cli_helpers import CLI, destination
from support.sshd import Sshd
from support.tenant_keys import authorize_hosts
from support.trees import write_mixed_tree
from test_serve_fleet import assert_all_backed_up, push_all_at_once
from test_serve_ssh import require_sshd

SOURCES = 4
WAITING = "waiting for a receive slot"


@pytest.fixture
def fleet(require_btrfs, make_fs, subvolume):
    """{host: source subvolume} (each with its own data), {host: its folder on the server}, the server's filesystem."""
    require_sshd()
    server_fs = make_fs("server", size="512M")
    source_fs = make_fs("sources", size="512M")
    sources, roots = {}, {}
    for number in range(SOURCES):
        host = "src%02d" % number
        sources[host] = subvolume(source_fs / host)
        write_mixed_tree(sources[host], n_small=10, small_size=2048, large_files=[512 * 1024], seed=number)
        roots[host] = subvolume(server_fs / host)  # as the role makes each host's folder
    return sources, roots, server_fs


def test_four_sources_push_at_once_through_serve(fleet):
    sources, roots, _fs = fleet
    with Sshd(host="127.0.0.8") as server:
        keys = authorize_hosts(server, CLI, roots, ["--append-only"])
        done, _seconds = push_all_at_once(server, keys, sources, roots)
        assert_all_backed_up(done, sources, roots, server)  # each arrived, its files' checksums equal


def test_with_one_receive_slot_the_others_wait_and_all_arrive(fleet):
    """The slot is held when the runs start, then freed: every receive waits for it, says so to
    its source (log and run record), and each gets the slot in turn."""
    sources, roots, server_fs = fleet
    slots = server_fs / "slots"
    with Sshd(host="127.0.0.8") as server:
        keys = authorize_hosts(server, CLI, roots, ["--append-only", "--receive-slots", "1",
                                                    "--slot-folder", str(slots)])
        slots.mkdir()
        holder = os.open(slots / "receive-slot-0", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(holder, fcntl.LOCK_EX)
        released = threading.Thread(target=release_when_all_wait, args=(holder, roots))
        released.start()
        try:
            runs, _seconds = push_all_at_once(server, keys, sources, roots)
        finally:
            released.join()
        assert_all_backed_up(runs, sources, roots, server)
        for host, (_status, result, err) in runs.items():
            assert "%s (1 busy)" % WAITING in err, err
            assert "waited" in err, err
            url = server.url(roots[host] / "data")
            transfer = destination(result, url)["transfers"][0]
            assert transfer["receive_slot_wait_seconds"] > 0, transfer


def receives_in_serve(roots) -> dict:
    """{pid: seconds it has run} of the serve processes (python, not the login shell's helpers)
    running a receive into one of `roots`, found by their SSH_ORIGINAL_COMMAND."""
    wanted = [("btrfs receive %s/data" % root).encode() for root in roots.values()]
    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as handle:
                stat = handle.read()
            if not stat[stat.index("(") + 1:].startswith("python"):
                continue
            with open("/proc/%s/environ" % pid, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        command = next((v for v in environ if v.startswith(b"SSH_ORIGINAL_COMMAND=")), b"")
        if any(command.endswith(w) for w in wanted):
            started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            found[pid] = uptime - started
    return found


def release_when_all_wait(holder, roots, settle=4.0, timeout=90):
    """Free the held slot once every host's receive has been in serve for `settle` seconds (long
    past serve's start-up: each is waiting for the slot by then), or after `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ages = receives_in_serve(roots)
            if len(ages) >= len(roots) and min(ages.values()) >= settle:
                break
            time.sleep(0.1)
    finally:
        os.close(holder)


def serve_receive(root, slots, wait="30s"):
    """`serve` receiving a stream from a pipe of ours, as sshd runs it: (process, its stdin)."""
    env = dict(os.environ, SSH_ORIGINAL_COMMAND="btrfs receive %s" % (root / "data"))
    proc = subprocess.Popen([str(CLI), "serve", "--root", str(root), "--receive-slots", "1",
                             "--slot-folder", str(slots), "--slot-wait", wait],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return proc


def wait_for_line(proc, text, timeout=20):
    """The stderr lines of `proc` up to the one holding `text`."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if text.encode() in line:
            return seen.decode()
        if not line and proc.poll() is not None:
            break
    raise AssertionError("no %r from serve; it said: %s" % (text, seen.decode()))


def stop(*procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_a_killed_holder_or_waiter_frees_its_place(fleet):
    """serve A holds the only slot (its receive waits for a stream); B waits. A waiter whose source
    hangs up (C) gives up at once; A killed with SIGKILL (its receive still running) frees the slot
    for B; with the slot held, a short --slot-wait fails clearly with nothing received."""
    _sources, roots, server_fs = fleet
    slots = server_fs / "slots"
    first, second, third = (roots[h] for h in sorted(roots)[:3])
    for root in (first, second, third):
        (root / "data").mkdir()
    holder = serve_receive(first, slots)
    procs = [holder]
    try:
        # A's receive runs (no stream yet): a second receive waits for the slot.
        time.sleep(1.0)
        assert holder.poll() is None
        waiter = serve_receive(second, slots)
        procs.append(waiter)
        assert "(1 busy)" in wait_for_line(waiter, WAITING)
        # A source that hangs up while waiting gives up its place; the slot stays with A.
        quitter = serve_receive(third, slots)
        procs.append(quitter)
        wait_for_line(quitter, WAITING)
        quitter.stdout.close()
        quitter.stdin.close()
        assert quitter.wait(timeout=10) == 75
        assert "hung up" in quitter.stderr.read().decode()
        # A short wait fails clearly, nothing received.
        hurried = serve_receive(third, slots, wait="1")
        procs.append(hurried)
        _out, err = hurried.communicate(timeout=20)
        assert hurried.returncode == 75, err
        assert "no receive slot came free in 1s (1 busy" in err.decode() and "nothing was received" in err.decode()
        assert list((third / "data").iterdir()) == []
        # A killed by SIGKILL: its btrfs receive lives on (we keep its stream open), yet the slot is free.
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert "waited" in wait_for_line(waiter, "waited")
        assert waiter.poll() is None  # B's receive runs now
    finally:
        stop(*procs)
