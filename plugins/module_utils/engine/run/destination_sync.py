# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The per-destination phase: plan against what the folder holds, delete partial receives, settle locks, send."""

from __future__ import annotations

import posixpath

from ..model import names
from ..model.errors import BackupError, TransferError, UnreachableError
from ..model.log import LOG
from ..model.planning import plan_destination, stranded_arrivals
from ..model.result import DestinationResult
from ..model.steps import ClearLocks, DeletePartialReceives, Rename, Send


class _Pending:
    """A destination's transfers still to make, in order (each needs the one before as parent)."""

    __slots__ = ("dest", "outcome", "transfers", "planned", "held")

    def __init__(self, dest, outcome, transfers, held):
        self.dest, self.outcome, self.held = dest, outcome, held
        self.planned, self.transfers = tuple(transfers), list(transfers)


class _DestinationPlans:
    """Each destination's plan against what its folder holds (a stream sink: what it is owed):
    partial receives deleted first, old locks settled, conflicts and a broken chain warned of."""

    def _locked_names(self, dest):
        return set(self.executor.locks.names_locked_by(dest.id_aliases, kinds=("locks",)))

    def _prepare(self, dest, snapshots, new_snapshot, outcome) -> _Pending:
        if dest.can_list:
            return self._prepare_folder(dest, snapshots, outcome)
        # A shell:// sink cannot be listed: it gets this run's snapshot and retries of failed ones.
        wanted = self._locked_names(dest)
        if new_snapshot is not None:
            wanted.add(new_snapshot.name)
        plan = plan_destination(snapshots, {}, (), incremental=False, only=wanted)
        outcome.plan = plan.as_dict()
        outcome.present = {}
        return _Pending(dest, outcome, plan.transfers, None)

    def _prepare_folder(self, dest, snapshots, outcome) -> _Pending:
        if not self.source.takes_snapshots and self.executor.probe(self.source.endpoint).is_serve(dest):
            # serve keeps what arrives under the name it arrived with, and refuses `snapshot`.
            raise BackupError(f"{dest.id} is a backup server (btrfs-backup serve), which cannot take snapper's "
                              "snapshots yet: each arrives named 'snapshot'; send them to a folder, or to an ssh "
                              "host that runs btrfs receive itself")
        listing = self._listing_or_forecast(dest)
        held = dest.mark_unfinished(dict(listing.children) if listing is not None else {}, self._locked_names(dest))
        self._settle_arrivals(dest, snapshots, held, outcome)
        plan = plan_destination(snapshots, held, self._locked_names(dest), incremental=not self.config.no_incremental,
                                keep_backups=self.keep_backups)
        # Said of the planner's choice: an archive store's policy (every Nth stream full) is no broken chain.
        self._explain_full_send(dest, plan.transfers, held)
        plan.transfers = dest.shape_transfers(plan.transfers, held)
        outcome.plan = plan.as_dict()
        for conflict in plan.conflicts:
            outcome.conflicts.append(conflict.reason)
            self.result.warn(f"{dest.id}: {conflict.reason}")
        if plan.partial_receives:
            paths = tuple(p.path for p in plan.partial_receives)
            self.executor.carry_out(DeletePartialReceives(endpoint=dest, paths=paths,
                                                          folder=dest.path if dest.holds_archives
                                                          else posixpath.dirname(paths[0]), where=dest.id))
            outcome.partial_receives_deleted.extend(paths)
        # Partial receives are gone (or never existed): this destination's old locks are settled.
        self._clear_locks(dest, sorted(self.executor.locks.locks), outcome)
        # Known from here on, also if a transfer fails: source retention must protect it.
        outcome.present = dict(plan.present)
        outcome.backups = held
        return _Pending(dest, outcome, plan.transfers, held)

    def _listing_or_forecast(self, dest):
        """The destination's listing; for an archive store that is not listed yet, the forecast
        the job's last run left (run/archive_forecast.py) while the store is listed meanwhile, or
        none at all where the repository's own files say it holds no archive. A
        store with a lock of this job (an unfinished transfer to settle) is listed first. An ssh host
        the run planned on its forecast while it is surveyed (job.py) gets that forecast."""
        forecast = self.forecasts.get(dest.id)
        if forecast is not None and not forecast.keeps_listing and not self.folders.known(dest):
            # A subvolume that is no complete backup may be deleted or renamed before the send:
            # never on a record alone.
            if forecast.agreed is None and all(sub.complete for sub in forecast.predicted.children.values()):
                return forecast.predicted
            if forecast.settle():
                return forecast.predicted
            return self._listing_instead_of(forecast)
        if not (dest.holds_archives and getattr(self.executor.runner, "kernel_listing", False)) \
                or self.executor.check_mode or dest.id in self.forecasts or self.folders.known(dest) \
                or self.executor.locks.names_locked_by(dest.id_aliases):
            return self.folders.listing(dest)
        if dest.holds_no_archive():
            LOG.info("%s: the repository's own files say it holds no archive: planned on that, "
                     "without opening it to list it", dest.id)
            empty = dest.listing_of([])
            self.folders.remember(dest, empty)
            return empty
        from . import archive_forecast  # only a run with an archive store needs it
        predicted = archive_forecast.load_forecast(self.source.identity, dest)
        if predicted is None:
            return self.folders.listing(dest)
        if archive_forecast.unwritten_since_recorded(self.source.identity, dest):
            LOG.info("%s: nothing was written to the repository since this job's last run there: "
                     "planned on what that run left, without opening it to list it", dest.id)
            self.folders.remember(dest, predicted)
            return predicted
        self.forecasts[dest.id] = archive_forecast.Forecast(dest, self.executor.runner, predicted)
        return predicted

    def _listing_instead_of(self, forecast):
        """The folder's listing asked now, where the survey contradicted the forecast that `dest` was
        planned on; a folder that cannot take backups is one the run took its snapshot for in vain."""
        dest = forecast.dest
        dest.expect_filesystem = None  # listed now: its receive needs no check of its own
        try:
            return self.folders.listing(dest)
        except BackupError as err:
            if not isinstance(err, UnreachableError):  # unreachable: the snapshot waits for it
                self.refused[dest.id] = err
            raise

    def _settle_arrivals(self, dest, snapshots, held, outcome):
        """A backup that arrived under its subvolume's name (snapper's `snapshot`) but was not
        renamed gets its snapshot's name; a partial one is deleted: the next receive needs the name."""
        renames, partials = stranded_arrivals(snapshots, held, self._locked_names(dest))
        for found, name in renames:
            path = dest.join(name)
            self.executor.carry_out(Rename(endpoint=dest, path=found.path, new_path=path))
            del held[found.name]
            held[name] = found._replace(name=name, path=path)
        if partials:
            paths = tuple(p.path for p in partials)
            self.executor.carry_out(DeletePartialReceives(endpoint=dest, paths=paths, folder=dest.path,
                                                          where=dest.id))
            outcome.partial_receives_deleted.extend(paths)
            for found in partials:
                del held[found.name]
        for name in sorted({posixpath.basename(s.path) for s in snapshots} - {s.name for s in snapshots}):
            if name in held:  # not ours to rename or delete, and the next receive needs its name
                raise BackupError(f"{held[name].path} at {dest.id} is in the way of the next receive (which "
                                  f"arrives as '{name}'), and it is no backup of a snapshot at the source: "
                                  "rename or delete it")

    def _explain_full_send(self, dest, transfers, held):
        ours = [n for n, s in held.items() if s.complete and names.is_snapshot_name(self.source.prefix, n)]
        if transfers and transfers[0].parent is None and ours and not self.config.no_incremental:
            # The chain is broken (common snapshot deleted on one side): say why this is full.
            why = "" if self.source.takes_snapshots else (
                " (snapper's cleanup deleted them: keep more snapshots in its configuration, or run this "
                "job more often)")
            self.result.warn(f"{dest.id} holds backups ({', '.join(sorted(ours)[-3:])}) but none of a "
                             f"snapshot still at the source{why}; sending {transfers[0].snapshot.name} in full")


class DestinationSync(_DestinationPlans):
    """The destinations' phase of a run: each one's plan, then the sends that carry them out.

    Destinations that need the same snapshot from the same parent get it from one send, fanned
    out to all of them (the source is read once); one that fails does not stop the others.
    `config` is the run's JobConfig, `source` its SourceSide, `folders` its DestinationFolders,
    and `keep_backups` how many backups a destination keeps (0: all; older ones are not sent)."""

    def __init__(self, executor, result, config, source, folders, keep_backups):
        self.executor = executor
        self.result = result
        self.config = config
        self.source = source
        self.folders = folders
        self.keep_backups = keep_backups
        # Archive stores and ssh hosts planned on a forecast while they are listed (dest id ->
        # archive_forecast.Forecast or folder_forecast.FolderForecast).
        self.forecasts = {}
        # ssh hosts planned on a forecast that cannot take backups, as their survey then found
        # (dest id -> the error): the run's snapshot was taken for nothing (job.py gives it back).
        self.refused = {}
        executor.forecast_holds = self._forecast_holds  # a staged transfer waits for it (sending.py)

    def run(self, destinations, snapshots, new_snapshot) -> list:
        """Bring every destination up to date; a failure is recorded, never raised (rule 9).
        Returns their DestinationResults, in the order given."""
        outcomes, pending = [], []
        for dest in destinations:
            outcome = DestinationResult(dest_id=dest.id)
            self.result.destinations.append(outcome)
            outcomes.append(outcome)
            try:
                pending.append(self._prepare(dest, snapshots, new_snapshot, outcome))
            except BackupError as err:
                self._fail(dest, outcome, err)
        self._planning = (snapshots, new_snapshot)
        self._send_all(pending)
        # A forecast that no stream waited on is settled now: planned again where it was wrong.
        wrong = [item for item in pending if item.outcome.status != "failed" and not self._forecast_holds(item.dest)]
        while wrong:
            redone = [self._replan(item) for item in wrong]
            self._send_all(redone)
            pending = [p for p in pending if p not in wrong] + redone
            wrong = [item for item in redone if item.outcome.status != "failed" and not self._forecast_holds(item.dest)]
        for item in pending:
            if item.outcome.status == "failed":
                continue
            if item.held is None:
                # A stream sink took all it was sent: no lock of these snapshots is owed any more.
                self._clear_locks(item.dest, [t.snapshot.name for t in item.planned], item.outcome)
            elif item.outcome.conflicts:
                self._fail(item.dest, item.outcome, BackupError("; ".join(item.outcome.conflicts)))
        return outcomes

    def _fail(self, dest, outcome, err):
        outcome.fail(err)
        self.result.fail(err, where=dest.id)

    def _send_all(self, pending):
        """Rounds: the oldest snapshot any destination needs next goes, in one send, to every
        destination that needs it next from the same parent. A failed transfer ends that
        destination's chain (later ones need it as parent); the others go on."""
        while True:
            waiting = [p for p in pending if p.transfers and p.outcome.status != "failed"]
            if not waiting:
                return
            first = min(waiting, key=lambda p: p.transfers[0].snapshot.name)
            key = _send_key(first.transfers[0])
            group = [p for p in waiting if _send_key(p.transfers[0]) == key]
            replanned = self._send(group, first.transfers[0])
            for item in group:
                item.transfers.pop(0)
            for item in replanned:
                pending[pending.index(item)] = self._replan(item)

    def _send(self, group, transfer):
        snapshot, parent = transfer.snapshot, transfer.parent
        records = {}
        for item in group:
            records[item.dest.id] = record = {
                "snapshot": snapshot.name, "parent": parent.name if parent else None,
                "mode": "incremental" if parent else "full", "bytes": None, "seconds": None,
                "status": "running"}
            if len(group) > 1:
                record["shared_with"] = [other.dest.id for other in group if other is not item]
            item.outcome.transfers.append(record)
        step = Send(source=self.source.endpoint, snapshot=snapshot, parent=parent,
                    destinations=tuple(item.dest for item in group))
        armed = [self.forecasts[i.dest.id] for i in group
                 if i.dest.id in self.forecasts and self.forecasts[i.dest.id].agreed is None]
        for forecast in armed:
            forecast.arriving.add(snapshot.name)
            forecast.arm()
        try:
            sent = self.executor.carry_out(step)
        except BackupError as err:
            # The run cannot go on (a snapshot taken in the send's command was not taken).
            for item in group:
                records[item.dest.id].update(status="failed", error=str(err))
                item.outcome.fail(err)  # the run's error says it once
            raise
        except BaseException:
            # Interrupted (SIGTERM, Ctrl-C): the locks stay, the next run cleans up.
            for record in records.values():
                record["status"] = "interrupted"
            raise
        finally:
            for forecast in armed:
                forecast.disarm()
        replanned = []
        for item in group:
            record, done = records[item.dest.id], sent[item.dest.id]
            if isinstance(done, TransferError) and done.partial_receive_deleted:
                item.outcome.partial_receives_deleted.append(done.partial_receive_deleted)
            if isinstance(done, TransferError) and self._planned_wrong(item.dest):
                # Stopped on the run's word, or refused by a receive that checks what it was planned on:
                # nothing was kept, and this transfer owes nothing.
                LOG.info("%s: %s", item.dest.id, done.detail or done)
                record["status"] = "replanned"
                self.executor.locks.settle(snapshot.name, parent.name if parent else None, item.dest.id_aliases)
                self.executor.save_locks()
                replanned.append(item)
            elif isinstance(done, TransferError):
                record["status"] = "failed"
                record["error"] = done.detail or str(done)
                if getattr(done, "resumable", None):
                    record["resumable"] = done.resumable  # staged so far: the next run resumes there
                self._fail(item.dest, item.outcome, done)
            elif done.planned:
                record["status"] = "planned"
            else:
                record.update(status="done", bytes=done.bytes_sent, seconds=done.seconds)
                if done.compressed:
                    record["compressed"] = True
                if done.wire_bytes:
                    record["compressed_bytes"] = done.wire_bytes
                if self._receives_in_shell(item.dest):
                    record["receive_in_shell"] = True  # the next run may start its receive before the survey
                if done.resumed_bytes is not None:
                    record["resumed_bytes"] = done.resumed_bytes  # staged: what an earlier run had sent
                if done.slot_wait is not None:
                    record["receive_slot_wait_seconds"] = done.slot_wait  # the server was saturated
            if not isinstance(done, TransferError) and item.held is not None:
                item.outcome.present[snapshot.name] = item.held[snapshot.name] = done.backup
        return replanned

    def _receives_in_shell(self, dest) -> bool:
        """Whether `dest` received in a plain ssh host's shell, not through serve (as its survey said)."""
        if not dest.answers_arrival:
            return False
        probe = self.executor.probe(self.source.endpoint)
        return probe.knows(dest) and probe.is_plain_host(dest)

    def _planned_wrong(self, dest) -> bool:
        """Whether a transfer to `dest` failed for a forecast its listing contradicts. A survey that
        got no answer contradicts nothing: the connection that failed it failed the stream too, and
        the transfer fails as it would have after a survey asked first (the next run resends)."""
        if self._forecast_holds(dest):
            return False
        return not self.forecasts[dest.id].unanswered

    def _forecast_holds(self, dest) -> bool:
        """Whether what `dest` was planned on is what it holds: its listing, or a forecast that
        its listing confirmed (waited for here). Once confirmed, the listing's own records stand."""
        forecast = self.forecasts.get(dest.id)
        if forecast is None or self.folders.known(dest):  # listed, or planned again on its listing
            return True
        if forecast.settle():
            if forecast.keeps_listing:
                self.folders.remember(dest, forecast.real)
            return True
        return False

    def _replan(self, item) -> _Pending:
        """A destination planned on a wrong forecast, planned again on its listing (listed anew
        when the listing beside the stream failed)."""
        forecast = self.forecasts[item.dest.id]
        if forecast.real is not None and forecast.keeps_listing:
            self.folders.remember(item.dest, forecast.real)
        snapshots, new_snapshot = self._planning
        item.outcome.conflicts = []
        try:
            return self._prepare(item.dest, snapshots, new_snapshot, item.outcome)
        except BackupError as err:
            self._fail(item.dest, item.outcome, err)
            return _Pending(item.dest, item.outcome, [], item.held)

    def _clear_locks(self, dest, snapshot_names, outcome):
        held = set(self.executor.locks.names_locked_by(dest.id_aliases))
        touched = [name for name in snapshot_names if name in held]
        if touched:
            # Rewriting the lock file is a change too (idempotence: a rerun finds nothing to clear).
            self.executor.carry_out(ClearLocks(destination=dest, names=tuple(touched)))
            outcome.locks_cleared.extend(touched)


def _send_key(transfer):
    """Pure: transfers with equal keys can share one send (the same snapshot from the same parent)."""
    return transfer.snapshot.name, transfer.parent.name if transfer.parent else None
