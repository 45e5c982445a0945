# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The one executor: carries out typed steps in order, or in check mode only records them."""

from __future__ import annotations

import logging
import posixpath

from ..host import effects
from ..model.errors import BackupError, TransferError
from ..host.listing import list_folder
from ..model.steps import (ClearLocks, CreateFolder, Delete, DeletePartialReceives, Receive, RemoveLocks, Rename, Send,
                           SnapshotAt, TakeSnapshot, WriteLocks, render)
from ..host.capabilities import EndToolsProbe
from ..host.streams import StreamOptions
from .transfer import is_partial_receive_of, planned_backup, receive_backup, send_stream, verify_received

LOG = logging.getLogger("btrfs_backup")


class EffectOptions:
    """How effects are carried out: -w and -s for deletions, pv for sends, and the stream's
    settings (streams.StreamOptions: compression, rate limit, buffer, send protocol, -vv)."""

    __slots__ = ("convert_rw", "sync", "progress", "stream")

    def __init__(self, *, convert_rw=False, sync=False, progress=False, stream=None):
        self.convert_rw, self.sync, self.progress = convert_rw, sync, progress
        self.stream = stream or StreamOptions()


class SendOutcome:
    """What one carried-out Send gave one destination: the verified backup (the snapshot, for a
    stream sink), the stream's size, its compressed size on the link (None: not compressed)."""

    __slots__ = ("backup", "bytes_sent", "seconds", "wire_bytes")

    def __init__(self, backup, bytes_sent=None, seconds=None, wire_bytes=None):
        self.backup, self.bytes_sent, self.seconds, self.wire_bytes = backup, bytes_sent, seconds, wire_bytes


class Executor:
    """Carries out steps and keeps the list of them (`steps`): the plan in check mode, what was
    done otherwise. Lock steps and sends also keep `locks` (the in-memory lock table, also in
    check mode, so that later decisions see what the run would leave) and write it to `store`."""

    def __init__(self, runner, check_mode=False, options=None):
        self.runner = runner
        self.check_mode = check_mode
        self.options = options or EffectOptions()
        self.locks = self.store = None  # set by a run that sends or edits locks
        self.ends = None  # what the ends of the streams support, asked at the first send
        self.steps = []
        self._effects = {
            CreateFolder: self._create_folder,
            TakeSnapshot: self._take_snapshot,
            DeletePartialReceives: self._delete_partial_receives,
            ClearLocks: self._forget_locks,
            RemoveLocks: self._forget_locks,
            Send: self._send,
            Delete: self._delete,
            WriteLocks: self._write_locks,
            Receive: self._receive,
            Rename: self._rename,
            SnapshotAt: self._snapshot_at,
        }

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def plan(self) -> list:
        return render(self.steps)

    def carry_out(self, step):
        """Record `step`, then (unless in check mode) carry it out; returns what the effect gives."""
        self.steps.append(step)
        return self._effects[type(step)](step)

    def probe(self, source) -> EndToolsProbe:
        """The run's one EndToolsProbe: what each end of `source`'s streams can do, asked once per host."""
        if self.ends is None:
            self.ends = EndToolsProbe(self.runner, source)
        return self.ends

    # -- one method per kind of step ---------------------------------------------------------

    def _create_folder(self, step):
        if not self.check_mode:
            LOG.info("creating %s %s", step.what, step.shown)
            effects.make_folder(step.endpoint, self.runner, step.path, step.parents)

    def _take_snapshot(self, step):
        if not self.check_mode:
            LOG.info("snapshot %s -> %s", step.source_path, step.path)
            effects.take_snapshot(step.endpoint, self.runner, step.source_path, step.path)

    def _receive(self, step):
        if not self.check_mode:
            effects.make_folder(step.endpoint, self.runner, step.folder)
            receive_backup(step.origin, step.backup, step.endpoint, self.runner, step.folder)

    def _rename(self, step):
        if not self.check_mode:
            effects.rename(step.endpoint, self.runner, step.path, step.new_path)

    def _snapshot_at(self, step):
        if not self.check_mode:
            effects.snapshot_at(step.endpoint, self.runner, step.source_path, step.path, step.writable)

    def _delete_partial_receives(self, step):
        if not self.check_mode:
            LOG.warning("%s: deleting partial receives left by a failed transfer: %s",
                        step.where, ", ".join(step.paths))
            self._delete_subvolumes(step.endpoint, step.paths, step.folder)

    def _delete(self, step):
        if not self.check_mode:
            if step.where:
                LOG.info("%s at %s: deleting %s", step.reason, step.where,
                         ", ".join(posixpath.basename(p) for p in step.paths))
            else:
                LOG.info("deleting %s", ", ".join(step.paths))
            self._delete_subvolumes(step.endpoint, step.paths, step.folder)

    def _delete_subvolumes(self, endpoint, paths, folder):
        effects.delete_subvolumes(endpoint, self.runner, paths, folder,
                                  convert_rw=self.options.convert_rw, sync=self.options.sync)

    def _forget_locks(self, step):
        self.locks.forget(step.names, step.destination.id_aliases)
        self._save_locks()

    def _write_locks(self, step):
        if not self.check_mode:
            step.store.write(step.table)

    def _save_locks(self, durable=True):
        if not self.check_mode:
            self.store.write(self.locks, durable)

    def _send(self, step):
        """One send to every destination of the step; returns dest id -> SendOutcome, or the
        TransferError of a destination whose transfer failed (the others are not stopped)."""
        snapshot, parent, dests = step.snapshot, step.parent, step.destinations
        parent_name = parent.name if parent else None
        if self.check_mode:
            for dest in dests:
                self.locks.settle(snapshot.name, parent_name, dest.id_aliases)
            return {dest.id: SendOutcome(planned_backup(dest, snapshot) if dest.can_list else snapshot)
                    for dest in dests}
        LOG.info("sending %s to %s (%s)", snapshot.name, ", ".join(d.id for d in dests), step.mode)
        # Locked before the first byte moves, so a crash at any point is found by the next run (rule 3).
        for dest in dests:
            self.locks.hold(snapshot.name, parent_name, dest.id)
        self._save_locks()
        # A failure, or an interruption (SIGTERM, Ctrl-C), leaves the lock: the next run cleans up.
        try:
            stats = send_stream(step.source, dests, snapshot, parent, self.runner, self.options,
                                self.probe(step.source))
            failures = stats.failures
        except BackupError as err:  # the stream could not start (a program missing): none got it
            stats, failures = None, {dest: str(err) for dest in dests}
        outcomes = {}
        for dest in dests:
            try:
                if dest in failures:
                    raise TransferError(failures[dest])
                backup = verify_received(dest, self.runner, snapshot) if dest.can_list else snapshot
            except BackupError as err:
                failure = TransferError(f"sending {snapshot.name} to {dest.id} failed: {err}")
                failure.detail = str(err)
                failure.partial_receive_deleted = self._remove_partial_receive(dest, snapshot) if dest.can_list else None
                outcomes[dest.id] = failure
                continue
            self.locks.settle(snapshot.name, parent_name, dest.id_aliases)
            wire = stats.wire_bytes.get(dest)
            outcomes[dest.id] = SendOutcome(backup, stats.bytes_sent, round(stats.seconds, 3), wire)
            LOG.info("%s: %s arrived (%s bytes%s in %.1fs)", dest.id, snapshot.name, stats.bytes_sent,
                     f", {wire} compressed" if wire else "", stats.seconds)
        if len(outcomes) > sum(isinstance(o, TransferError) for o in outcomes.values()):
            self._save_locks(durable=False)  # the backups are verified: losing this write is harmless
        return outcomes

    def _remove_partial_receive(self, dest, snapshot):
        """Best effort right after a failure; if it fails too, the lock makes the next run do it."""
        try:
            found = list_folder(dest, self.runner).children.get(snapshot.name)
            if not is_partial_receive_of(found, snapshot):
                return None
            self.carry_out(DeletePartialReceives(endpoint=dest, paths=(found.path,), folder=dest.path,
                                                 where=dest.id))
            return found.path
        except BackupError as err:
            LOG.warning("%s: could not remove the partial receive of %s now (%s); "
                        "the next run will", dest.id, snapshot.name, err)
            return None
