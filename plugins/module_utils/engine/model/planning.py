# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure planning: which snapshot goes to which destination with which parent, and which partial receives go first."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import collections
import posixpath

if TYPE_CHECKING:
    from typing import Iterable, Mapping, Sequence

Transfer = collections.namedtuple("Transfer", "snapshot parent")
Transfer.__doc__ = "Send `snapshot` (a source Subvolume), incremental from `parent` (or None: full)."

Conflict = collections.namedtuple("Conflict", "name reason")


class DestinationPlan:
    """What one run does at one destination, before anything is carried out."""

    def __init__(self, *, partial_receives, conflicts, transfers, present):
        self.partial_receives = partial_receives  # left by failed transfers, to delete first
        self.conflicts = conflicts      # names taken by subvolumes that are not our backups
        self.transfers = transfers      # Transfer list, oldest first
        self.present = present          # source snapshot name -> its complete backup there

    def as_dict(self) -> dict:
        return {
            "delete_partial": [s.path for s in self.partial_receives],
            "conflicts": [{"name": c.name, "reason": c.reason} for c in self.conflicts],
            "transfers": [{"snapshot": t.snapshot.name,
                           "parent": t.parent.name if t.parent else None,
                           "mode": "incremental" if t.parent else "full"}
                          for t in self.transfers],
        }


def stream_uuid(snapshot: object) -> str:
    """The uuid a stream sent from `snapshot` carries, which its backup keeps as received_uuid: a
    snapshot that was itself received (one a rebuilt source got back) passes on its received_uuid,
    any other its own uuid (btrfs send does so)."""
    return snapshot.received_uuid or snapshot.uuid


def counterpart(snapshot: object, backups: Iterable) -> object | None:
    """The complete backup of `snapshot` among `backups`, matched by UUID (rule 1), or None."""
    for backup in backups:
        if not backup.complete:
            continue
        if backup.received_uuid == snapshot.uuid:
            return backup
        if snapshot.received_uuid and backup.received_uuid == snapshot.received_uuid:
            return backup
    return None


def present_backups(snapshots: Iterable, backups: Iterable) -> dict:
    """Map each source snapshot name to its complete backup at a destination, where there is one."""
    by_received = {}
    for backup in backups:
        if backup.complete:
            by_received.setdefault(backup.received_uuid, backup)
    present = {}
    for snapshot in snapshots:
        # The same rule as counterpart(), with one dict lookup per snapshot instead of a scan.
        match = by_received.get(snapshot.uuid)
        if match is None and snapshot.received_uuid:
            match = by_received.get(snapshot.received_uuid)
        if match is not None:
            present[snapshot.name] = match
    return present


def find_partial_receives(snapshots: Iterable, backups_by_name: Mapping, locked_names: Iterable[str]) -> list:
    """Partial receives to delete: a locked name at the destination without a complete backup.

    Only a subvolume that is not complete (writable, or no received_uuid) counts as our partial;
    a complete subvolume under that name is somebody else's and is left alone. A locked name
    whose snapshot is gone from the source still identifies its partial by the lock.
    """
    by_name = {s.name: s for s in snapshots}
    partials = []
    for name in sorted(locked_names):
        found = backups_by_name.get(name)
        if found is None or found.complete:
            continue
        snapshot = by_name.get(name)
        if snapshot is not None and found.received_uuid not in (None, stream_uuid(snapshot)):
            continue  # received from something else: not a partial of ours
        partials.append(found)
    return partials


def stranded_arrivals(snapshots: Iterable, backups_by_name: Mapping, locked_names: Iterable[str] = ()) -> tuple:
    """What receives left under a snapshot's subvolume name where that is not the snapshot's name
    (snapper's are all `snapshot`; a backup is renamed once verified): ([(complete backup, the
    name to give it)], [partial receives to delete]). A partial one is ours only while a transfer
    of a locked snapshot to this destination is unfinished, and not received from anything else;
    a complete one of a snapshot the source no longer has, or whose name is taken, is left alone."""
    arrivals = {posixpath.basename(s.path) for s in snapshots} - {s.name for s in snapshots}
    by_uuid = {stream_uuid(s): s for s in snapshots}
    locked = set(locked_names)
    locked_uuids = {stream_uuid(s) for s in snapshots if s.name in locked}
    renames, partials = [], []
    for name in sorted(arrivals):
        found = backups_by_name.get(name)
        if found is None:
            continue
        if found.complete:
            snapshot = by_uuid.get(found.received_uuid)
            if snapshot is not None and snapshot.name not in backups_by_name:
                renames.append((found, snapshot.name))
        elif locked and (found.received_uuid is None or found.received_uuid in locked_uuids):
            partials.append(found)
    return renames, partials


def plan_destination(snapshots: Sequence, backups_by_name: Mapping, locked_names: Iterable[str] = (),
                     incremental: bool = True, keep_backups: int = 0, only: str | None = None) -> DestinationPlan:
    """Plan one destination.

    snapshots:       source snapshots (Subvolume), oldest first, all read-only.
    backups_by_name: the destination folder's subvolumes by name.
    locked_names:    snapshots with an unfinished transfer to this destination.
    keep_backups:    the destination keeps this many (0: all); older ones are not sent.
    only:            if given, the names that may be sent (stream sinks get just these).

    A snapshot is sent when it is newer than the newest one the destination already holds
    (older ones were deleted there on purpose or by retention); each one is sent incrementally
    from the newest older snapshot whose backup is complete there, counting those sent before it.
    """
    locked_names = set(locked_names)
    backups = list(backups_by_name.values())
    present = present_backups(snapshots, backups)
    partials = find_partial_receives(snapshots, backups_by_name, locked_names)
    partial_names = {p.name for p in partials}

    newest_present = max((i for i, s in enumerate(snapshots) if s.name in present), default=-1)
    candidates = [s for s in snapshots[newest_present + 1:] if s.name not in present]
    if keep_backups:
        allowed = {s.name for s in snapshots[-keep_backups:]}
        candidates = [s for s in candidates if s.name in allowed]
    if only is not None:
        candidates = [s for s in candidates if s.name in set(only)]

    position = {s.name: i for i, s in enumerate(snapshots)}
    conflicts, transfers = [], []
    available = [s for s in snapshots if s.name in present]
    for snapshot in candidates:
        taken = backups_by_name.get(snapshot.name)
        if taken is not None and snapshot.name not in partial_names:
            conflicts.append(Conflict(snapshot.name, describe_foreign(taken, snapshot)))
            break  # later snapshots would need this one as a parent: stop this chain here
        parent = None
        if incremental:
            older = [s for s in available if position[s.name] < position[snapshot.name]]
            parent = max(older, key=lambda s: position[s.name]) if older else None
        transfers.append(Transfer(snapshot, parent))
        available.append(snapshot)
    return DestinationPlan(partial_receives=partials, conflicts=conflicts, transfers=transfers, present=present)


def describe_foreign(subvolume: object, snapshot: object) -> str:
    """Why a subvolume that carries our snapshot's name is not our backup."""
    if not subvolume.readonly and not subvolume.received_uuid:
        return ("%s exists and is a writable subvolume without received_uuid that no unfinished "
                "transfer of ours explains; it is left alone" % subvolume.path)
    if subvolume.received_uuid and subvolume.received_uuid != snapshot.uuid:
        return ("%s exists but was received from another subvolume (received_uuid %s, "
                "snapshot uuid %s); it is left alone"
                % (subvolume.path, subvolume.received_uuid, snapshot.uuid))
    return "%s exists and is not a complete backup of this snapshot; it is left alone" % subvolume.path
