"""`btrfs-backup serve` as the forced command of a key: real push backups through it, and refusals.

A private sshd on loopback accepts one client key only with
`restrict,command="bin/btrfs-backup serve --root DEST/web1"`, as the role installs it on a
backup server. The engine pushes to it over ssh exactly as it pushes to any ssh destination.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import (CLI, assert_backup, assert_restores, destination, is_subvolume,
                         leave_partial_receive, live_locks, ok, retention, run_cli, sent, ssh_args,
                         subvolumes, take_snapshot, wait_next_second, write_locks_03)
from support.btrfs_loop import pipeline, run
from support.sshd import Sshd
from support.trees import MiB, assert_same_tree, write_mixed_tree, write_text_files


def confine_key(server, root, *serve_flags):
    """Authorise the server's client key only with `serve [FLAGS] --root ROOT` as its forced
    command, as the role installs it; from here on every connection meets that command."""
    forced = " ".join([str(CLI), "serve"] + list(serve_flags) + ["--root", str(root)])
    key = (server.workdir / "id_ed25519.pub").read_text().strip()
    (server.workdir / "authorized_keys").write_text('restrict,command="%s" %s\n' % (forced, key))


def require_sshd():
    from conftest import _require  # noqa: PLC0415 - the integration suite's own prerequisite check
    from support import sshd as sshd_support
    _require(sshd_support.REQUIRED_TOOLS, "sshd")


def server_folders(make_fs):
    """A btrfs "backup server" with folders for web1 and web2."""
    fs = make_fs("server")
    (fs / "web1").mkdir()
    (fs / "web2" / "data").mkdir(parents=True)
    return fs


@pytest.fixture
def backup_server(require_btrfs, make_fs):
    """The server, and an sshd whose only key runs `serve --root <fs>/web1`."""
    require_sshd()
    fs = server_folders(make_fs)
    with Sshd(host="127.0.0.4") as server:
        confine_key(server, fs / "web1")
        probe = server.run("id", check=False, stdin=subprocess.DEVNULL)
        assert probe.returncode == 126 and "refused" in probe.stderr, (probe, server.log_tail(40))
        yield server, fs


def test_pushes_go_through_serve_incrementally(backup_server, make_fs, subvolume):
    server, fs = backup_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=20, small_size=2048, large_files=[MiB], seed=3)
    write_text_files(source / "text", 4, 256 * 1024, seed=3)  # worth compressing
    url = server.url(fs / "web1" / "data")
    args = ssh_args(server) + ["-N", "2", "-n", "2", source, url]
    done = run_cli(*args)
    assert done.code == 0, done.explain() + "\n--- sshd ---\n" + server.log_tail(60)
    first = done.result
    (source / "more.txt").write_text("more\n")
    second = ok(*args).result
    third = ok(*args).result
    names = [r["snapshot"]["name"] for r in (first, second, third)]
    assert sent(first, url) == [(names[0], "full", None)]
    assert sent(second, url) == [(names[1], "incremental", names[0])]
    # The engine asked serve for zstd and sent the stream compressed; serve decompressed it.
    assert all("compressed_bytes" in r["destinations"][0]["transfers"][0] for r in (first, second)), first
    # Retention deleted the oldest backup through serve too.
    listing = subprocess.run(["btrfs", "subvolume", "list", "-o", str(fs / "web1" / "data")],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    assert names[0] not in listing and names[1] in listing and names[2] in listing


def test_a_push_to_another_hosts_folder_is_refused(backup_server, make_fs, subvolume):
    server, fs = backup_server
    source = subvolume(make_fs("src") / "data")
    (source / "f").write_text("x\n")
    url = server.url(fs / "web2" / "data")
    done = run_cli(*ssh_args(server), source, url)
    assert done.code == 1, done.explain()
    assert "refused" in done.stderr, done.explain()
    assert list((fs / "web2" / "data").iterdir()) == []


@pytest.mark.parametrize("command", [
    "id",
    "btrfs subvolume list -a -u -q -R {fs}/web2",
    "btrfs send {fs}/web1/data",
    "btrfs subvolume delete -- {fs}/web1/../web2/data",
    "mkdir -- {fs}/web1/x; rm -rf {fs}/web2",
    "btrfs receive {fs}/web1/$(id -u)",
])
def test_other_commands_are_refused(backup_server, command):
    server, fs = backup_server
    done = server.run(command.format(fs=shlex.quote(str(fs))), check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 126 and "refused" in done.stderr, done
    assert not (fs / "web1" / "x").exists() and (fs / "web2" / "data").is_dir()


# -- append-only serving (invariant 10): a compromised source cannot destroy its own history ------

@pytest.fixture
def append_only_server(require_btrfs, make_fs):
    """As backup_server, with the key confined by `serve --append-only`."""
    require_sshd()
    fs = server_folders(make_fs)
    with Sshd(host="127.0.0.5") as server:
        confine_key(server, fs / "web1", "--append-only")
        yield server, fs


def names_after(name):
    """A snapshot name one second after `name` (names have one-second resolution)."""
    import datetime  # noqa: PLC0415
    when = datetime.datetime.strptime(name, "%Y%m%d-%H%M%S") + datetime.timedelta(seconds=1)
    return when.strftime("%Y%m%d-%H%M%S")


def complete_backups(folder):
    return {n: (s.uuid, s.received_uuid) for n, s in subvolumes(folder).items() if s.complete_backup}


def test_an_append_only_key_cannot_destroy_complete_backups(append_only_server, make_fs, subvolume):
    """Every attack a source's root could try with its key: refused, the backups' UUIDs and
    content unchanged, and another host's backups out of reach."""
    server, fs = append_only_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=20, small_size=2048, seed=4)
    url = server.url(fs / "web1" / "data")
    one = ok(*ssh_args(server), source, url).result["snapshot"]["name"]
    (source / "more.txt").write_text("more\n")
    two = ok(*ssh_args(server), source, url).result["snapshot"]["name"]
    # Another host's complete backup on the same server.
    pipeline(["btrfs", "send", "-q", source / "snapshot" / one], ["btrfs", "receive", fs / "web2" / "data"])
    other = fs / "web2" / "data" / one
    before = complete_backups(fs / "web1" / "data")
    assert sorted(before) == [one, two]
    backup = fs / "web1" / "data" / one

    q = shlex.quote
    attacks = {
        "delete": "btrfs subvolume delete -- %s" % q(str(backup)),
        "delete with commit": "btrfs subvolume delete -c -- %s" % q(str(backup)),
        "delete both": "btrfs subvolume delete -- %s %s" % (q(str(backup)), q(str(fs / "web1" / "data" / two))),
        "make writable": "btrfs property set -ts %s ro false" % q(str(backup)),
        "make writable, forced": "btrfs property set -f -ts %s ro false" % q(str(backup)),
        "rename": "mv %s %s" % (q(str(backup)), q(str(fs / "web1" / "data" / "renamed"))),
        "snapshot over": "btrfs subvolume snapshot %s %s" % (q(str(backup)), q(str(backup) + "x")),
        "delete another host's": "btrfs subvolume delete -- %s" % q(str(other)),
        "delete the folder": "btrfs subvolume delete -- %s" % q(str(fs / "web1" / "data")),
    }
    for what, line in attacks.items():
        done = server.run(line, check=False, stdin=subprocess.DEVNULL)
        assert done.returncode == 126 and "refused" in done.stderr, (what, done)

    # A stream whose subvolume has the name of a complete backup: receive will not replace it.
    stream = subprocess.run(["btrfs", "send", "-q", str(source / "snapshot" / one)],
                            stdout=subprocess.PIPE, check=True).stdout
    over = server.run("btrfs receive %s" % q(str(fs / "web1" / "data")), check=False, input=stream,
                      text=False)
    assert over.returncode != 0, over

    assert complete_backups(fs / "web1" / "data") == before
    assert is_subvolume(other)
    assert_restores(fs / "web1" / "data" / two, source / "snapshot" / two, make_fs("restore"))


def test_with_an_append_only_server_partials_are_cleaned_and_retention_is_left_to_it(
        append_only_server, make_fs, subvolume):
    """A receive cut short is still deleted by the next run (it is a partial, not a backup),
    and a job with destination retention does not fail: it says that the server prunes."""
    server, fs = append_only_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=20, small_size=2048, large_files=[MiB], seed=5)
    dest = fs / "web1" / "data"
    url = server.url(dest)
    args = ssh_args(server) + ["-n", "1"]
    one = ok(*args, source, url).result["snapshot"]["name"]
    (source / "more.txt").write_text("more\n")
    wait_next_second()
    two = take_snapshot(source, source / "snapshot", names_after(one))
    # The transfer of `two` died mid-stream: a partial receive and its lock, as a crash leaves them.
    partial = leave_partial_receive(two, dest)
    write_locks_03(source / "snapshot", {two.name: {"locks": [url]}, one: {"parent_locks": [url]}})

    done = run_cli(*args, "-S", source, url)
    assert done.code == 0, done.explain() + "\n--- sshd ---\n" + server.log_tail(40)
    outcome = destination(done.result, url)
    assert outcome["partials_deleted"] == [str(partial.path)], outcome
    assert sent(done.result, url) == [(two.name, "incremental", one)]
    assert sorted(complete_backups(dest)) == [one, two.name], "the server kept both backups"
    assert "append-only" in done.stderr and done.stderr.count("append-only") == 1, done.stderr
    # Nothing is reported deleted that the server kept (never pretend).
    at_server = retention(done.result, url)
    assert at_server["deleted"] == {} and "append-only" in at_server["kept"][one][0], at_server
    assert live_locks(source / "snapshot") == {}


# -- a normal source never knocks on the locked door: every refusal is a signal -------------------

SERVER_PRUNES = "the server is append-only: its own retention (btrfs-backup prune) decides"
REFUSAL_KINDS = ("append-only", "command", "disk", "name", "path", "quota", "stream")  # serve.REFUSAL_KINDS
LOG_AUTH, LOG_ALERT = 4, 1  # syslog(3): facility auth, priority alert


@pytest.fixture
def counted_append_only_server(require_btrfs, make_fs, tmp_path):
    """As append_only_server, counting refusals in a node_exporter textfile (serve --metrics-file)."""
    require_sshd()
    fs = server_folders(make_fs)
    metrics = tmp_path / "textfile" / "btrfs-backup-serve.prom"
    metrics.parent.mkdir()
    with Sshd(host="127.0.0.5") as server:
        confine_key(server, fs / "web1", "--append-only", "--metrics-file", str(metrics))
        yield server, fs, metrics


def refusal_counts(metrics):
    """{(source_host, kind): count} of the textfile's refusal counter."""
    found = re.findall(r'^btrfs_backup_serve_refusals_total\{source_host="([^"]*)",kind="([^"]*)"\} (\d+)$',
                       metrics.read_text(), re.M)
    return {(host, kind): int(count) for host, kind, count in found}


class SyslogListener:
    """What processes send to /dev/log while it is ours: [(facility, priority, text)]."""

    def __init__(self, sock):
        self.sock = sock

    def messages(self, containing):
        found = []
        while True:
            try:
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except BlockingIOError:
                break
            match = re.match(r"<(\d+)>", data)
            if match and containing in data:
                found.append((int(match.group(1)) >> 3, int(match.group(1)) & 7, data))
        return found


@contextlib.contextmanager
def syslog_listener():
    """Listen on /dev/log while the test runs, if nothing else does (no journald here); else None."""
    if os.path.exists("/dev/log"):
        yield None
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("/dev/log")
        os.chmod("/dev/log", 0o666)
        sock.setblocking(False)
        yield SyslogListener(sock)
    finally:
        sock.close()
        if os.path.exists("/dev/log") and stat.S_ISSOCK(os.stat("/dev/log").st_mode):
            os.unlink("/dev/log")


def test_a_normal_source_never_meets_a_refusal_at_an_append_only_server(counted_append_only_server,
                                                                        make_fs, subvolume):
    """Runs with destination retention (-n 1): the source knows the server is append-only, sends
    no deletion, and says why the backups stay; serve refuses nothing. A delete with the key then
    is the one refusal: logged at priority alert and counted with its kind."""
    server, fs, metrics = counted_append_only_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=10, small_size=2048, seed=9)
    dest = fs / "web1" / "data"
    url = server.url(dest)
    names = []
    with syslog_listener() as syslog:
        for number in range(3):
            (source / ("change-%d.txt" % number)).write_text("change %d\n" % number)
            if names:
                wait_next_second()
            done = ok(*ssh_args(server), "-n", "1", source, url)
            names.append(done.result["snapshot"]["name"])
            at_server = retention(done.result, url)
            assert at_server["deleted"] == {}, at_server
            assert all(at_server["kept"][older] == [SERVER_PRUNES] for older in names[:-1]), at_server
            # Said once per run that had something to let go; not a warning, nothing refused.
            assert done.stderr.count("is append-only") == (1 if number else 0), done.stderr
            assert "refused" not in done.stderr and done.result["warnings"] == [], done.explain()
        assert sorted(complete_backups(dest)) == names
        assert refusal_counts(metrics) == {("web1", kind): 0 for kind in REFUSAL_KINDS}
        if syslog is not None:
            assert syslog.messages(str(fs / "web1")) == []

        attack = "btrfs subvolume delete -- %s" % shlex.quote(str(dest / names[0]))
        refused = server.run(attack, check=False, stdin=subprocess.DEVNULL)
        assert refused.returncode == 126 and "refused: append-only" in refused.stderr, refused
        counts = refusal_counts(metrics)
        assert counts == {**{("web1", kind): 0 for kind in REFUSAL_KINDS}, ("web1", "append-only"): 1}, counts
        if syslog is not None:
            (facility, priority, text), = syslog.messages(str(fs / "web1"))
            assert (facility, priority) == (LOG_AUTH, LOG_ALERT), text
            assert "btrfs-backup-serve" in text and "refused[append-only] for %s" % (fs / "web1") in text, text
            assert attack in text, text
    assert sorted(complete_backups(dest)) == names
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "metrics"], input=metrics.read_text(),
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


# -- per-host quotas ----------------------------------------------------------------------------

def quota_host_folder(fs, name):
    """A host folder as the role makes it with a quota: a subvolume in its own level-1 qgroup."""
    folder = fs / name
    run(["btrfs", "subvolume", "create", folder])
    out = run(["btrfs", "subvolume", "show", folder], env=dict(os.environ, LC_ALL="C")).stdout
    subvolume_id = int(next(l for l in out.splitlines() if "Subvolume ID:" in l).split(":")[1])
    run(["btrfs", "qgroup", "create", "1/%d" % subvolume_id, fs])
    run(["btrfs", "qgroup", "assign", "0/%d" % subvolume_id, "1/%d" % subvolume_id, fs])
    return folder, "1/%d" % subvolume_id


def referenced(fs, qgroup):
    run(["btrfs", "filesystem", "sync", fs])
    run(["btrfs", "quota", "rescan", "-w", fs], check=False)
    out = run(["btrfs", "qgroup", "show", "--raw", fs]).stdout
    return next(int(line.split()[1]) for line in out.splitlines() if line.split()[:1] == [qgroup])


def test_a_host_over_its_quota_fails_alone(require_btrfs, make_fs, subvolume):
    """Two hosts' keys with quotas on one server: the transfer that would pass its host's quota
    is stopped with a clear error and stays locked; the other host's backup arrives."""
    require_sshd()
    fs = make_fs("server", size="1G")
    run(["btrfs", "quota", "enable", fs])
    small, _ = quota_host_folder(fs, "small")
    large, large_qgroup = quota_host_folder(fs, "large")
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=10, small_size=2048, large_files=[24 * MiB], seed=6)
    with Sshd(host="127.0.0.6") as small_server, Sshd(host="127.0.0.7") as large_server:
        for server, folder, size in ((small_server, small, "8M"), (large_server, large, "200M")):
            confine_key(server, folder, "--append-only", "--quota", size)
        small_url, large_url = small_server.url(small / "data"), large_server.url(large / "data")
        done = run_cli(*ssh_args(small_server, large_server), source, small_url, large_url)

    assert done.code == 1, done.explain()
    name = done.result["snapshot"]["name"]
    failed = destination(done.result, small_url)
    assert failed["status"] == "failed" and "quota exceeded" in failed["error"], failed
    assert "small past its quota of 8.0 MiB" in failed["error"], failed
    assert destination(done.result, large_url)["status"] == "ok"
    assert sorted(complete_backups(large / "data")) == [name]
    assert complete_backups(small / "data") == {} and list((small / "data").iterdir()) == []
    assert live_locks(source / "snapshot") == {name: {"locks": [small_url]}}
    # The received backup counts against its host's quota.
    assert referenced(fs, large_qgroup) >= 24 * MiB


# -- the backup disk must be mounted (rule 8) ----------------------------------------------------

def test_serve_receives_only_on_the_filesystem_it_was_set_up_on(require_btrfs, make_fs, subvolume):
    """The role names the backup filesystem's UUID in the key's command: while the root is on
    another filesystem (the backup disk did not mount) nothing is received, and the source
    hears why; on the right one the backup arrives."""
    require_sshd()
    fs, elsewhere = make_fs("server"), make_fs("system-disk")
    source = subvolume(make_fs("src") / "data")
    (source / "f").write_text("x\n")
    uuid = run(["findmnt", "-n", "-o", "UUID", "-T", fs]).stdout.strip()
    for root, expect_ok in ((elsewhere / "web1", False), (fs / "web1", True)):
        root.mkdir()
        with Sshd(host="127.0.0.8") as server:
            confine_key(server, root, "--append-only", "--filesystem", uuid)
            done = run_cli(*ssh_args(server), source, server.url(root / "data"))
        if expect_ok:
            assert done.code == 0, done.explain()
            assert sorted(complete_backups(root / "data")) == [done.result["snapshot"]["name"]]
        else:
            assert done.code != 0 and "is the backup disk mounted" in done.stderr, done.explain()
            assert list(root.iterdir()) == []


# -- zstd-compressed streams ----------------------------------------------------------------------

MARKER = "__btrfs_backup_%s__" % ("0" * 32)


def compressed_receive(folder):
    """The line the engine sends for a compressed stream."""
    return "zstd -d -q | btrfs receive %s" % shlex.quote(str(folder))


def send_compressed(server, snapshot, folder, parent=None, check=True):
    """`btrfs send [-p PARENT] SNAP | zstd -q -c | ssh ... 'zstd -d -q | btrfs receive FOLDER'`."""
    send = ["btrfs", "send", "-q"] + (["-p", parent] if parent else []) + [snapshot]
    return pipeline(send, ["zstd", "-q", "-c"], server.ssh_argv(compressed_receive(folder)), check=check)


def compressed_stream(snapshot):
    """The zstd-compressed send stream of `snapshot`, as bytes."""
    send = subprocess.Popen(["btrfs", "send", "-q", str(snapshot)], stdout=subprocess.PIPE)
    packed = subprocess.run(["zstd", "-q", "-c"], stdin=send.stdout, stdout=subprocess.PIPE, check=True).stdout
    send.stdout.close()
    assert send.wait() == 0
    return packed


def source_snapshots(make_fs, subvolume, *names, big=MiB):
    """A source subvolume and read-only snapshots of it, one per name, the data changing between them."""
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=20, small_size=2048, large_files=[big], seed=7)
    snapshots = []
    for number, name in enumerate(names):
        (source / ("change-%d.txt" % number)).write_text("change %d\n" % number)
        snapshots.append(take_snapshot(source, source.parent / "snapshots", name))
    return snapshots


def descendants(pid):
    """{pid: argv} of the processes below `pid` (our own sshd: the sessions it started)."""
    parents, argvs = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
                argvs[int(entry)] = Path("/proc", entry, "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            except OSError:
                continue  # ended meanwhile
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    below = {}
    for child in parents:
        ancestor = parents.get(child)
        while ancestor and ancestor != pid:
            ancestor = parents.get(ancestor)
        if ancestor == pid:
            below[child] = argvs[child]
    return below


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def test_a_compressed_stream_arrives_whole_through_serve(backup_server, make_fs, subvolume):
    """Full and incremental sends, compressed over ssh and decompressed by serve's own zstd: each
    backup is complete (received UUID, read-only) and holds exactly the snapshot's files."""
    server, fs = backup_server
    one, two = source_snapshots(make_fs, subvolume, "20260101-000000", "20260102-000000", big=4 * MiB)
    dest = fs / "web1" / "data"
    dest.mkdir()
    send_compressed(server, one, dest)
    send_compressed(server, two, dest, parent=one)
    assert_backup(dest, one)
    assert_backup(dest, two, parent_name=one.name)
    for snapshot in (one, two):
        assert_same_tree(snapshot, dest / snapshot.name)


def test_the_capability_probes_answer_through_serve(backup_server):
    server, _fs = backup_server
    batch = "; ".join("%s; printf '\\n%s %%d\\n' $?" % (probe, MARKER)
                      for probe in ("zstd --version", "btrfs --version"))
    done = server.run(batch, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done
    zstd_out, btrfs_out, rest = done.stdout.split("\n%s 0\n" % MARKER)
    assert "Zstandard" in zstd_out and btrfs_out.startswith("btrfs-progs v") and rest == "", done
    for probe, says in (("zstd --version", "Zstandard"), ("btrfs --version", "btrfs-progs v")):
        alone = server.run(probe, check=False, stdin=subprocess.DEVNULL)
        assert alone.returncode == 0 and says in alone.stdout, alone
    for near_miss in ("zstd --version --help", "btrfs --version /etc"):
        refused = server.run(near_miss, check=False, stdin=subprocess.DEVNULL)
        assert refused.returncode == 126 and "refused" in refused.stderr, refused


@pytest.mark.parametrize("damage, says", [
    pytest.param(lambda packed: packed[:len(packed) // 2], [b"zstd -d failed"], id="cut"),
    # Zeros over stored (incompressible) blocks: zstd would only notice at the frame's checksum,
    # so either side may be the first to stop.
    pytest.param(lambda packed: packed[:len(packed) // 2] + bytes(4096) + packed[len(packed) // 2 + 4096:],
                 [b"zstd -d failed", b"ERROR: crc32 mismatch"], id="corrupt"),
    pytest.param(None, [b"zstd -d failed"], id="not-compressed"),
])
def test_a_damaged_compressed_stream_fails_and_serve_returns(backup_server, make_fs, subvolume,
                                                             damage, says):
    """zstd's failure is the operation's: a non-zero status, zstd's message, no complete backup."""
    server, fs = backup_server
    snapshot, = source_snapshots(make_fs, subvolume, "20260101-000000", big=4 * MiB)
    dest = fs / "web1" / "data"
    dest.mkdir()
    if damage is None:  # a plain send stream where a compressed one belongs
        stream = subprocess.run(["btrfs", "send", "-q", str(snapshot)], stdout=subprocess.PIPE,
                                check=True).stdout
    else:
        stream = damage(compressed_stream(snapshot))
    done = server.run(compressed_receive(dest), check=False, input=stream, text=False, timeout=120)
    assert done.returncode not in (0, 126) and any(s in done.stderr for s in says), done
    assert [s for s in subvolumes(dest).values() if s.complete_backup] == []


def test_zstd_killed_mid_stream_fails_the_receive_and_serve_returns(backup_server, make_fs, subvolume):
    """The client keeps its end open: serve must not wait for it once its zstd died."""
    server, fs = backup_server
    snapshot, = source_snapshots(make_fs, subvolume, "20260101-000000", big=8 * MiB)
    dest = fs / "web1" / "data"
    dest.mkdir()
    packed = compressed_stream(snapshot)
    client = subprocess.Popen(server.ssh_argv(compressed_receive(dest)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        client.stdin.write(packed[:len(packed) // 4])
        client.stdin.flush()
        decompressor = wait_for(lambda: [pid for pid, argv in descendants(server.pid).items()
                                         if argv == ["zstd", "-d", "-q", "-c"]], "serve's zstd")
        # The decoder of what a source sent can gain no privileges (no sudo), whatever the stream does.
        status_lines = Path("/proc/%d/status" % decompressor[0]).read_text().splitlines()
        assert "NoNewPrivs:\t1" in status_lines, status_lines
        os.kill(decompressor[0], signal.SIGKILL)
        status = client.wait(timeout=30)
        stderr = client.stderr.read().decode()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        client.stdin.close()
        client.stdout.close()
        client.stderr.close()
    assert status not in (0, 126) and "zstd -d was killed by signal 9" in stderr, (status, stderr)
    assert [s for s in subvolumes(dest).values() if s.complete_backup] == []
    wait_for(lambda: not any(argv[:1] in (["zstd"], ["btrfs"]) for argv in descendants(server.pid).values()),
             "no zstd or btrfs left running")


def test_a_pipe_into_anything_else_is_refused_and_nothing_runs(backup_server, make_fs, subvolume):
    """Each line comes with a valid compressed stream: had anything run, a subvolume or a file
    would be there."""
    server, fs = backup_server
    one, two = source_snapshots(make_fs, subvolume, "20260101-000000", "20260102-000000")
    dest, web1, web2 = fs / "web1" / "data", fs / "web1", fs / "web2" / "data"
    dest.mkdir()
    send_compressed(server, one, dest)
    before = subvolumes(dest)
    q = lambda path: shlex.quote(str(path))  # noqa: E731
    attacks = [
        "zstd -d -q | btrfs subvolume delete -- %s" % q(dest / one.name),
        "zstd -d -q | sudo -n btrfs subvolume delete -- %s" % q(dest / one.name),
        "cat | btrfs receive %s" % q(dest),
        "zstd -d -q -o %s | btrfs receive %s" % (q(web1 / "x"), q(dest)),
        "zstd -d -q | sh -c %s" % q("touch %s" % q(web1 / "x")),
        "zstd -d -q | tee %s" % q(web1 / "x"),
        "zstd -d -q | btrfs receive %s | tee %s" % (q(dest), q(web1 / "x")),
        "zstd -d -q | btrfs receive %s; touch %s" % (q(dest), q(web1 / "x")),
        "zstd -d -q | btrfs receive %s > %s" % (q(dest), q(web1 / "x")),
        "zstd -d -q | btrfs receive %s" % q(web2),
        "zstd -d | zstd -d | btrfs receive %s" % q(dest),
        "zstd -d -q || btrfs receive %s" % q(dest),
        "zstd -d -q |& btrfs receive %s" % q(dest),
        "readlink -e -- %s; printf '\\n%s %%d\\n' $?; zstd -d -q | btrfs receive %s; printf '\\n%s %%d\\n' $?"
        % (q(web1), MARKER, q(dest), MARKER),
    ]
    stream = compressed_stream(two)
    for line in attacks:
        done = server.run(line, check=False, input=stream, text=False, timeout=60)
        assert done.returncode == 126 and b"refused" in done.stderr, (line, done)
        assert not (web1 / "x").exists() and subvolumes(dest) == before, line
        assert subvolumes(web2) == {}, line


def test_an_append_only_key_receives_compressed_streams(append_only_server, make_fs, subvolume):
    server, fs = append_only_server
    one, two = source_snapshots(make_fs, subvolume, "20260101-000000", "20260102-000000")
    dest = fs / "web1" / "data"
    dest.mkdir()
    send_compressed(server, one, dest)
    send_compressed(server, two, dest, parent=one)
    assert_backup(dest, two, parent_name=one.name)
    assert_same_tree(two, dest / two.name)
    before = complete_backups(dest)
    done = server.run("zstd -d -q | btrfs subvolume delete -- %s" % shlex.quote(str(dest / one.name)),
                      check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 126 and "refused" in done.stderr, done
    assert complete_backups(dest) == before


def test_a_quota_counts_the_decompressed_stream(require_btrfs, make_fs, subvolume):
    """A stream that compresses to almost nothing still fills the host's quota by what it
    unpacks to: the quota stops it; a small one arrives whole."""
    require_sshd()
    fs = make_fs("server", size="1G")
    run(["btrfs", "quota", "enable", fs])
    folder, _qgroup = quota_host_folder(fs, "web1")
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=10, small_size=2048, seed=8)
    small = take_snapshot(source, source.parent / "snapshots", "20260101-000000")
    (source / "zeros.bin").write_bytes(bytes(24 * MiB))
    large = take_snapshot(source, source.parent / "snapshots", "20260102-000000")
    assert len(compressed_stream(large)) < MiB, "the compressed stream alone would fit the quota"
    dest = folder / "data"
    dest.mkdir()
    with Sshd(host="127.0.0.9") as server:
        confine_key(server, folder, "--append-only", "--quota", "8M")
        send_compressed(server, small, dest)
        stages = send_compressed(server, large, dest, check=False)
    assert_backup(dest, small)
    assert_same_tree(small, dest / small.name)
    assert stages[-1].returncode != 0 and "quota exceeded" in stages[-1].stderr, stages[-1]
    assert sorted(complete_backups(dest)) == [small.name]
