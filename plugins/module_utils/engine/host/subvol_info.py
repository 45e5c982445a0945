# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Subvolume facts for local paths straight from the kernel (BTRFS_IOC_GET_SUBVOL_INFO, Linux >= 4.18):
one open and one ioctl per subvolume, no process, no privileges needed."""

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
    text = bytes(raw).hex()
    return "%s-%s-%s-%s-%s" % (text[:8], text[8:12], text[12:16], text[16:20], text[20:])


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
