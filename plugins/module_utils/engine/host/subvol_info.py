# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Subvolume facts for local paths straight from the kernel, no process: one subvolume by
BTRFS_IOC_GET_SUBVOL_INFO (Linux >= 4.18, no privileges), a whole folder's by a few tree searches
(BTRFS_IOC_TREE_SEARCH_V2, root only)."""

from __future__ import annotations

import fcntl
import os
import struct

# struct btrfs_ioctl_get_subvol_info_args (linux/btrfs.h): 504 bytes; _IOR(0x94, 60, ...).
_ARGS_SIZE = 504
_GET_SUBVOL_INFO = (2 << 30) | (_ARGS_SIZE << 16) | (0x94 << 8) | 60
_ROOT_SUBVOL_RDONLY = 1  # BTRFS_ROOT_SUBVOL_RDONLY in the root item's flags
_EMPTY_UUID = bytes(16)
SUBVOLUME_ROOT_INODE = 256  # every subvolume's top directory has this inode number


def _uuid(raw):
    """The 16 bytes in the usual 8-4-4-4-12 form (as uuid.UUID prints them, without its import cost)."""
    if raw == _EMPTY_UUID:
        return None
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _get_subvol_info(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        args = bytearray(_ARGS_SIZE)
        fcntl.ioctl(fd, _GET_SUBVOL_INFO, args, True)
    finally:
        os.close(fd)
    return args


def _facts(args):
    tree_id, = struct.unpack_from("<Q", args, 0)
    flags, = struct.unpack_from("<Q", args, 288)
    return (tree_id, _uuid(args[296:312]), _uuid(args[312:328]), _uuid(args[328:344]),
            bool(flags & _ROOT_SUBVOL_RDONLY))


def subvolume_info(path: str) -> tuple:
    """(id, uuid, parent_uuid, received_uuid, readonly) of the subvolume at `path`; OSError if
    the kernel cannot tell (not btrfs, too old a kernel)."""
    return _facts(_get_subvol_info(path))


# The root item's times, each a struct btrfs_ioctl_timespec {u64 sec; u32 nsec;} padded to 16
# bytes (checked against `btrfs subvolume show`): otime is "Creation time", rtime "Receive time".
_OTIME_OFFSET = 392  # stime, the stream's send time, is at 408
_RTIME_OFFSET = 424


def _seconds(args, offset):
    sec, nsec = struct.unpack_from("<QI", args, offset)
    return sec + nsec / 1e9 if sec else None


def received_time_of(args: bytes) -> float | None:
    """Pure: when this machine's kernel received the subvolume (rtime, set when `btrfs receive`
    finishes; a stream cannot set it), else when it was created here (otime), in epoch seconds.
    The stream's own send time (stime) is never used: the sender chooses it."""
    return _seconds(args, _RTIME_OFFSET) or _seconds(args, _OTIME_OFFSET)


def subvolume_facts(path: str) -> tuple:
    """subvolume_info's five facts plus the received time (received_time_of), from one ioctl."""
    args = _get_subvol_info(path)
    return _facts(args) + (received_time_of(args),)


# struct btrfs_ioctl_fs_info_args: 1024 bytes, the filesystem's UUID at offset 16; _IOR(0x94, 31, ...).
_FS_INFO_SIZE = 1024
_FS_INFO = (2 << 30) | (_FS_INFO_SIZE << 16) | (0x94 << 8) | 31


def filesystem_uuid(path: str) -> str:
    """The UUID of the btrfs filesystem that holds `path` (as blkid and findmnt show it); OSError
    if it is not on btrfs. Needs no privileges."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        args = bytearray(_FS_INFO_SIZE)
        fcntl.ioctl(fd, _FS_INFO, args, True)
    finally:
        os.close(fd)
    return _uuid(args[16:32])


def is_subvolume_root(path: str) -> bool:
    try:
        return os.lstat(path).st_ino == SUBVOLUME_ROOT_INODE
    except OSError:
        return False


# BTRFS_IOC_TREE_SEARCH_V2: _IOWR(0x94, 17, struct btrfs_ioctl_search_args_v2), a 104-byte search
# key and the buffer's size ahead of the buffer. Each item found is a 32-byte header and its data.
_SEARCH_KEY = struct.Struct("<7Q4I4Q")
_SEARCH_HEADER = struct.Struct("<3Q2I")
_SEARCH_ARGS_SIZE = 112
_TREE_SEARCH_V2 = (3 << 30) | (_SEARCH_ARGS_SIZE << 16) | (0x94 << 8) | 17
_SEARCH_BUFFER = 256 * 1024
_ITEMS_PER_SEARCH = 4096
_ROOM_FOR_ANY_ITEM = _SEARCH_HEADER.size + 64 * 1024  # an item fits in a tree node (64 KiB at most)
_ROOT_TREE = 1
_ROOT_ITEM, _ROOT_REF = 132, 156
_MAX_U64 = (1 << 64) - 1
# struct btrfs_root_item (packed, 439 bytes since Linux 3.6), from its flags (at byte 208) on:
# flags, the uuid, parent and received uuids (at 247), otime (339) and rtime (363) as (sec, nsec).
_ROOT_ITEM_SIZE = 439
_ROOT_ITEM_FACTS = struct.Struct("<Q31x16s16s16s44xQI12xQI")
_ITEM_FLAGS = 208


def _search_root_tree(fd, first, last, only_type=None):
    """(objectid, type, offset, data) of every root tree item with a key from `first` to `last`
    ((objectid, type, offset) triples, compared as btrfs compares keys); `only_type`: just the
    items of that type (a range of objectids holds every type of each)."""
    low = first
    while True:
        args = bytearray(_SEARCH_ARGS_SIZE + _SEARCH_BUFFER)
        view = memoryview(args)  # items are handed out as views: no copy of each
        _SEARCH_KEY.pack_into(args, 0, _ROOT_TREE, low[0], last[0], low[2], last[2], 0, _MAX_U64,
                              low[1], last[1], _ITEMS_PER_SEARCH, 0, 0, 0, 0, 0)
        struct.pack_into("<Q", args, 104, _SEARCH_BUFFER)
        fcntl.ioctl(fd, _TREE_SEARCH_V2, args, True)
        found, = struct.unpack_from("<I", args, 64)
        if not found:
            return
        pos = _SEARCH_ARGS_SIZE
        for _item in range(found):
            _transid, objectid, offset, item_type, length = _SEARCH_HEADER.unpack_from(args, pos)
            pos += _SEARCH_HEADER.size
            if only_type is None or item_type == only_type:
                yield objectid, item_type, offset, view[pos:pos + length]
            pos += length
        if found < _ITEMS_PER_SEARCH and _SEARCH_ARGS_SIZE + _SEARCH_BUFFER - pos >= _ROOM_FOR_ANY_ITEM:
            return  # it stops short of the count only when the next item does not fit: the range is done
        # The buffer held only part of the range: go on after the last key it held.
        if offset < _MAX_U64:
            low = (objectid, item_type, offset + 1)
        elif item_type < 255:
            low = (objectid, item_type + 1, 0)
        elif objectid < last[0]:
            low = (objectid + 1, 0, 0)
        else:
            return


def _root_item_facts(tree_id, item):
    if len(item) < _ROOT_ITEM_SIZE:
        raise OSError("a root item without uuids (a filesystem made before Linux 3.6)")
    flags, uuid, parent_uuid, received_uuid, osec, onsec, rsec, rnsec = _ROOT_ITEM_FACTS.unpack_from(item, _ITEM_FLAGS)
    received = rsec + rnsec / 1e9 if rsec else (osec + onsec / 1e9 if osec else None)
    return (tree_id, _uuid(uuid), _uuid(parent_uuid), _uuid(received_uuid), bool(flags & _ROOT_SUBVOL_RDONLY), received)


def folder_subvolume_facts(folder: str) -> dict:
    """{name: subvolume_facts(folder/name)} for every subvolume directly inside `folder`, from the
    kernel's root tree in a few searches instead of an open and an ioctl per subvolume (a folder
    may hold hundreds). PermissionError unless root (CAP_SYS_ADMIN); OSError if the kernel cannot
    tell. The references say which subvolumes sit in the folder (the directory's inode in its
    subvolume), the root items give their facts."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        args = bytearray(_ARGS_SIZE)
        fcntl.ioctl(fd, _GET_SUBVOL_INFO, args, True)
        holder, = struct.unpack_from("<Q", args, 0)
        directory = os.fstat(fd).st_ino
        names = {}
        # struct btrfs_root_ref: dirid u64, sequence u64, name_len u16, then the name.
        for _parent, _type, child, ref in _search_root_tree(fd, (holder, _ROOT_REF, 0), (holder, _ROOT_REF, _MAX_U64)):
            dirid, _sequence, name_length = struct.unpack_from("<QQH", ref, 0)
            if dirid == directory:
                names[child] = bytes(ref[18:18 + name_length]).decode("utf-8", "surrogateescape")
        facts = {}
        if names:
            for tree_id, _type, _offset, item in _search_root_tree(
                    fd, (min(names), _ROOT_ITEM, 0), (max(names), _ROOT_ITEM, _MAX_U64), _ROOT_ITEM):
                if tree_id in names:
                    facts[names[tree_id]] = _root_item_facts(tree_id, item)
        if len(facts) != len(names):
            raise OSError("a subvolume in %s has no root item (deleted meanwhile)" % folder)
        return facts
    finally:
        os.close(fd)
