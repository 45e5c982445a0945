"""engine.host.btrfs: parsers for `btrfs subvolume list` and mountinfo, and the argv builders."""

import pytest

from engine.host import btrfs

# Real `btrfs subvolume list -a -u -q -R /mnt/top` output of btrfs-progs 6.2, for a filesystem
# mounted at its top level: `-a` prefixes "<FS_TREE>/" to subvolumes below another subvolume.
LIST_FROM_TOP = """\
ID 256 gen 7 top level 5 parent_uuid -                                    received_uuid -                                    uuid 21c882a4-8187-a44e-832d-9bba2d371c27 path @data
ID 257 gen 7 top level 256 parent_uuid -                                    received_uuid -                                    uuid 2dcda3db-7511-6a4c-bb5b-ac42b0975dcf path <FS_TREE>/@data/my dir/sub path x
ID 258 gen 7 top level 256 parent_uuid 21c882a4-8187-a44e-832d-9bba2d371c27 received_uuid -                                    uuid 0f8a12d7-516c-5140-a220-f623ad8b9d4f path <FS_TREE>/@data/snapshot/s1
ID 260 gen 8 top level 5 parent_uuid -                                    received_uuid 0f8a12d7-516c-5140-a220-f623ad8b9d4f uuid 7640b144-2506-434e-9757-13f7783ada2b path recv/s1
"""


def test_parse_subvolume_list_reads_every_field():
    entries = btrfs.parse_subvolume_list(LIST_FROM_TOP)
    assert entries[2] == btrfs.SubvolumeEntry(
        id=258, gen=7, top_level=256,
        parent_uuid="21c882a4-8187-a44e-832d-9bba2d371c27",
        received_uuid=None,  # "-" means: not received
        uuid="0f8a12d7-516c-5140-a220-f623ad8b9d4f",
        path="@data/snapshot/s1",  # "<FS_TREE>/" stripped
    )
    assert entries[3].received_uuid == "0f8a12d7-516c-5140-a220-f623ad8b9d4f"
    assert entries[3].parent_uuid is None


@pytest.mark.parametrize("line, path", [
    pytest.param("ID 257 gen 7 top level 256 parent_uuid 33bf7896-56dd-5349-966e-73b4a77cb4e0 "
                 "received_uuid -                                    "
                 "uuid c9950c74-c368-4b42-af5a-8d2b0efcf976 path @data/snapshot/s1",
                 "@data/snapshot/s1", id="plain"),
    pytest.param("ID 256 gen 7 top level 5 parent_uuid - received_uuid - "
                 "uuid 21c882a4-8187-a44e-832d-9bba2d371c27 path <FS_TREE>/@data",
                 "@data", id="fs-tree-prefix"),
    pytest.param("ID 257 gen 7 top level 256 parent_uuid - received_uuid - "
                 "uuid 2dcda3db-7511-6a4c-bb5b-ac42b0975dcf path <FS_TREE>/@data/my dir/sub path x",
                 "@data/my dir/sub path x", id="spaces-and-the-word-path-in-path"),
    pytest.param("ID 300 gen 9 top level 5 parent_uuid - received_uuid - "
                 "uuid 2dcda3db-7511-6a4c-bb5b-ac42b0975dcf path   two  spaces ",
                 "  two  spaces ", id="leading-and-trailing-spaces-kept"),
])
def test_parse_subvolume_list_paths(line, path):
    (entry,) = btrfs.parse_subvolume_list(line + "\n")
    assert entry.path == path


def test_parse_subvolume_list_ignores_blank_and_empty_output():
    assert btrfs.parse_subvolume_list("") == []
    assert btrfs.parse_subvolume_list("\n\n") == []


@pytest.mark.parametrize("line", [
    pytest.param("ID 257 gen 7 top level 5 parent_uuid - received_uuid - uuid abc", id="no-path"),
    pytest.param("ID abc gen 7 top level 5 parent_uuid - received_uuid - uuid u path x",
                 id="id-not-a-number"),
    pytest.param("ID 257 gen 7 top level 5 parent_uuid - received_uuid - path x", id="no-uuid"),
    pytest.param("ID 257 gen 7 top level 5 parent_uuid - received_uuid - uuid path x",
                 id="uuid-without-value"),
    pytest.param("ID 257 gen seven top level 5 parent_uuid - received_uuid - uuid u path x",
                 id="gen-not-a-number"),
])
def test_parse_subvolume_list_rejects_malformed_lines(line):
    with pytest.raises(ValueError) as err:
        btrfs.parse_subvolume_list(LIST_FROM_TOP + line + "\n")
    assert "unexpected 'btrfs subvolume list' line" in str(err.value)


# /proc/self/mountinfo: root filesystem, a btrfs top level, a `subvol=/@data` mount and a path
# with a space (written as \040 by the kernel).
MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
43 27 0:39 / /mnt/a rw,relatime shared:30 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=5,subvol=/
44 27 0:39 /@data /srv/data rw,relatime shared:31 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=256,subvol=/@data
45 27 0:40 /my\\040vol /mnt/my\\040disk rw,relatime - btrfs /dev/mapper/crypt\\040x rw,subvolid=257,subvol=/my\\040vol
46 27 0:41 / /mnt/ab rw,relatime - tmpfs tmpfs rw
"""


def test_parse_mountinfo_fields_and_octal_escapes():
    mounts = btrfs.parse_mountinfo(MOUNTINFO)
    assert mounts[0] == btrfs.Mount("/", "/", "ext4", "/dev/vda1")
    assert mounts[2] == btrfs.Mount("/srv/data", "/@data", "btrfs", "/dev/loop0")
    # \040 is a space in mount point, root and source.
    assert mounts[3] == btrfs.Mount("/mnt/my disk", "/my vol", "btrfs", "/dev/mapper/crypt x")
    assert len(mounts) == 5


def test_parse_mountinfo_skips_lines_without_separator():
    assert btrfs.parse_mountinfo("garbage line\n\n") == []


@pytest.mark.parametrize("path, mount_point", [
    pytest.param("/mnt/a", "/mnt/a", id="the-mount-point-itself"),
    pytest.param("/mnt/a/snapshot/s1", "/mnt/a", id="below-a-mount"),
    pytest.param("/mnt/ab/x", "/mnt/ab", id="no-false-prefix-match-a-vs-ab"),
    pytest.param("/mnt/abc", "/", id="prefix-of-name-is-not-a-parent"),
    pytest.param("/home/user", "/", id="falls-back-to-root"),
    pytest.param("/srv/data/snapshot", "/srv/data", id="subvol-mount"),
    pytest.param("/mnt/my disk/x", "/mnt/my disk", id="space-in-mount-point"),
])
def test_mount_of_picks_longest_matching_mount(path, mount_point):
    assert btrfs.mount_of(btrfs.parse_mountinfo(MOUNTINFO), path).mount_point == mount_point


def test_mount_of_later_mount_on_same_point_wins():
    # A mount over an existing mount point hides the one below it.
    text = MOUNTINFO + "50 43 0:50 / /mnt/a rw - tmpfs tmpfs rw\n"
    assert btrfs.mount_of(btrfs.parse_mountinfo(text), "/mnt/a/x").fstype == "tmpfs"


def test_mount_of_without_any_match_is_none():
    mounts = [btrfs.Mount("/mnt/a", "/", "btrfs", "/dev/loop0")]
    assert btrfs.mount_of(mounts, "/srv/x") is None


@pytest.mark.parametrize("mount, path, expected", [
    pytest.param(btrfs.Mount("/mnt/a", "/", "btrfs", "d"), "/mnt/a", "", id="top-level-itself"),
    pytest.param(btrfs.Mount("/mnt/a", "/", "btrfs", "d"), "/mnt/a/@data/snapshot",
                 "@data/snapshot", id="below-top-level"),
    pytest.param(btrfs.Mount("/srv/data", "/@data", "btrfs", "d"), "/srv/data", "@data",
                 id="subvol-mount-itself"),
    pytest.param(btrfs.Mount("/srv/data", "/@data", "btrfs", "d"), "/srv/data/snapshot",
                 "@data/snapshot", id="below-subvol-mount"),
    pytest.param(btrfs.Mount("/", "/@", "btrfs", "d"), "/home/snap", "@/home/snap",
                 id="root-filesystem-on-subvol"),
])
def test_path_in_filesystem(mount, path, expected):
    assert btrfs.path_in_filesystem(mount, path) == expected


@pytest.mark.parametrize("argv, expected", [
    pytest.param(btrfs.send_argv("/src/snapshot/s2"), ["btrfs", "send", "/src/snapshot/s2"],
                 id="send-full"),
    pytest.param(btrfs.send_argv("/src/snapshot/s2", "/src/snapshot/s1"),
                 ["btrfs", "send", "-p", "/src/snapshot/s1", "/src/snapshot/s2"],
                 id="send-incremental"),
    pytest.param(btrfs.send_argv("/s/s2", "/s/s1", debug=True),
                 ["btrfs", "send", "-vv", "-p", "/s/s1", "/s/s2"], id="send-debug"),
    pytest.param(btrfs.send_argv("/s/s2", "/s/s1", no_data=True),
                 ["btrfs", "send", "--no-data", "-p", "/s/s1", "/s/s2"], id="send-no-data"),
    pytest.param(btrfs.receive_argv("/backup"), ["btrfs", "receive", "/backup"], id="receive"),
    pytest.param(btrfs.receive_argv("/backup", debug=True), ["btrfs", "receive", "-vv", "/backup"],
                 id="receive-debug"),
    # "--" so that a name starting with "-" can never be read as an option.
    pytest.param(btrfs.delete_argv(["/b/s1", "/b/-s2"]),
                 ["btrfs", "subvolume", "delete", "--", "/b/s1", "/b/-s2"], id="delete"),
    pytest.param(btrfs.list_argv("/b"), ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", "/b"],
                 id="list"),
    pytest.param(btrfs.list_argv("/b", readonly_only=True),
                 ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", "-r", "/b"],
                 id="list-readonly"),
    pytest.param(btrfs.snapshot_argv("/home", "/home/snapshot/s1"),
                 ["btrfs", "subvolume", "snapshot", "-r", "/home", "/home/snapshot/s1"],
                 id="snapshot-read-only"),
])
def test_argv_builders(argv, expected):
    assert argv == expected
