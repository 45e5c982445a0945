"""`--compress auto` on real btrfs and real ssh judges the data the stream carries, not the whole
snapshot: an incremental of random data on a snapshot of text goes plain, an incremental of text
on a snapshot of random data goes through zstd. What a user checks: what the run log says it chose and why, whether the transfer record
has a compressed size, and that the files arrived (checksums)."""

from __future__ import annotations

import time
from pathlib import Path

from cli_helpers import destination, run_cli, sent, ssh_args, subvolumes
from support.trees import MiB, assert_same_tree, write_file, write_text_files

FS_SIZE = "300M"


def _run(*args):
    done = run_cli(*args)
    assert done.code == 0, done.explain()
    return done


def _newest(src: Path) -> str:
    return sorted(subvolumes(src / "snapshot"))[-1]


def _transfer(result, dest_id) -> dict:
    return destination(result, dest_id)["transfers"][-1]


def _assert_arrived(snapshots: Path, folder: Path, name: str) -> None:
    backup = subvolumes(folder)[name]
    assert backup.complete_backup and backup.received_uuid == subvolumes(snapshots)[name].uuid
    assert_same_tree(snapshots / name, folder / name)


def _push_twice(src, make_fs, sshd, change):
    """A full push, then `change(src)` and an incremental push with -v info: the second run."""
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    url = sshd.url(remote)
    _run(*ssh_args(sshd), src, url)
    first = _newest(src)
    change(src)
    time.sleep(1.05)  # snapshot names have whole seconds
    done = _run(*ssh_args(sshd), "-v", "info", src, url)
    name = _newest(src)
    assert sent(done.result, url) == [(name, "incremental", first)]
    _assert_arrived(src / "snapshot", remote, name)
    return done, url, name


def test_an_incremental_of_random_data_on_a_snapshot_of_text_goes_plain(make_fs, subvolume, sshd):
    src = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_text_files(src / "text", 24, 256 * 1024, seed=21)  # 6 MiB that compress ~3x
    done, url, name = _push_twice(src, make_fs, sshd, lambda s: write_file(s / "media.bin", 2 * MiB, seed=22))
    assert f"{name}: the incremental's changed data does not compress" in done.stderr, done.stderr
    assert "sent uncompressed" in done.stderr
    assert "compressed_bytes" not in _transfer(done.result, url)


def test_an_incremental_of_text_on_a_snapshot_of_random_data_is_compressed(make_fs, subvolume, sshd):
    src = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_file(src / "media.bin", 6 * MiB, seed=23)
    done, url, name = _push_twice(src, make_fs, sshd, lambda s: write_text_files(s / "text", 8, 256 * 1024, seed=24))
    assert f"{name}: the incremental's changed data compresses" in done.stderr, done.stderr
    record = _transfer(done.result, url)
    assert record["compressed_bytes"] < 0.6 * record["bytes"], record
