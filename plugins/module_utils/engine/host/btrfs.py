# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""argv builders and pure parsers for the `btrfs` commands and /proc/self/mountinfo."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import collections
import posixpath

if TYPE_CHECKING:
    from typing import Iterable

BTRFS = "btrfs"

SubvolumeEntry = collections.namedtuple(
    "SubvolumeEntry", "id gen top_level parent_uuid received_uuid uuid path"
)
Mount = collections.namedtuple("Mount", "mount_point root fstype source")


def snapshot_argv(source: str, target: str) -> list[str]:
    return [BTRFS, "subvolume", "snapshot", "-r", source, target]


def delete_argv(paths: Iterable[str], commit: bool = False) -> list[str]:
    # -c commits at once: without it, 'btrfs subvolume sync' waits for the next commit (~30 s).
    return [BTRFS, "subvolume", "delete"] + (["-c"] if commit else []) + ["--"] + list(paths)


def set_writable_argv(path: str, force: bool = False) -> list[str]:
    # -f (btrfs-progs >= 5.14) is needed to make a received subvolume writable.
    return [BTRFS, "property", "set"] + (["-f"] if force else []) + ["-ts", path, "ro", "false"]


def set_readonly_argv(path: str) -> list[str]:
    return [BTRFS, "property", "set", "-ts", path, "ro", "true"]


def sync_argv(folder: str) -> list[str]:
    return [BTRFS, "subvolume", "sync", folder]


def send_argv(snapshot_path: str, parent_path: str | None = None, debug: bool = False, flags: Iterable[str] = (),
              no_data: bool = False) -> list[str]:
    argv = [BTRFS, "send"]
    if debug:
        argv.append("-vv")
    argv += list(flags)
    if no_data:
        # The stream's metadata only, each file's data as an offset and a length (UPDATE_EXTENT).
        argv.append("--no-data")
    if parent_path:
        argv += ["-p", parent_path]
    return argv + [snapshot_path]


def receive_argv(folder: str, debug: bool = False) -> list[str]:
    argv = [BTRFS, "receive"]
    if debug:
        argv.append("-vv")
    return argv + [folder]


def list_argv(path: str, readonly_only: bool = False) -> list[str]:
    """All subvolumes of the filesystem holding `path`, paths relative to its top level."""
    argv = [BTRFS, "subvolume", "list", "-a", "-u", "-q", "-R"]
    if readonly_only:
        argv.append("-r")
    return argv + [path]


def _uuid_or_none(value):
    return None if value in ("-", "") else value


def parse_subvolume_list(text: str) -> list[SubvolumeEntry]:
    """Parse `btrfs subvolume list -a -u -q -R` output into SubvolumeEntry tuples.

    Paths come back relative to the filesystem's top level ("<FS_TREE>/" stripped).
    """
    entries = []
    for line in text.splitlines():
        if not line.startswith("ID "):
            continue
        head, sep, path = line.partition(" path ")
        if not sep:
            raise ValueError("unexpected 'btrfs subvolume list' line: %r" % line)
        fields = head.split()
        values = {}
        # Fields come as "key value" pairs; "top level" is two words.
        i = 0
        while i < len(fields):
            key = fields[i]
            if key == "top" and i + 2 < len(fields) and fields[i + 1] == "level":
                values["top_level"] = fields[i + 2]
                i += 3
                continue
            if i + 1 >= len(fields):
                raise ValueError("unexpected 'btrfs subvolume list' line: %r" % line)
            values[key] = fields[i + 1]
            i += 2
        if path.startswith("<FS_TREE>/"):
            path = path[len("<FS_TREE>/"):]
        try:
            entries.append(SubvolumeEntry(
                id=int(values["ID"]),
                gen=int(values.get("gen", 0)),
                top_level=int(values.get("top_level", 0)),
                parent_uuid=_uuid_or_none(values.get("parent_uuid", "-")),
                received_uuid=_uuid_or_none(values.get("received_uuid", "-")),
                uuid=_uuid_or_none(values["uuid"]),
                path=path.strip("/"),
            ))
        except (KeyError, ValueError):
            raise ValueError("unexpected 'btrfs subvolume list' line: %r" % line)
    return entries


def _unescape_mountinfo(field):
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse /proc/self/mountinfo into Mount tuples (mount point, fs root, type, source)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lfields, rfields = left.split(), right.split()
        if len(lfields) < 5 or len(rfields) < 2:
            continue
        mounts.append(Mount(
            mount_point=_unescape_mountinfo(lfields[4]),
            root=_unescape_mountinfo(lfields[3]),
            fstype=rfields[0],
            source=_unescape_mountinfo(rfields[1]),
        ))
    return mounts


def mount_of(mounts: Iterable[Mount], path: str) -> Mount | None:
    """The mount that holds the absolute, resolved `path` (the last, longest match wins)."""
    best = None
    for mount in mounts:
        mp = mount.mount_point
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best.mount_point):
                best = mount
    return best


def path_in_filesystem(mount: Mount, path: str) -> str:
    """`path` (resolved, under `mount`) relative to the btrfs top level, without slashes at the ends."""
    rel = posixpath.relpath(path, mount.mount_point)
    joined = posixpath.normpath(posixpath.join(mount.root, "" if rel == "." else rel))
    return joined.strip("/")


def parse_subvolume_show(text: str) -> tuple:
    """Pure: (subvolume id, readonly, received_uuid) from `btrfs subvolume show` output (LC_ALL=C)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key not in fields:
            fields[key] = value.strip()
    if "UUID" not in fields or not fields.get("Subvolume ID", "").isdigit():
        raise ValueError("not the output of 'btrfs subvolume show'")
    readonly = "readonly" in fields.get("Flags", "").split()
    return int(fields["Subvolume ID"]), readonly, _uuid_or_none(fields.get("Received UUID", "-"))
