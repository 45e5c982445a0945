"""The btrfs-backup command line over real ssh: private sshd instances on loopback addresses.

The "remote" filesystems are loop-backed btrfs on this machine, reached through sshd as root,
so a test can check with `btrfs` directly what arrived on the "remote" side.
"""

from __future__ import annotations

import time

from cli_helpers import (
    assert_backup,
    assert_no_partial,
    assert_restores,
    destination,
    live_locks,
    ok,
    run_cli,
    sent,
    snapshot_names,
    ssh_args,
    subvolumes,
    write_locks_03,
)
from support.sshd import free_port
from support.trees import modify_tree


def change(src, seed):
    """A small change to the source data between runs (never inside the snapshot folder)."""
    modify_tree(src / "small", 32 * 1024, seed=seed, add_files=1, remove_files=1)


def two_runs(args, source, dest_id, snaps):
    """Run twice with a change in between; the first run is full, the second incremental.

    Returns the two snapshot names.
    """
    first = ok(*args).result
    one = first["snapshot"]["name"]
    assert sent(first, dest_id) == [(one, "full", None)]
    change(source, seed=2)
    second = ok(*args).result
    two = second["snapshot"]["name"]
    assert sent(second, dest_id) == [(two, "incremental", one)]
    assert live_locks(snaps) == {}
    return one, two


def test_push_to_ssh_full_then_incremental(src, dst, sshd, restore_fs):
    dest, snaps = dst / "backups", src / "snapshot"
    url = sshd.url(dest)  # ssh://root@127.0.0.2:PORT/...

    one, two = two_runs(ssh_args(sshd) + [src, url], src, url, snaps)

    assert_backup(dest, snaps / one)
    assert_backup(dest, snaps / two, parent_name=one)
    assert_no_partial(dest)
    for name in (one, two):
        assert_restores(dest / name, snaps / name, restore_fs)


def test_pull_from_an_ssh_source(src, dst, sshd, restore_fs):
    # The snapshots are taken on the remote host and its lock file lives there.
    dest, snaps = dst / "pulled", src / "snapshot"

    one, two = two_runs(ssh_args(sshd) + [sshd.url(src), dest], src, str(dest), snaps)

    assert_backup(dest, snaps / two, parent_name=one)
    assert (snaps / ".outstanding_transfers").exists()  # written on the source host
    assert_restores(dest / two, snaps / two, restore_fs)


def test_a_pull_whose_lock_file_cannot_be_written_sends_nothing(src, dst, sshd, restore_fs):
    """The lock file at a pulled source is written in the send's own remote command, before the
    snapshot and the send (rule 3): when it cannot be written, no snapshot is taken and no byte is
    sent, the run names the file, and the next run takes its snapshot and sends it."""
    dest, snaps = dst / "pulled", src / "snapshot"
    args = ssh_args(sshd) + [sshd.url(src), dest]
    one = ok(*args).result["snapshot"]["name"]
    change(src, seed=2)
    blocker = snaps / ".outstanding_transfers.tmp"
    blocker.mkdir()  # the lock file's temp file cannot be written

    failed = run_cli(*args)

    assert failed.code == 1, failed.explain()
    assert failed.result["snapshot"] is None and snapshot_names(snaps) == [one], failed.explain()
    outcome = destination(failed.result, str(dest))
    assert outcome["status"] == "failed", outcome
    assert "cannot write the lock file %s" % (snaps / ".outstanding_transfers") in outcome["error"], outcome
    assert sorted(subvolumes(dest)) == [one]  # nothing received, not even a partial
    blocker.rmdir()
    done = ok(*args).result
    two = done["snapshot"]["name"]
    assert sent(done, str(dest))[0][:2] == (two, "incremental")
    assert_backup(dest, snaps / two, parent_name=one)
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)


def test_ssh_source_to_ssh_destination(src, dst, sshd, sshd2, restore_fs):
    dest, snaps = dst / "relayed", src / "snapshot"
    url = sshd2.url(dest)

    one, two = two_runs(ssh_args(sshd, sshd2) + [sshd.url(src), url], src, url, snaps)

    assert_backup(dest, snaps / two, parent_name=one)
    assert_restores(dest / two, snaps / two, restore_fs)


def test_ssh_sudo_runs_btrfs_through_sudo(src, dst, sshd, restore_fs):
    dest, snaps = dst / "backups", src / "snapshot"
    url = sshd.url(dest)

    done = run_cli("--ssh-sudo", "-v", "debug", *ssh_args(sshd), src, url)

    assert done.code == 0, done.explain()
    assert "sudo -n btrfs receive" in done.stderr  # the remote command line, as logged
    name = done.result["snapshot"]["name"]
    assert_backup(dest, snaps / name)
    assert_restores(dest / name, snaps / name, restore_fs)


def test_an_unreachable_destination_fails_fast_and_the_local_one_still_gets_its_backup(src, dst, sshd):
    # A loopback port nobody listens on: the connection is refused at once.
    dead = "ssh://root@127.0.0.2:%d/srv/backups" % free_port("127.0.0.2")
    local, snaps = dst / "backups", src / "snapshot"

    started = time.monotonic()
    done = run_cli(*ssh_args(sshd), src, dead, local)
    elapsed = time.monotonic() - started

    assert done.code == 1, done.explain()
    assert elapsed < 20, "an unreachable host took %.1fs" % elapsed
    name = done.result["snapshot"]["name"]
    assert destination(done.result, local)["status"] == "ok"
    assert_backup(local, snaps / name)
    failed = destination(done.result, dead)
    assert failed["status"] == "failed"
    assert "cannot reach" in failed["error"] and "Connection refused" in failed["error"], failed
    assert dead in done.stderr


def test_local_and_ssh_destinations_in_one_run(src, dst, make_fs, sshd, restore_fs):
    local, remote, snaps = dst / "backups", make_fs("remote") / "backups", src / "snapshot"
    url = sshd.url(remote)
    args = ssh_args(sshd) + [src, local, url]

    first = ok(*args).result
    one = first["snapshot"]["name"]
    change(src, seed=3)
    second = ok(*args).result
    two = second["snapshot"]["name"]

    for dest_id, folder in ((str(local), local), (url, remote)):
        assert sent(first, dest_id) == [(one, "full", None)]
        assert sent(second, dest_id) == [(two, "incremental", one)]
        assert_backup(folder, snaps / two, parent_name=one)
    assert_restores(remote / two, snaps / two, restore_fs)


def test_a_locked_ssh_destination_is_retried_by_its_id(src, dst, sshd):
    # btrfs-backup 0.3 records an ssh destination as ssh://user@host:port/path; --locked-dests
    # must turn that id back into a reachable destination.
    dest, snaps = dst / "backups", src / "snapshot"
    url = sshd.url(dest)
    name = ok("-T", src).result["snapshot"]["name"]
    write_locks_03(snaps, {name: {"locks": [url]}})

    retry = ok("--locked-dests", "-S", *ssh_args(sshd), src).result

    assert sent(retry, url) == [(name, "full", None)]
    assert_backup(dest, snaps / name)
    assert live_locks(snaps) == {}
