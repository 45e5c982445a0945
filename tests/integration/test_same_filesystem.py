"""Rule 8, a backup is somewhere else: a destination on the source's own btrfs filesystem (the
mount point of a backup disk that is not mounted, or ssh://localhost) is refused with an error
that names both paths and the likely cause, and nothing is changed; --allow-same-filesystem
accepts it on purpose."""

from __future__ import annotations

import pytest

from cli_helpers import folder_state, ok, run_cli, snapshot_names, ssh_args


@pytest.fixture
def disk(make_fs, subvolume):
    """One btrfs "disk" with /home (a subvolume) and /mnt/usb-backup (an empty mount point)."""
    fs = make_fs("disk")
    home = subvolume(fs / "home")
    (home / "notes.txt").write_text("notes\n")
    mount_point = fs / "mnt" / "usb-backup"
    mount_point.mkdir(parents=True)
    return home, mount_point


def test_an_unmounted_backup_disk_is_refused_and_nothing_changes(disk):
    home, mount_point = disk
    before = folder_state(home.parent)
    done = run_cli(home, mount_point)
    assert done.code != 0, done.explain()
    for words in (str(mount_point), str(home), "same btrfs filesystem", "not mounted",
                  "--allow-same-filesystem"):
        assert words in done.stderr, (words, done.stderr)
    assert folder_state(home.parent) == before
    assert not (home / "snapshot").exists() and list(mount_point.iterdir()) == []


def test_a_missing_destination_folder_on_the_sources_disk_is_not_created(disk):
    home, mount_point = disk
    done = run_cli(home, mount_point / "home")
    assert done.code != 0 and "same btrfs filesystem" in done.stderr, done.explain()
    assert not (mount_point / "home").exists() and not (home / "snapshot").exists()


def test_the_source_disk_is_accepted_when_allowed(disk):
    home, mount_point = disk
    done = ok("--allow-same-filesystem", home, mount_point).result
    name = done["snapshot"]["name"]
    assert snapshot_names(mount_point) == [name]


def test_ssh_to_this_machine_is_the_same_filesystem_too(disk, sshd):
    """ssh://localhost onto the source's own disk: recognised by the source's subvolume UUIDs."""
    home, mount_point = disk
    url = sshd.url(mount_point)
    done = run_cli(*ssh_args(sshd), home, url)
    assert done.code != 0, done.explain()
    assert url in done.stderr and "same btrfs filesystem" in done.stderr, done.stderr
    assert list(mount_point.iterdir()) == []


def test_another_disk_is_fine(disk, make_fs):
    home, _mount_point = disk
    other = make_fs("usb") / "backups"
    done = ok(home, other).result
    assert snapshot_names(other) == [done["snapshot"]["name"]]
