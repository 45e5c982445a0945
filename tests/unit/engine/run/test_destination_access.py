"""engine.run.destination_access: whether a destination's listing is of the source's own filesystem (rule 8)."""

import pytest

from engine.run.destination_access import not_mounted_hint, on_same_filesystem
from engine.model.errors import NotBtrfsError
from engine.host.endpoints.location import parse_location
from engine.host.listing import FolderListing


def listing(filesystem, uuids=None):
    return FolderListing("/x", {}, set(), filesystem=filesystem, uuids=uuids)


A, B, C = "uuid-a", "uuid-b", "uuid-c"
LOCAL, SSH = parse_location("/data"), parse_location("ssh://nas/backup")


@pytest.mark.parametrize("source_end, source, uuids, dest_end, dest, same", [
    pytest.param(LOCAL, listing("/dev/sda2"), frozenset(), LOCAL, listing("/dev/sda2"), True,
                 id="local-same-device"),
    pytest.param(LOCAL, listing("/dev/sda2"), frozenset(), LOCAL, listing("/dev/sdb1"), False,
                 id="local-other-disk"),
    pytest.param(LOCAL, listing("/dev/sda2"), frozenset({A}), SSH, listing("/dev/sda2", frozenset({A, B})),
                 True, id="ssh-to-localhost-shows-the-sources-snapshot"),
    pytest.param(LOCAL, listing("/dev/sda2"), frozenset({A}), SSH, listing("/dev/sda2", frozenset({B, C})),
                 False, id="ssh-host-with-the-same-device-name"),
    pytest.param(SSH, listing("/dev/sda2", frozenset({A, B})), frozenset({A, B}), SSH,
                 listing("/dev/sdb", frozenset({B})), True, id="remote-to-remote-same-fs"),
    pytest.param(SSH, listing("/dev/sda2", frozenset({A})), frozenset({A}), LOCAL, listing("/dev/sda2"),
                 False, id="pull-local-listing-has-no-uuids"),
    pytest.param(LOCAL, listing("/dev/sda2"), frozenset(), SSH, listing("/dev/sda2", frozenset({B})),
                 False, id="first-run-no-snapshot-yet"),
])
def test_same_filesystem(source_end, source, uuids, dest_end, dest, same):
    assert on_same_filesystem(source_end, source, uuids, dest_end, dest) is same


@pytest.mark.parametrize("path, fstype, expected", [
    pytest.param("/mnt/usb", "ext4", "/mnt/usb is not on a btrfs filesystem (it is on ext4): is the backup disk mounted?",
                 id="empty-mount-point-on-the-system-disk"),
    pytest.param("/mnt/usb", None, "/mnt/usb is not on a btrfs filesystem (it is on an unknown filesystem): is the backup",
                 id="no-mount-found"),
])
def test_a_destination_not_on_btrfs_asks_whether_the_disk_is_mounted(path, fstype, expected):
    message = not_mounted_hint(NotBtrfsError(path, fstype))
    assert message.startswith(expected)
    assert f"if a backup disk should be mounted at {path}, mount it" in message


def test_an_archive_store_is_listed_once_per_run():
    # Each listing opens the repository (its key derivation alone costs restic about 0.7 s): the
    # check before the snapshot and the destination's plan share one.
    from engine.host.endpoints.archive import ArchiveSettings
    from engine.host.runner import CommandResult
    from engine.run.destination_access import DestinationFolders

    class Runner:
        calls = 0

        def run(self, argv, input_text=None):
            Runner.calls += 1
            return CommandResult(argv, 0, "", "")

    class Executor:
        runner = Runner()

    store = parse_location("borg:/b", archive=ArchiveSettings(job="home", key_file="/k"))
    folders = DestinationFolders(Executor(), None, gate=True, require_destination=False)
    folders.require_a_usable_one([store])
    assert folders.listing(store).children == {} and Runner.calls == 1
