"""engine.run.source_side at another host: one remote command answers all a run must know before
its snapshot, also on the first run, when the snapshot folder does not exist yet."""

import pytest

from engine.host.endpoints.ssh import SshEndpoint
from engine.host.runner import CommandResult
from engine.model.errors import EndpointError
from engine.run.source_side import SourceSide

SOURCE = "/srv/data"
FOLDER = "/srv/data/snapshot"
MOUNTINFO = ("22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
             "44 22 0:39 /@data /srv/data rw,relatime shared:31 - btrfs /dev/loop0 rw,subvolid=256,subvol=/@data\n")
U_DATA = "21c882a4-8187-a44e-832d-9bba2d371c27"
U_OTHER = "7640b144-2506-434e-9757-13f7783ada2b"
# `btrfs subvolume list -a -u -q -R` of the filesystem: the source and another subvolume.
ALL = (f"ID 256 gen 10 top level 5 parent_uuid {'-':36} received_uuid {'-':36} uuid {U_DATA} path @data\n"
       f"ID 262 gen 10 top level 5 parent_uuid {'-':36} received_uuid {'-':36} uuid {U_OTHER} path backup\n")
READONLY = ""


class OneHost(SshEndpoint):
    """An ssh source whose batches are answered from `answers` (readlink targets that exist)."""

    def __init__(self, exists):
        super().__init__("nas", SOURCE)
        self.exists = exists
        self.batches = []

    def run_batch(self, runner, commands):
        self.batches.append([argv for argv, _privileged in commands])
        return [self._answer(argv) for argv, _privileged in commands]

    def _answer(self, argv):
        if argv[0] == "readlink":
            return CommandResult(argv, 0 if argv[-1] in self.exists else 1, argv[-1] + "\n", "")
        if argv[:1] == ["cat"] and argv[1] == "/proc/self/mountinfo":
            return CommandResult(argv, 0, MOUNTINFO, "")
        if argv[:3] == ["btrfs", "subvolume", "list"]:
            return CommandResult(argv, 0, READONLY if "-r" in argv else ALL, "")
        if argv[:2] == ["test", "-e"]:
            return CommandResult(argv, 1, "", "")
        return CommandResult(argv, 0, "btrfs-progs v6.2\n" if argv[0] == "btrfs" else "", "")


def side(endpoint):
    return SourceSide(endpoint, None, SourceSide.of("ssh://nas" + SOURCE, None).identity)


def test_btrfs_lists_the_sources_filesystem_so_a_missing_folder_still_answers():
    host = OneHost(exists={SOURCE})
    source = side(host)
    assert source.list() is None  # the first run: the folder does not exist yet
    assert len(host.batches) == 1, host.batches  # the source's own checks came with it
    listed = [argv[-1] for argv in host.batches[0] if argv[:3] == ["btrfs", "subvolume", "list"]]
    assert listed == [SOURCE, SOURCE]
    assert source.filesystem.filesystem == "/dev/loop0" and source.tools is not None
    created = source.created_folder_listing()
    assert created.children == {} and created.uuids == {U_DATA, U_OTHER}


def test_a_missing_source_is_said_after_one_batch():
    host = OneHost(exists=set())
    with pytest.raises(EndpointError, match="does not exist"):
        side(host).list()
    assert len(host.batches) == 1


def test_the_snapshot_folder_is_made_by_the_snapshots_own_command():
    host = OneHost(exists={SOURCE})
    step = side(host).create_folder_step()
    assert step.path == FOLDER and host.folder_to_create == FOLDER


TAKEN = (f"ID 263 gen 11 top level 256 parent_uuid {U_DATA} received_uuid {'-':36} "
         "uuid 5b0e9c59-1f7f-4a4e-8f4e-0c6d2a1b9e01 path <FS_TREE>/@data/snapshot/20261205-120000\n")


class SnapshotHost(OneHost):
    """The source host after its survey: its snapshot and listing batch; `mkdir_fails` refuses the folder."""

    def __init__(self, mkdir_fails=False):
        super().__init__(exists={SOURCE, FOLDER})
        self.mkdir_fails = mkdir_fails

    def _answer(self, argv):
        if argv[0] == "mkdir" and self.mkdir_fails:
            return CommandResult(argv, 1, "", "mkdir: cannot create directory '%s': Read-only file system\n" % FOLDER)
        if argv[:3] == ["btrfs", "subvolume", "list"]:  # the new snapshot, read-only
            return CommandResult(argv, 0, (ALL if "-r" not in argv else "") + TAKEN, "")
        return super()._answer(argv)


@pytest.mark.parametrize("mkdir_fails", [False, True], ids=["made", "refused"])
def test_the_snapshots_command_makes_the_folder_first(mkdir_fails):
    from engine.host import effects  # noqa: PLC0415
    from engine.model.errors import BackupError  # noqa: PLC0415
    host = SnapshotHost(mkdir_fails)
    host.create_in_next_command(FOLDER)
    try:
        taken = effects.take_snapshot(host, None, SOURCE, FOLDER + "/20261205-120000")
        assert not mkdir_fails and taken.readonly
    except BackupError as err:
        assert mkdir_fails and str(err) == ("cannot create folder %s: mkdir: cannot create directory '%s': "
                                            "Read-only file system" % (FOLDER, FOLDER))
    assert [argv[0] for argv in host.batches[0][:2]] == ["mkdir", "btrfs"]
    assert host.batches[0][0] == ["mkdir", "-p", "--", FOLDER]
    assert host.folder_to_create is None  # made (or tried) once: the next command does not again
