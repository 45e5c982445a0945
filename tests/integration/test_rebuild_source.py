"""A lost host brought back: `btrfs-backup restore --as-source` rebuilds the source from a backup
server's restore key, and the job's next run continues incrementally to every destination.

The job backs up to a local disk and to an append-only server over real ssh (the source's key
confined to `serve --append-only`); the source filesystem is then destroyed (unmounted, its loop
device detached, its image gone) and a new empty btrfs takes its place, as the failures guide
tells an operator to do it.
"""

from __future__ import annotations

import json

import pytest

from cli_helpers import ok, run_subcommand, show, ssh_args, subvolumes
from support.trees import MiB, checksum_tree, write_mixed_tree
from test_serve_restore import require_sshd, restore_server_on

FS_SIZE = "384M"
LARGE = 12 * MiB  # a full send is at least this; an incremental one of a few small edits is far less


@pytest.fixture
def server(require_btrfs, make_fs):
    """A backup server: the source's key pushes into web1 (append-only), the restore key reads."""
    require_sshd()
    fs = make_fs("server", size=FS_SIZE)
    (fs / "web1").mkdir()
    with restore_server_on(fs, "127.0.0.44") as restore_server:
        yield restore_server


def transfers(result, dest_id):
    return [t for d in result["destinations"] if d["id"] == dest_id for t in d["transfers"]]


def test_a_lost_source_comes_back_and_the_next_run_is_incremental_to_both(server, make_fs, btrfs_pool, subvolume):
    lost_fs = make_fs("src", size=FS_SIZE)
    source = subvolume(lost_fs / "data")
    write_mixed_tree(source, n_small=60, small_size=2048, large_files=[LARGE], seed=21)
    local = make_fs("dst", size=FS_SIZE) / "backups"
    local.mkdir()
    remote = server.sshd.url(server.fs / "web1" / "data")
    job = [*ssh_args(server.sshd), "-p", "web1-"]

    first = ok(*job, source, local, remote).result
    full_bytes = {t["bytes"] for d in first["destinations"] for t in d["transfers"]}
    assert min(full_bytes) > LARGE, first
    (source / "small" / "d000" / "edited.txt").write_text("changed before the host was lost\n")
    second = ok(*job, source, local, remote).result
    lost_snapshot = second["snapshot"]
    # What the rebuilt source must hold: the data, without the lost run's lock file.
    lost_data = {path: entry for path, entry in checksum_tree(source).items()
                 if path != "snapshot/.outstanding_transfers"}

    # The disk dies: its filesystem is gone, a new empty one is mounted for the host.
    btrfs_pool.release(lost_fs)
    new_fs = make_fs("newsrc", size=FS_SIZE)
    source = new_fs / "data"

    rebuilt = run_subcommand("restore", *server.restore_options(), "--as-source", "-p", "web1-", remote, source)
    assert rebuilt.code == 0, rebuilt.explain() + "\n--- sshd ---\n" + server.sshd.log_tail(40)
    assert (rebuilt.result["snapshot"], rebuilt.result["source"], rebuilt.result["target"]) == \
        (lost_snapshot["name"], remote, str(source))
    assert checksum_tree(source) == lost_data
    assert not show(source).readonly and show(source).received_uuid is None
    placed = show(source / "snapshot" / lost_snapshot["name"])
    # Rule 1: the rebuilt snapshot is recognised by the uuid of the snapshot it stands for.
    assert placed.readonly and placed.received_uuid == lost_snapshot["uuid"], placed
    assert not (source / "snapshot" / ".outstanding_transfers").exists()
    assert not [p for p in new_fs.iterdir() if p.name.startswith(".btrfs-backup-restore-")]
    state = json.loads(open(rebuilt.result["state"]).read())
    assert state["rebuilt"]["snapshots"] == [lost_snapshot["name"]], state
    again = run_subcommand("restore", *server.restore_options(), "--as-source", "-p", "web1-", remote, source)
    assert again.code == 0 and again.result["changed"] is False, again.explain()

    (source / "after-the-rebuild.txt").write_text("written on the rebuilt host\n")
    (source / "small" / "d000" / "edited.txt").write_text("changed again\n")
    third = ok(*job, source, local, remote).result
    new_name = third["snapshot"]["name"]
    for dest_id in (str(local), remote):
        sent = transfers(third, dest_id)
        assert [(t["snapshot"], t["mode"], t["parent"]) for t in sent] == \
            [(new_name, "incremental", lost_snapshot["name"])], third
        # Measured: a few KiB against more than 12 MiB for the full send.
        assert sent[0]["bytes"] < min(full_bytes) / 20, (sent, full_bytes)
        print("%s: incremental %d bytes after the rebuild, full %d bytes"
              % (dest_id, sent[0]["bytes"], min(full_bytes)))
    expected = checksum_tree(source / "snapshot" / new_name)
    live = {path: entry for path, entry in checksum_tree(source).items()
            if path != "snapshot/.outstanding_transfers"}  # this run's lock file, written after its snapshot
    assert checksum_tree(local / new_name) == expected == live
    assert checksum_tree(server.fs / "web1" / "data" / new_name) == expected
    backups = subvolumes(server.fs / "web1" / "data")
    assert backups[new_name].received_uuid == third["snapshot"]["uuid"]
    # The newest backup is now this source's own: a rebuild from it has nothing to do either.
    again = run_subcommand("restore", *server.restore_options(), "--as-source", "-p", "web1-", remote, source)
    assert again.code == 0 and again.result["changed"] is False, again.explain()
    assert again.result["snapshot"] == new_name


@pytest.fixture
def one_backup(make_fs, subvolume):
    """A job's source with one backup in a local folder: (source, backups folder, snapshot name)."""
    source = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_mixed_tree(source, n_small=10, small_size=1024, seed=22)
    backups = make_fs("dst", size=FS_SIZE) / "backups"
    backups.mkdir()
    return source, backups, ok(source, backups).result["snapshot"]["name"]


def _unchanged(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_rebuild_into_an_existing_path_changes_nothing(one_backup, make_fs):
    _source, backups, _name = one_backup
    fs = make_fs("newsrc", size=FS_SIZE)
    (fs / "data").mkdir()
    (fs / "data" / "kept.txt").write_text("mine\n")
    done = run_subcommand("restore", "--as-source", backups, fs / "data")
    assert done.code == 1 and "%s already exists" % (fs / "data") in done.stderr, done.explain()
    assert _unchanged(fs) == ["data"] and _unchanged(fs / "data") == ["kept.txt"]


def test_a_rebuild_from_a_folder_without_the_jobs_backups_changes_nothing(one_backup, make_fs):
    _source, backups, _name = one_backup
    fs = make_fs("newsrc", size=FS_SIZE)
    done = run_subcommand("restore", "--as-source", "-p", "home-", backups, fs / "data")
    assert done.code == 1 and "no complete backup with prefix 'home-'" in done.stderr, done.explain()
    empty = backups.parent / "empty"
    empty.mkdir()
    done = run_subcommand("restore", "--as-source", empty, fs / "data")
    assert done.code == 1 and "no complete backup" in done.stderr, done.explain()
    assert _unchanged(fs) == []


def test_a_rebuild_into_a_path_not_on_btrfs_changes_nothing(one_backup, tmp_path):
    _source, backups, _name = one_backup
    done = run_subcommand("restore", "--as-source", backups, tmp_path / "data")
    assert done.code == 1 and "%s is not on a btrfs filesystem" % tmp_path in done.stderr, done.explain()
    assert _unchanged(tmp_path) == []


def test_a_rebuild_brings_back_older_backups_into_the_jobs_own_snapshot_folder(make_fs, btrfs_pool, subvolume):
    """--snapshots 2 with a snapshot folder two levels down: both backups come back, each as the
    snapshot it stands for (--check before only shows the plan). A destination that missed the
    last run gets the rebuilt snapshot it lacks, incrementally, as the backup it stands for."""
    lost_fs = make_fs("src", size=FS_SIZE)
    source = subvolume(lost_fs / "data")
    write_mixed_tree(source, n_small=10, small_size=1024, large_files=[2 * MiB], seed=23)
    backup_fs = make_fs("dst", size=FS_SIZE)
    backups, behind = backup_fs / "backups", backup_fs / "behind"
    backups.mkdir()
    behind.mkdir()
    job = ["-f", ".snapshots/data"]
    taken = []
    for round_no in range(3):
        (source / "round.txt").write_text("round %d\n" % round_no)
        reached = [backups, behind] if round_no < 2 else [backups]  # `behind` misses the last run
        taken.append(ok(*job, source, *reached).result["snapshot"])
    btrfs_pool.release(lost_fs)
    new_fs = make_fs("newsrc", size=FS_SIZE)
    source = new_fs / "data"

    planned = run_subcommand("restore", "--check", "--as-source", "--snapshots", "2", *job, backups, source)
    assert planned.code == 0, planned.explain()
    staging = planned.result["plan"][0].split(" into ")[1]
    assert planned.result["plan"][:2] == [
        "receive %s from %s into %s" % (taken[1]["name"], backups, staging),
        "receive %s from %s into %s (incremental from %s)" % (taken[2]["name"], backups, staging, taken[1]["name"])]
    assert list(new_fs.iterdir()) == []

    rebuilt = run_subcommand("restore", "--as-source", "--snapshots", "2", *job, backups, source)
    assert rebuilt.code == 0, rebuilt.explain()
    folder = source / ".snapshots" / "data"
    placed = subvolumes(folder)
    assert {name: (s.readonly, s.received_uuid) for name, s in placed.items()} == {
        t["name"]: (True, t["uuid"]) for t in taken[1:]}
    assert not (folder / ".outstanding_transfers").exists()
    assert (source / "round.txt").read_text() == "round 2\n"

    (source / "round.txt").write_text("after the rebuild\n")
    after = ok(*job, source, backups, behind).result
    new_name = after["snapshot"]["name"]
    assert [(t["snapshot"], t["mode"], t["parent"]) for t in transfers(after, str(backups))] == [
        (new_name, "incremental", taken[2]["name"])]
    assert [(t["snapshot"], t["mode"], t["parent"]) for t in transfers(after, str(behind))] == [
        (taken[2]["name"], "incremental", taken[1]["name"]), (new_name, "incremental", taken[2]["name"])]
    # The rebuilt snapshot arrives as the backup of the lost one it stands for (rule 1).
    assert subvolumes(behind)[taken[2]["name"]].received_uuid == taken[2]["uuid"]
    assert checksum_tree(behind / new_name) == checksum_tree(folder / new_name)


def test_a_rebuild_that_fails_after_the_receive_leaves_nothing_behind(one_backup, make_fs):
    """The snapshot folder on another filesystem: the source is made, its snapshot cannot be;
    the source made is deleted again and the error says why."""
    _source, backups, name = one_backup
    fs, elsewhere = make_fs("newsrc", size=FS_SIZE), make_fs("other", size=FS_SIZE)
    done = run_subcommand("restore", "--as-source", "-f", elsewhere / "snapshots", backups, fs / "data")
    assert done.code == 1 and "cannot create %s" % (elsewhere / "snapshots" / name) in done.stderr, done.explain()
    assert _unchanged(fs) == []
    assert _unchanged(elsewhere / "snapshots") == []
