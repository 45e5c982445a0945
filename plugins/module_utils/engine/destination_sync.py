# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The per-destination phase: plan against what the folder holds, delete partial receives, settle locks, send."""

from __future__ import annotations

import posixpath

from . import names
from .errors import BackupError, TransferError
from .planning import plan_destination
from .result import DestinationResult
from .steps import ClearLocks, DeletePartialReceives, Send


class DestinationSync:
    """Each destination's phase of a run: its plan, then the steps that carry it out.

    `config` is the run's JobConfig, `source` its SourceSide, `folders` its DestinationFolders,
    and `keep_backups` how many backups a destination keeps (0: all; older ones are not sent)."""

    def __init__(self, executor, result, config, source, folders, keep_backups):
        self.executor = executor
        self.result = result
        self.config = config
        self.source = source
        self.folders = folders
        self.keep_backups = keep_backups

    def run(self, dest, snapshots, new_snapshot) -> DestinationResult:
        """Bring one destination up to date; its failure is recorded, never raised (rule 9)."""
        outcome = DestinationResult(dest_id=dest.id)
        self.result.destinations.append(outcome)
        try:
            if dest.can_list:
                self._sync_folder(dest, snapshots, outcome)
            else:
                self._sync_stream_sink(dest, snapshots, new_snapshot, outcome)
        except BackupError as err:
            outcome.fail(err)
            self.result.fail(err, where=dest.id)
        return outcome

    def _locked_names(self, dest):
        return set(self.executor.locks.names_locked_by(dest.id_aliases, kinds=("locks",)))

    def _sync_stream_sink(self, dest, snapshots, new_snapshot, outcome):
        # A shell:// sink cannot be listed: it gets this run's snapshot and retries of failed ones.
        wanted = self._locked_names(dest)
        if new_snapshot is not None:
            wanted.add(new_snapshot.name)
        plan = plan_destination(snapshots, {}, (), incremental=False, only=wanted)
        outcome.plan = plan.as_dict()
        outcome.present = {}
        for transfer in plan.transfers:
            self._send(dest, transfer, outcome, verify=False)
        self._clear_locks(dest, [t.snapshot.name for t in plan.transfers], outcome)

    def _sync_folder(self, dest, snapshots, outcome):
        listing = self.folders.listing(dest)
        held = dict(listing.children) if listing is not None else {}
        plan = plan_destination(snapshots, held, self._locked_names(dest), incremental=not self.config.no_incremental,
                                keep_backups=self.keep_backups)
        outcome.plan = plan.as_dict()
        for conflict in plan.conflicts:
            outcome.conflicts.append(conflict.reason)
            self.result.warn(f"{dest.id}: {conflict.reason}")
        self._explain_full_send(dest, plan, held)
        if plan.partial_receives:
            paths = tuple(p.path for p in plan.partial_receives)
            self.executor.carry_out(DeletePartialReceives(endpoint=dest, paths=paths,
                                                          folder=posixpath.dirname(paths[0]), where=dest.id))
            outcome.partial_receives_deleted.extend(paths)
        # Partial receives are gone (or never existed): this destination's old locks are settled.
        self._clear_locks(dest, sorted(self.executor.locks.locks), outcome)

        # Known from here on, also if a transfer fails: source retention must protect it.
        outcome.present = dict(plan.present)
        outcome.backups = held
        for transfer in plan.transfers:
            # A failure raises and ends this destination's chain: later ones need it as parent.
            backup = self._send(dest, transfer, outcome, verify=True)
            outcome.present[transfer.snapshot.name] = held[transfer.snapshot.name] = backup
        if plan.conflicts:
            conflict = BackupError("; ".join(c.reason for c in plan.conflicts))
            outcome.fail(conflict)
            self.result.fail(conflict, where=dest.id)

    def _explain_full_send(self, dest, plan, held):
        ours = [n for n, s in held.items() if s.complete and names.is_snapshot_name(self.source.prefix, n)]
        if plan.transfers and plan.transfers[0].parent is None and ours and not self.config.no_incremental:
            # The chain is broken (common snapshot deleted on one side): say why this is full.
            self.result.warn(f"{dest.id} holds backups ({', '.join(sorted(ours)[-3:])}) but none of a "
                             f"snapshot still at the source; sending {plan.transfers[0].snapshot.name} in full")

    def _send(self, dest, transfer, outcome, verify):
        snapshot, parent = transfer.snapshot, transfer.parent
        record = {"snapshot": snapshot.name, "parent": parent.name if parent else None,
                  "mode": "incremental" if parent else "full", "bytes": None, "seconds": None,
                  "status": "planned" if self.executor.check_mode else "running"}
        outcome.transfers.append(record)
        step = Send(source=self.source.endpoint, snapshot=snapshot, parent=parent, destination=dest, verify=verify)
        try:
            sent = self.executor.carry_out(step)
        except TransferError as err:
            record["status"] = "failed"
            record["error"] = err.detail or str(err)
            if err.partial_receive_deleted:
                outcome.partial_receives_deleted.append(err.partial_receive_deleted)
            raise
        except BaseException:
            # Interrupted (SIGTERM, Ctrl-C): the lock stays, the next run cleans up.
            record["status"] = "interrupted"
            raise
        if not self.executor.check_mode:
            record.update(status="done", bytes=sent.bytes_sent, seconds=sent.seconds)
        return sent.backup

    def _clear_locks(self, dest, snapshot_names, outcome):
        held = set(self.executor.locks.names_locked_by(dest.id_aliases))
        touched = [name for name in snapshot_names if name in held]
        if touched:
            # Rewriting the lock file is a change too (idempotence: a rerun finds nothing to clear).
            self.executor.carry_out(ClearLocks(destination=dest, names=tuple(touched)))
            outcome.locks_cleared.extend(touched)
