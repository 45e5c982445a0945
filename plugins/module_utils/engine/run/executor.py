# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The one executor: carries out typed steps in order, or in check mode only records them.

Check mode is decided here only: a phase stages a step and takes what `carry_out` gives back,
the effect's result in a real run or its planned stand-in in check mode."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import contextlib
import posixpath
import time

from ..host import effects, restore_target
from ..host.listing import Subvolume
from ..model.stream_options import StreamOptions
from ..model.errors import BackupError, ConfigError
from ..model.log import LOG
from ..model.steps import (ClearLocks, CreateFolder, Delete, DeletePartialReceives, MarkOrigin, Receive, RemoveLocks,
                           RemoveRunFiles, Rename, Send, SnapshotAt, TakeSnapshot, WriteLocks, render)

if TYPE_CHECKING:
    from typing import ContextManager, Iterator
    from ..host.capabilities import EndToolsProbe
    from ..host.endpoints.base import Endpoint


class EffectOptions:
    """How effects are carried out: -w and -s for deletions, pv for sends, and the stream's
    settings (stream_options.StreamOptions: compression, rate limit, buffer, send protocol, -vv)."""

    __slots__ = ("convert_rw", "sync", "progress", "stream")

    def __init__(self, *, convert_rw=False, sync=False, progress=False, stream=None):
        self.convert_rw, self.sync, self.progress = convert_rw, sync, progress
        self.stream = stream or StreamOptions()


class Executor:
    """Carries out steps and keeps the list of them (`steps`): the plan in check mode, what was
    done otherwise. Lock steps and sends also keep `locks` (the in-memory lock table, also in
    check mode, so that later decisions see what the run would leave) and write it to `store`."""

    def __init__(self, runner, check_mode=False, options=None):
        self.runner = runner
        self.check_mode = check_mode
        self.options = options or EffectOptions()
        if not check_mode:
            _require_tools(self.options.stream)  # rule 7: a missing program changes nothing
        self.locks = self.store = None  # set by a run that sends or edits locks
        # A job's run lets the lock file at a remote source, settled after verified arrivals, be
        # written with the next command there (a retention's deletion) or at its end (flush_locks).
        self.settle_later = False
        self._unsaved_settle = False
        self.ends = None  # what the ends of the streams support, asked at the first send
        # A job's run lets a source across a network take its snapshot in the command of the send
        # that first sends it (nothing runs between them: no after_snapshot hook); `pending` is it.
        self.snapshot_in_send = False
        self.pending = None
        self.staged = {}  # how far this run's resumable transfers have staged (record_staged)
        # dest id -> whether the last run's stream there went compressed (None: unknown), from the state
        self.stream_compressed_before = lambda dest_id: None
        # (snapshot name, dest id, EarlyStages): the receive of this run's snapshot started before
        # its destination was surveyed (job.py, transfer.receive_ahead), until its send takes it.
        self.receive_ahead = None
        # Whether what a destination was planned on holds (DestinationSync: its forecast, waited for).
        self.forecast_holds = lambda dest: True
        self.steps = []
        self._effects = {
            CreateFolder: self._create_folder, TakeSnapshot: self._take_snapshot,
            DeletePartialReceives: self._delete_partial_receives, Delete: self._delete,
            ClearLocks: self._forget_locks, RemoveLocks: self._forget_locks,
            WriteLocks: lambda step: step.store.write(step.table),
            Send: lambda step: _sending().send(self, step),
            Receive: self._receive, SnapshotAt: self._snapshot_at,
            Rename: lambda step: effects.rename(step.endpoint, self.runner, step.path, step.new_path),
            MarkOrigin: lambda step: restore_target.record_origin(step.path, step.origin),
            RemoveRunFiles: lambda step: restore_target.remove_stale_run_files(step.path),
        }
        # What check mode gives back instead; a step not named here gives None.
        self._planned = {
            TakeSnapshot: _planned_snapshot,
            ClearLocks: self._forget_planned_locks, RemoveLocks: self._forget_planned_locks,
            Send: lambda step: _sending().plan_send(self, step),
        }

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def plan(self) -> list:
        return render(self.steps)

    def carry_out(self, step: object) -> object:
        """Record `step`, then carry it out; returns what the effect gives (in check mode, its
        planned stand-in: None for a step that gives nothing back in a real run either)."""
        self.steps.append(step)
        if self.check_mode:
            planned = self._planned.get(type(step))
            return planned(step) if planned else None
        return self._effects[type(step)](step)

    def probe(self, source) -> EndToolsProbe:
        """The run's one EndToolsProbe: what each end of `source`'s streams can do, asked once per host."""
        if self.ends is None:
            from ..host.capabilities import EndToolsProbe  # a run that sends nothing never asks

            self.ends = EndToolsProbe(self.runner, source)
        return self.ends

    def take_receive_ahead(self, step):
        """The receive started ahead for this Send (its snapshot, to its one destination), now the
        send's (EarlyStages), or None."""
        ahead = self.receive_ahead
        if ahead is None or len(step.destinations) != 1 \
                or ahead[:2] != (step.snapshot.name, step.destinations[0].id):
            return None
        self.receive_ahead = None
        return ahead[2]

    def give_up_receive_ahead(self) -> None:
        """A receive started ahead that no send took (the destination could not take the snapshot,
        the run stopped before): it reads an empty stream and makes nothing."""
        ahead, self.receive_ahead = self.receive_ahead, None
        if ahead is not None:
            ahead[2].give_up()

    def holding(self, lock: ContextManager) -> ContextManager:
        """`lock` (a context manager) held while a run changes things; check mode changes nothing: no lock."""
        return contextlib.nullcontext(None) if self.check_mode else lock

    @contextlib.contextmanager
    def staging(self, endpoint: Endpoint, folder: str) -> Iterator[str]:
        """A staging folder's contents and the folder itself are removed when the block ends (a
        real run's scratch space, no step of its own: check mode makes none)."""
        try:
            yield folder
        finally:
            if not self.check_mode:
                restore_target.remove_staging(endpoint, self.runner, folder)

    def save_locks(self, durable: bool = True) -> None:
        if not self.check_mode:
            self.store.write(self.locks, durable)
            self._unsaved_settle = False

    def save_settled_locks(self) -> None:
        """The lock file after verified arrivals: now, or (settle_later, a source across a network)
        with the next command there, at the latest when the run ends (flush_locks). Losing this
        write is harmless: the next run finds the backups complete and clears the locks."""
        if self.settle_later and hasattr(self.store, "write_command"):
            self._unsaved_settle = not self.check_mode
        else:
            self.save_locks(durable=False)

    def flush_locks(self) -> None:
        """Write a settled lock table that no command has taken along yet."""
        if self._unsaved_settle:
            self.save_locks(durable=False)

    def _settle_first(self, endpoint):
        """The unsaved settled lock table's write, to run first in a command at `endpoint` (None:
        nothing to write there, or too long for a command line: written apart now)."""
        if not self._unsaved_settle or getattr(self.store, "endpoint", None) is not endpoint:
            return None
        first = self.store.write_command(self.locks)
        if first is None:
            self.flush_locks()
        return first

    def record_staged(self, snapshot: str, dest_id: str, staged_bytes: int | None, stream_bytes: int | None) -> None:
        """Beside the lock file: how far a running resumable transfer of `snapshot` to `dest_id`
        has staged (`staged_bytes` None: it ended), so that `status` can say it after a run that
        was killed outright. Best effort: a figure that cannot be written never fails a transfer."""
        if self.check_mode or self.store is None or not hasattr(self.store, "write_staged"):
            return
        entries = self.staged.setdefault(snapshot, {})
        if staged_bytes is None:
            entries.pop(dest_id, None)
        else:
            entries[dest_id] = {"staged_bytes": staged_bytes, "stream_bytes": stream_bytes, "time": int(time.time())}
        self.staged = {name: found for name, found in self.staged.items() if found}
        try:
            self.store.write_staged(self.staged)
        except BackupError as err:
            LOG.debug("the staged share was not recorded: %s", err)

    # -- one method per kind of step, for a real run ---------------------------------------------

    def _create_folder(self, step) -> str:
        if step.path == step.endpoint.folder_to_create:
            LOG.info("creating %s %s in the command that first uses it", step.what, step.shown)
            return step.path
        LOG.info("creating %s %s", step.what, step.shown)
        effects.make_folder(step.endpoint, self.runner, step.path, step.parents)
        return step.path

    def _take_snapshot(self, step) -> Subvolume:
        """The new read-only snapshot, as listed; a real run waits for the second its name gives.
        At a source across a network with snapshot_in_send: its stand-in, taken by the send."""
        if step.not_before is not None:
            effects.wait_until(step.not_before)
        if self.snapshot_in_send and step.endpoint.snapshots_in_send:
            LOG.info("snapshot %s -> %s, in the command of its send", step.source_path, step.path)
            self.pending = PendingSnapshot(step)
            return self.pending.stand_in
        LOG.info("snapshot %s -> %s", step.source_path, step.path)
        return effects.take_snapshot(step.endpoint, self.runner, step.source_path, step.path)

    def pending_of(self, snapshot: Subvolume) -> PendingSnapshot | None:
        """The pending snapshot whose stand-in `snapshot` is, while it is not taken yet; else None."""
        pending = self.pending
        return pending if pending is not None and pending.state == PENDING and snapshot is pending.stand_in else None

    def take_pending_snapshot(self) -> Subvolume | None:
        """Take the pending snapshot apart now (no send took it along), as listed; None when there
        is none left to take. A failure raises as a snapshot taken apart does."""
        pending = self.pending
        if pending is None or pending.state != PENDING:
            return None
        LOG.info("snapshot %s -> %s", pending.step.source_path, pending.step.path)
        pending.state = NOT_TAKEN  # until it is listed: never tried twice
        pending.took(effects.take_snapshot(pending.step.endpoint, self.runner, pending.step.source_path,
                                           pending.step.path))
        return pending.taken

    def _receive(self, step):
        if step.parent is None:  # an incremental receive goes where its parent was received
            effects.make_folder(step.endpoint, self.runner, step.folder)
        from .transfer import receive_backup  # as _sending

        receive_backup(step.origin, step.backup, step.endpoint, self.runner, step.folder, step.parent)

    def _snapshot_at(self, step):
        effects.snapshot_at(step.endpoint, self.runner, step.source_path, step.path, step.writable)
        return step.path

    def _delete_partial_receives(self, step):
        LOG.warning("%s: deleting partial receives left by a failed transfer: %s", step.where, ", ".join(step.paths))
        self._delete_subvolumes(step.endpoint, step.paths, step.folder)

    def _delete(self, step):
        if step.where:
            LOG.info("%s at %s: deleting %s", step.reason, step.where,
                     ", ".join(posixpath.basename(p) for p in step.paths))
        else:
            LOG.info("deleting %s", ", ".join(step.paths))
        self._delete_subvolumes(step.endpoint, step.paths, step.folder)

    def _delete_subvolumes(self, endpoint, paths, folder):
        if endpoint.holds_archives:  # an archive's "path" names it to its store
            endpoint.delete_archives(self.runner, paths)
            return
        first = self._settle_first(endpoint)  # the settled lock file with retention's deletion
        effects.delete_subvolumes(endpoint, self.runner, paths, folder,
                                  convert_rw=self.options.convert_rw, sync=self.options.sync, first=first)
        if first is not None:
            self._unsaved_settle = False

    def _forget_locks(self, step):
        self.locks.forget(step.names, step.destination.id_aliases)
        self.save_locks()

    def _forget_planned_locks(self, step):
        self.locks.forget(step.names, step.destination.id_aliases)


#: A PendingSnapshot's states: not taken yet; taken (its facts known); taken, but its facts could
#: not be read; not taken (its command failed).
PENDING, TAKEN, UNKNOWN, NOT_TAKEN = "pending", "taken", "unknown", "not taken"


class PendingSnapshot:
    """A snapshot whose taking rides in the command of the send that first sends it: its step, the
    stand-in the run plans with (its uuid matches nothing: the real one is not known yet), and
    once the send has said so, what was taken (`taken`, as its facts describe it) and `state`."""

    __slots__ = ("step", "stand_in", "taken", "state")

    def __init__(self, step):
        self.step = step
        self.stand_in = Subvolume(name=posixpath.basename(step.path), path=step.path, id=None,
                                  uuid=f"(taken in its send) {step.path}", parent_uuid=None, received_uuid=None,
                                  readonly=True)
        self.taken = None
        self.state = PENDING

    def took(self, snapshot: Subvolume | None) -> None:
        """The send (or a command apart) took it: `snapshot` as its facts say, None if unreadable."""
        self.taken = snapshot
        self.state = TAKEN if snapshot is not None else UNKNOWN

    def not_taken(self) -> None:
        """Its command failed before the snapshot was taken."""
        self.state = NOT_TAKEN

    @property
    def verified(self) -> bool:
        """Taken, read-only, as its facts say: a backup of it can be checked (rule 2)."""
        return self.state == TAKEN and self.taken.readonly


def _planned_snapshot(step) -> Subvolume:
    """Check mode's stand-in for a snapshot: no id (nothing exists), a uuid only so that check
    mode can match its planned backups."""
    return Subvolume(name=posixpath.basename(step.path), path=step.path, id=None, uuid=f"(planned) {step.path}",
                     parent_uuid=None, received_uuid=None, readonly=True)


def _sending():
    """The sending module, imported at the first send: a run with nothing to send does without
    it and the stream machinery below it (a tenth of its start-up)."""
    from . import sending

    return sending


def _require_tools(stream):
    """A rate limit needs pv and a buffer mbuffer on this host: missing, nothing is changed."""
    for tool, what in (("pv", stream.limit_rate), ("mbuffer", stream.buffer)):
        if not what:
            continue
        import shutil  # only when asked for: shutil costs a run with nothing to send ~2 ms

        if shutil.which(tool) is None:
            raise ConfigError(f"{'limit_rate' if tool == 'pv' else 'buffer'} needs {tool}, which is not "
                              f"installed on this host (install the {tool} package)")
