"""The per-destination phase: list (or create) the backup folder, delete partial receives, settle locks, send."""

from __future__ import annotations

import posixpath

from . import names
from .errors import BackupError, EndpointError, MissingPathError, TransferError, UnreachableError
from .listing import FolderListing, list_folder
from .planning import plan_destination, present_backups
from .result import DestinationResult
from .steps import ClearLocks, CreateFolder, DeletePartialReceives, Send


class Destinations:
    """The run's destinations: whether one can take a backup now, and each one's sync.

    `config` is the run's JobConfig, `source` its SourceSide and `keep_backups` how many backups
    a destination keeps (0: all; older snapshots are not sent)."""

    def __init__(self, runner, executor, result, config, source, keep_backups):
        self.runner = runner
        self.executor = executor
        self.result = result
        self.config = config
        self.source = source
        self.keep_backups = keep_backups
        # When the run takes no snapshot or sends nothing, no destination has to be usable.
        self.gate = not (config.no_snapshot or config.no_transfer)
        # Destinations that failed the check before the snapshot: a host that never answers
        # costs a ConnectTimeout, so it is not asked again in the same run.
        self.unusable = {}

    def require_a_usable_one(self, destinations) -> None:
        """Invariant 7: if no destination can take a backup (a mistyped path, a disk that is not
        mounted), create nothing, not even the snapshot folder. One usable one is enough, and so
        is one that is only unreachable now: its snapshot is sent when it is back (catch-up),
        unless the job requires a destination that can take it now. Asked once per run."""
        if not self.gate:
            return
        self.gate = False
        problems = []
        for dest in destinations:
            if not dest.can_list:
                return  # a shell:// sink is only known by trying
            try:
                self.listing(dest, create=False)
                return
            except BackupError as err:
                self.unusable[dest.id] = err
                problems.append(f"{dest.id}: {err}")
        if not problems:
            return
        unreachable = [d.id for d in destinations if isinstance(self.unusable.get(d.id), UnreachableError)]
        if unreachable and not self.config.require_destination:
            self.result.warn(f"no destination can take a backup now ({'; '.join(problems)}); taking the "
                             f"snapshot anyway, it is sent when {' and '.join(unreachable)} can be reached again")
            return
        raise EndpointError("no snapshot taken, as no destination can take it: " + "; ".join(problems))

    def listing(self, dest, create=True) -> FolderListing | None:
        """The destination folder's subvolumes; a missing folder is created when its parent exists
        (None in check mode, or when `create` is False)."""
        if dest.id in self.unusable:
            raise self.unusable[dest.id]
        try:
            return list_folder(dest, self.runner)
        except MissingPathError:
            parent = posixpath.dirname(dest.path)
            try:
                list_folder(dest, self.runner, parent)
            except MissingPathError:
                raise EndpointError(f"destination {dest.id} does not exist, nor does its parent folder {parent}")
            if not create:
                return None
            self.executor.carry_out(CreateFolder(endpoint=dest, path=dest.path, parents=False,
                                                 what="destination folder", shown=dest.id))
            return None if self.executor.check_mode else list_folder(dest, self.runner)

    def survey(self, dest, snapshots) -> dict | None:
        """What a destination holds, without sending (-T): retention still has to protect it."""
        if not dest.can_list:
            return {}
        try:
            return present_backups(snapshots, list_folder(dest, self.runner).children.values())
        except BackupError as err:
            self.result.warn(f"{dest.id} could not be checked: {err}")
            return None

    def sync(self, dest, snapshots, new_snapshot) -> DestinationResult:
        """Bring one destination up to date; its failure is recorded, never raised (invariant 9)."""
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
        listing = self.listing(dest)
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
