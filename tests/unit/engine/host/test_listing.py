"""engine.host.listing.build_listing: one listing round's command results -> the folder's subvolumes."""

import pytest

from engine.model.errors import EndpointError, MissingPathError
from engine.host.listing import Subvolume, build_listing, listing_commands
from engine.host.runner import CommandResult

U_DATA = "21c882a4-8187-a44e-832d-9bba2d371c27"
U_S1 = "0f8a12d7-516c-5140-a220-f623ad8b9d4f"
U_S2 = "5b0e9c59-1f7f-4a4e-8f4e-0c6d2a1b9e01"
U_PARTIAL = "9d2c6b0e-3c4f-4e0e-9a55-2a7c8f1e6d12"
U_NESTED = "3ee20cf4-8f95-204d-b8cd-152b5d44d357"
U_RECV = "7640b144-2506-434e-9757-13f7783ada2b"

MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
43 22 0:39 / /mnt/pool rw,relatime shared:30 - btrfs /dev/loop0 rw,subvolid=5,subvol=/
44 22 0:39 /@data /srv/data rw,relatime shared:31 - btrfs /dev/loop0 rw,subvolid=256,subvol=/@data
45 22 0:40 / /mnt/other rw,relatime shared:32 - btrfs /dev/loop1 rw,subvolid=5,subvol=/
"""


def _line(sub_id, top, uuid, path, parent="-", received="-"):
    # btrfs-progs 6.2 pads "-" to the width of a uuid.
    return ("ID %d gen 10 top level %d parent_uuid %-36s received_uuid %-36s uuid %s path %s\n"
            % (sub_id, top, parent, received, uuid, path))


# The whole filesystem as `btrfs subvolume list -a -u -q -R` shows it from the top level.
ALL = "".join([
    _line(256, 5, U_DATA, "@data"),
    _line(258, 256, U_S1, "<FS_TREE>/@data/snapshot/s1", parent=U_DATA),
    _line(259, 256, U_S2, "<FS_TREE>/@data/snapshot/s2", parent=U_DATA),
    _line(260, 256, U_PARTIAL, "<FS_TREE>/@data/snapshot/partial"),
    _line(261, 259, U_NESTED, "<FS_TREE>/@data/snapshot/s2/nested"),       # grandchild
    _line(262, 5, U_RECV, "backup/s1", received=U_S1),                    # another folder
    _line(263, 256, "6a0e1e5c-0000-4000-8000-000000000001", "<FS_TREE>/@data/snapshots/s9"),
])
READONLY = "".join([
    _line(258, 256, U_S1, "<FS_TREE>/@data/snapshot/s1", parent=U_DATA),
    _line(259, 256, U_S2, "<FS_TREE>/@data/snapshot/s2", parent=U_DATA),
    _line(262, 5, U_RECV, "backup/s1", received=U_S1),
])


def _ok(stdout=""):
    return CommandResult(["x"], 0, stdout, "")


def _fail(returncode=1, stderr=""):
    return CommandResult(["x"], returncode, "", stderr)


def _results(resolved, mountinfo=MOUNTINFO, all_list=ALL, readonly=READONLY):
    """Results in the order listing_commands() runs them: readlinks, mountinfo, list, list -r."""
    readlinks = [_ok(path + "\n") if path else _fail() for path in resolved]
    return readlinks + [_ok(mountinfo), _ok(all_list) if isinstance(all_list, str) else all_list,
                        _ok(readonly)]


def test_listing_commands_order_matches_what_build_listing_expects():
    commands = [argv for argv, _ in listing_commands("/b", ["/src"])]
    assert commands == [
        ["readlink", "-e", "--", "/b"],
        ["readlink", "-e", "--", "/src"],
        ["cat", "/proc/self/mountinfo"],
        ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", "/b"],
        ["btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", "-r", "/b"],
    ]


def test_a_listing_round_can_list_the_filesystem_through_another_path():
    """A snapshot folder's filesystem is its source's: listed through the source, it answers also
    where the folder does not exist yet."""
    commands = [argv for argv, _ in listing_commands("/src/snapshot", ["/src"], listed="/src")]
    assert commands[:3] == [["readlink", "-e", "--", "/src/snapshot"], ["readlink", "-e", "--", "/src"],
                            ["cat", "/proc/self/mountinfo"]]
    assert [argv[-1] for argv in commands[3:]] == ["/src", "/src"]


@pytest.mark.parametrize("folder", [
    pytest.param("/mnt/pool/@data/snapshot", id="top-level-mount"),
    pytest.param("/srv/data/snapshot", id="subvol-at-data-mount"),
])
def test_children_are_the_folders_direct_subvolumes(folder):
    listing = build_listing(folder, [], _results([folder]))
    # Not the grandchild s2/nested, not backup/s1, not the look-alike folder "snapshots".
    assert sorted(listing.children) == ["partial", "s1", "s2"]
    assert listing.children["s1"] == Subvolume(
        name="s1", path=folder + "/s1", id=258, uuid=U_S1, parent_uuid=U_DATA,
        received_uuid=None, readonly=True)


def test_readonly_flag_comes_from_the_readonly_list():
    listing = build_listing("/mnt/pool/@data/snapshot", [], _results(["/mnt/pool/@data/snapshot"]))
    assert {n: s.readonly for n, s in listing.children.items()} == {
        "s1": True, "s2": True, "partial": False}


def test_folder_given_through_a_symlink_keeps_the_given_path():
    # readlink resolves the folder; children keep the path the user gave.
    listing = build_listing("/backup", [], _results(["/mnt/pool/backup"]))
    backup = listing.children["s1"]
    assert backup.path == "/backup/s1"
    assert backup.received_uuid == U_S1


@pytest.mark.parametrize("readonly, received_uuid, complete", [
    pytest.param(True, U_S1, True, id="read-only-received"),
    pytest.param(False, U_S1, False, id="writable-received-unfinished"),
    pytest.param(True, None, False, id="read-only-not-received"),
    pytest.param(False, None, False, id="writable-partial"),
])
def test_complete_means_read_only_with_received_uuid(readonly, received_uuid, complete):
    sub = Subvolume("s1", "/b/s1", 300, "u", None, received_uuid, readonly)
    assert sub.complete is complete


@pytest.mark.parametrize("source, is_subvolume", [
    pytest.param("/mnt/pool/@data", True, id="subvolume"),
    pytest.param("/mnt/pool", True, id="top-level-is-a-subvolume"),
    pytest.param("/srv/data", True, id="subvol-mount-point"),
    pytest.param("/mnt/pool/@data/snapshot", False, id="plain-directory"),
])
def test_is_subvolume_for_the_source_path(source, is_subvolume):
    folder = "/mnt/pool/@data/snapshot"
    listing = build_listing(folder, [source], _results([folder, source]))
    assert listing.is_subvolume(source) is is_subvolume


def test_missing_folder_names_the_path():
    with pytest.raises(MissingPathError) as err:
        build_listing("/mnt/pool/nope", ["/mnt/pool/@data"], _results([None, "/mnt/pool/@data"]))
    assert err.value.paths == ["/mnt/pool/nope"]
    assert str(err.value) == "/mnt/pool/nope does not exist"


def test_missing_folder_and_source_both_named():
    with pytest.raises(MissingPathError) as err:
        build_listing("/x/snapshot", ["/x"], _results([None, None]))
    assert err.value.paths == ["/x/snapshot", "/x"]


def test_non_btrfs_mount_is_refused():
    with pytest.raises(EndpointError) as err:
        build_listing("/home/backup", [], _results(["/home/backup"]))
    assert "/home/backup is not on a btrfs filesystem" in str(err.value)
    assert "ext4" in str(err.value)


def test_folder_and_source_on_different_filesystems_are_refused():
    with pytest.raises(EndpointError) as err:
        build_listing("/mnt/other/snapshot", ["/mnt/pool/@data"],
                      _results(["/mnt/other/snapshot", "/mnt/pool/@data"]))
    assert "same btrfs filesystem" in str(err.value)


def test_failed_btrfs_list_reports_its_stderr():
    failed = _fail(1, "ERROR: can't perform the search: Operation not permitted\n")
    with pytest.raises(EndpointError) as err:
        build_listing("/mnt/pool/backup", [], _results(["/mnt/pool/backup"], all_list=failed))
    assert "cannot list subvolumes of /mnt/pool/backup" in str(err.value)
    assert "Operation not permitted" in str(err.value)


def test_unparsable_btrfs_list_is_an_endpoint_error():
    with pytest.raises(EndpointError) as err:
        build_listing("/mnt/pool/backup", [],
                      _results(["/mnt/pool/backup"], all_list="ID 5 gen oops path x\n"))
    assert "unexpected 'btrfs subvolume list' line" in str(err.value)


@pytest.mark.parametrize("raw, text", [
    (bytes(16), None),  # the kernel's "no uuid" (no parent, never received)
    (bytes.fromhex("21c882a48187a44e832d9bba2d371c27"), U_DATA),
    (bytes.fromhex("ffffffffffffffffffffffffffffffff"), "ffffffff-ffff-ffff-ffff-ffffffffffff"),
    (bytearray.fromhex("00000000000000000000000000000001"), "00000000-0000-0000-0000-000000000001"),
])
def test_kernel_uuids_read_as_btrfs_prints_them(raw, text):
    from engine.host.subvol_info import _uuid
    assert _uuid(raw) == text
