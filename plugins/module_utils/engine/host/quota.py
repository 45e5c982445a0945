# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Per-host quotas on a backup server: sizes, the host's usage from its btrfs qgroup, and the
remaining room a receive may fill (pure), plus the capped copy that enforces it."""

import os
import re

from ..model.errors import ConfigError

_SIZE_RE = re.compile(r"^(\d+)([KMGT]?)(i?B)?$", re.IGNORECASE)
_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
CHUNK = 1 << 20


def parse_size(text):
    """'50G', '500M', '1T', '1048576' (binary units) -> bytes; a quota must be above zero."""
    match = _SIZE_RE.match((text or "").strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError("quota %r is not a size: use a number with K, M, G or T, e.g. '50G'" % (text,))
    return int(match.group(1)) * _FACTORS[match.group(2).upper()]


def format_size(size):
    for unit in ("T", "G", "M", "K"):
        if size >= _FACTORS[unit]:
            return "%.1f %siB" % (size / _FACTORS[unit], unit)
    return "%d bytes" % size


def host_qgroup(subvolume_id):
    """The level-1 qgroup that holds a host folder's subvolume and every backup received in it."""
    return "1/%d" % subvolume_id


def parse_qgroup_referenced(text, qgroup):
    """Pure: the referenced bytes of `qgroup` in `btrfs qgroup show --raw` output, or None."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == qgroup and fields[1].isdigit():
            return int(fields[1])
    return None


def room_left(used, quota, folder):
    """Pure: how many bytes a receive into `folder` may still bring, or ValueError saying why
    none: the host is at or over its quota."""
    if used >= quota:
        raise ValueError("over quota: %s holds %s of its %s quota; delete backups on the server "
                         "or raise the quota" % (folder, format_size(used), format_size(quota)))
    return quota - used


def copy_capped(source, target, limit):
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
