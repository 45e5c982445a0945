"""Switching from btrfs-backup 0.3.1: its snapshots, backups and lock file carry on, no full resend.

btrfs-backup 0.3.1 itself (`.venv/bin/btrfs-backup`) makes the history; then our CLI runs on
the same source and destination.
"""

from __future__ import annotations

import os

import pytest

from cli_helpers import (
    OLD_CLI,
    assert_backup,
    assert_no_partial,
    assert_restores,
    destination,
    failing_receive_env,
    live_locks,
    ok,
    read_locks,
    run_raw,
    sent,
    snapshot_names,
    ssh_args,
    subvolumes,
    wait_next_second,
)
from support.trees import modify_tree

# Outside CI a checkout without .venv's btrfs-backup 0.3.1 skips these; in CI they run and fail loudly.
pytestmark = pytest.mark.skipif(not OLD_CLI.exists() and not os.environ.get("CI"),
                                reason="btrfs-backup 0.3.1 is not in .venv")


def change(src, seed):
    modify_tree(src / "small", 32 * 1024, seed=seed, add_files=1, remove_files=1)


def old_run(*args, env=None):
    """One run of btrfs-backup 0.3.1 (it cannot take two snapshots in one second)."""
    wait_next_second()
    return run_raw("-q", *args, env=env, program=OLD_CLI)


@pytest.mark.parametrize("prefix", ["", "home-"])
def test_continues_incrementally_from_btrfs_backup_03(src, dst, restore_fs, prefix):
    dest, snaps = dst / "backups", src / "snapshot"
    flags = ["-p", prefix] if prefix else []
    for seed in (2, 3):
        change(src, seed)
        old = old_run(*flags, src, dest)
        assert old.returncode == 0, old.stderr
    history = snapshot_names(snaps, prefix)
    assert len(history) == 2 and sorted(subvolumes(dest)) == history

    change(src, seed=4)
    done = ok(*flags, src, dest).result

    new = done["snapshot"]["name"]
    assert new.startswith(prefix) and new not in history
    # Parent: 0.3.1's newest snapshot, and btrfs agrees (parent_uuid at the destination).
    assert sent(done, dest) == [(new, "incremental", history[-1])]
    assert_backup(dest, snaps / new, parent_name=history[-1])
    assert_restores(dest / new, snaps / new, restore_fs)


def test_continues_an_ssh_destination_of_btrfs_backup_03(src, dst, sshd, restore_fs):
    dest, snaps = dst / "backups", src / "snapshot"
    url = sshd.url(dest)
    for seed in (2, 3):
        change(src, seed)
        old = old_run(*ssh_args(sshd), src, url)
        assert old.returncode == 0, old.stderr
    history = snapshot_names(snaps)
    assert sorted(subvolumes(dest)) == history

    change(src, seed=4)
    done = ok(*ssh_args(sshd), src, url).result

    new = done["snapshot"]["name"]
    assert sent(done, url) == [(new, "incremental", history[-1])]
    assert_backup(dest, snaps / new, parent_name=history[-1])
    assert_restores(dest / new, snaps / new, restore_fs)


def test_a_lock_file_left_by_btrfs_backup_03_is_understood(src, dst, tmp_path, restore_fs):
    dest, snaps = dst / "backups", src / "snapshot"
    assert old_run(src, dest).returncode == 0
    one = snapshot_names(snaps)[0]
    change(src, seed=5)
    # 0.3.1's transfer breaks off mid-stream: it keeps the partial backup and writes its locks.
    old_run(src, dest, env=failing_receive_env(tmp_path))
    two = snapshot_names(snaps)[-1]
    assert read_locks(snaps) == {two: {"locks": [str(dest)]}, one: {"parent_locks": [str(dest)]}}
    partial = subvolumes(dest)[two]
    assert not partial.readonly and partial.received_uuid is None

    change(src, seed=6)
    done = ok(src, dest).result

    three = done["snapshot"]["name"]
    assert destination(done, dest)["partials_deleted"] == [str(dest / two)]
    assert sent(done, dest) == [(two, "incremental", one), (three, "incremental", two)]
    assert_backup(dest, snaps / two, parent_name=one)
    assert_backup(dest, snaps / three, parent_name=two)
    assert_no_partial(dest)
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)
