"""`btrfs-backup serve` as the forced command of a key: real push backups through it, and refusals.

A private sshd on loopback accepts one client key only with
`restrict,command="bin/btrfs-backup serve --root DEST/web1"`, as the role installs it on a
backup server. The engine pushes to it over ssh exactly as it pushes to any ssh destination.
"""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from cli_helpers import (CLI, assert_restores, destination, is_subvolume, leave_partial_receive,
                         live_locks, ok, retention, run_cli, sent, ssh_args, subvolumes, take_snapshot,
                         wait_next_second, write_locks_03)
from support.btrfs_loop import pipeline, run
from support.sshd import Sshd
from support.trees import MiB, write_mixed_tree


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
