# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Per-host quotas on a backup server: the host's usage from its btrfs qgroup, and the
remaining room a receive may fill (pure), plus the capped copy that enforces it."""

from __future__ import annotations

import os

from ..model.units import format_size

CHUNK = 1 << 20


def host_qgroup(subvolume_id: int) -> str:
    """The level-1 qgroup that holds a host folder's subvolume and every backup received in it."""
    return "1/%d" % subvolume_id


def parse_qgroup_referenced(text: str, qgroup: str) -> int | None:
    """Pure: the referenced bytes of `qgroup` in `btrfs qgroup show --raw` output, or None."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == qgroup and fields[1].isdigit():
            return int(fields[1])
    return None


def room_left(used: int, quota: int, folder: str) -> int:
    """Pure: how many bytes a receive into `folder` may still bring, or ValueError saying why
    none: the host is at or over its quota."""
    if used >= quota:
        raise ValueError("over quota: %s holds %s of its %s quota; delete backups on the server "
                         "or raise the quota" % (folder, format_size(used), format_size(quota)))
    return quota - used


def copy_capped(source: int, target: int, limit: int) -> tuple[int, bool]:
    """Copy the stream from file descriptor `source` to `target` until it ends or would pass
    `limit` bytes. Returns (bytes copied, whether the limit stopped it)."""
    copied = 0
    while True:
        chunk = os.read(source, CHUNK)
        if not chunk:
            return copied, False
        if copied + len(chunk) > limit:
            return copied, True
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view):]
        copied += len(chunk)
