# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: what an ssh host's backup folder held after the job's last run there, as the job's state
keeps it, so that the next run plans on it and sends at once while the host is surveyed.

An entry holds the folder's subvolumes (every field planning and retention read), the host's
tools (zstd, send protocol 2) and the folder's filesystem as `stat -f` names it: the receive's
own command refuses to run where the folder is on another filesystem (a backup disk that is no
longer mounted), so a stream planned on an old entry never lands somewhere else (rule 8)."""

from __future__ import annotations

import posixpath

#: The fields of a subvolume an entry keeps, in host/listing.py Subvolume's order.
FIELDS = ("name", "path", "id", "uuid", "parent_uuid", "received_uuid", "readonly")

_HEX = frozenset("0123456789abcdef")  # checked without a pattern: none to compile on every run's record


def is_filesystem_id(text) -> bool:
    """Whether `text` is a filesystem id as `stat -f -c %i` prints it (1 to 32 hex digits)."""
    return isinstance(text, str) and 0 < len(text) <= 32 and _HEX.issuperset(text)


def forecast_entry(children, filesystem: str, zstd: bool, proto2: bool) -> dict:
    """A folder's listing (name -> Subvolume) and its host's facts as the job's state keeps them (JSON)."""
    return {"filesystem": filesystem, "zstd": bool(zstd), "proto2": bool(proto2),
            "subvolumes": {name: {"path": sub.path, "id": sub.id, "uuid": sub.uuid, "parent_uuid": sub.parent_uuid,
                                  "received_uuid": sub.received_uuid, "readonly": bool(sub.readonly)}
                           for name, sub in children.items()}}


def read_entry(entry, folder: str) -> dict | None:
    """The facts an entry of the folder `folder` stands for: {"filesystem", "zstd", "proto2",
    "subvolumes": [field dicts, FIELDS]}; None when it is not one (a damaged or foreign state:
    then there is no forecast, and the run surveys first). Each subvolume must lie directly in
    `folder`, under its own name: retention deletes by that path."""
    if not isinstance(entry, dict) or not is_filesystem_id(entry.get("filesystem")) \
            or not isinstance(entry.get("zstd"), bool) or not isinstance(entry.get("proto2"), bool) \
            or not isinstance(entry.get("subvolumes"), dict):
        return None
    subvolumes = []
    for name, item in sorted(entry["subvolumes"].items()):
        if not _is_child_name(name) or not isinstance(item, dict) or item.get("path") != posixpath.join(folder, name):
            return None
        if not isinstance(item.get("id"), int) or isinstance(item.get("id"), bool) or not is_uuid(item.get("uuid")) \
                or not isinstance(item.get("readonly"), bool):
            return None
        if any(item.get(key) is not None and not is_uuid(item.get(key)) for key in ("parent_uuid", "received_uuid")):
            return None
        subvolumes.append(dict({key: item.get(key) for key in FIELDS[1:]}, name=name))
    return {"filesystem": entry["filesystem"], "zstd": entry["zstd"], "proto2": entry["proto2"],
            "subvolumes": subvolumes}


def holdings(children, leave_out=()) -> dict:
    """All that planning and retention read of a folder's listing (name -> Subvolume), less the
    names in `leave_out` (what this run sent there: a listing taken meanwhile may show it or not)."""
    return {name: (sub.path, sub.uuid, sub.received_uuid, bool(sub.readonly))
            for name, sub in children.items() if name not in leave_out}


def _is_child_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def is_uuid(value) -> bool:
    """Whether `value` is a UUID as btrfs prints it (lower-case hex, 8-4-4-4-12)."""
    return isinstance(value, str) and [len(part) for part in value.split("-")] == [8, 4, 4, 4, 12] \
        and _HEX.issuperset(value.replace("-", ""))
