# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The job runner: snapshot, transfer to every destination, apply retention; one structured result."""

import datetime
import logging
import os
import posixpath
import sys
import time

from . import actions, btrfs, names
from .endpoints import LocalEndpoint, ShellEndpoint, SshConnections, check_path, parse_location
from .errors import (BackupError, ConfigError, EndpointError, MissingPathError, TransferError,
                     UnreachableError)
from .joblock import JOB_LOCK_NAME, JobLock, lock_path_for_remote
from .listing import Subvolume, find_subvolume, list_folder
from .locks import LocalLockStore, LockTable, RemoteLockStore
from .pipeline import Stage, run_pipeline
from .planning import counterpart, describe_foreign, plan_destination, present_backups
from .result import DestinationResult, JobResult
from .retention import Policy, parse_buckets, plan_retention
from .runner import CommandRunner

LOG = logging.getLogger("btrfs_backup")
# What `serve --append-only` answers to a deletion of a complete backup (serve.APPEND_ONLY).
APPEND_ONLY_REFUSAL = "refused: append-only"


class JobConfig(object):
    """Everything one run needs; the defaults are btrfs-backup 0.3's."""

    def __init__(self, source, destinations=(), snapshot_folder="snapshot", prefix="",
                 num_snapshots=0, num_backups=0, preserve_snapshots="", preserve_backups="",
                 no_snapshot=False, no_transfer=False, no_incremental=False,
                 locked_dests=False, remove_locks=False, require_destination=False, ssh_options=(), ssh_sudo=False,
                 convert_rw=False, sync=False, btrfs_debug=False, progress=False,
                 check_mode=False, now=None):
        self.source = source
        self.destinations = list(destinations)
        self.snapshot_folder = snapshot_folder
        self.prefix = prefix
        self.num_snapshots = num_snapshots
        self.num_backups = num_backups
        self.preserve_snapshots = preserve_snapshots
        self.preserve_backups = preserve_backups
        self.no_snapshot = no_snapshot
        self.no_transfer = no_transfer
        self.no_incremental = no_incremental
        self.locked_dests = locked_dests
        self.remove_locks = remove_locks
        # Take no snapshot unless a destination can take it now (btrfs-backup 0.3 and btrbk
        # always take it: an outage of the server should not also stop the local restore points).
        self.require_destination = require_destination
        self.ssh_options = list(ssh_options)
        self.ssh_sudo = ssh_sudo
        self.convert_rw = convert_rw
        self.sync = sync
        self.btrfs_debug = btrfs_debug
        self.progress = progress
        self.check_mode = check_mode
        self.now = now


class _Prepared(object):
    """Validated configuration: endpoints, folder, policies."""

    def __init__(self, config):
        names.validate_prefix(config.prefix)
        self.source = parse_location(config.source, config.ssh_options, config.ssh_sudo,
                                     allow_shell=False)
        folder = check_path(config.snapshot_folder or "snapshot", "snapshot folder")
        if not folder.startswith("/"):
            folder = posixpath.join(self.source.path, folder)
        self.folder = folder
        self.snapshot_policy = Policy(_count(config.num_snapshots, "num_snapshots"),
                                      parse_buckets(config.preserve_snapshots))
        self.backup_policy = Policy(_count(config.num_backups, "num_backups"),
                                    parse_buckets(config.preserve_backups))
        self.destinations = []
        seen = set()
        for spec in config.destinations:
            endpoint = parse_location(spec, config.ssh_options, config.ssh_sudo)
            if endpoint.id not in seen:
                seen.add(endpoint.id)
                self.destinations.append(endpoint)
        if isinstance(self.source, LocalEndpoint):
            for dest in self.destinations:
                if isinstance(dest, LocalEndpoint) and dest.id == os.path.realpath(self.folder):
                    raise ConfigError("destination %s is the snapshot folder itself" % dest.path)


def _count(value, what):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError("%s must be a whole number >= 0, not %r" % (what, value))
    if number < 0 or str(value).strip() not in (str(number), "+" + str(number)):
        raise ConfigError("%s must be a whole number >= 0, not %r" % (what, value))
    return number


def run_job(config, runner=None):
    """Run one backup job; never raises for a failing destination (see JobResult.errors)."""
    runner = runner or CommandRunner()
    result = JobResult(check_mode=config.check_mode)
    try:
        prepared = _Prepared(config)
    except BackupError as err:
        result.fail(err)
        return result
    result.source = prepared.source.id
    result.snapshot_folder = prepared.folder
    try:
        _Job(config, prepared, runner, result).run()
    except BackupError as err:
        result.fail(err)
    return result


class _Job(object):
    def __init__(self, config, prepared, runner, result):
        self.config = config
        self.p = prepared
        self.source = prepared.source
        self.runner = runner
        self.result = result
        self.now = config.now or datetime.datetime.now()
        self.check = config.check_mode
        self.destinations_checked = False
        # Destinations that failed the check before the snapshot: a host that never answers
        # costs a ConnectTimeout, so it is not asked again in the same run.
        self.unusable = {}

    # -- source side -------------------------------------------------------------------------

    def run(self):
        self.connections = SshConnections(self.runner)
        for endpoint in [self.source] + self.p.destinations:
            self.connections.attach(endpoint)
        try:
            if self.check:
                self._run_locked(self._list_source())
                return
            with self._job_lock():
                # Listed under the lock, so no other run of this job changes it meanwhile.
                self._run_locked(self._list_source())
        finally:
            self.connections.close()

    def _job_lock(self):
        if isinstance(self.source, LocalEndpoint):
            if not os.path.isdir(self.p.folder):
                self._list_source()  # checks the source, then creates the snapshot folder
            return JobLock(os.path.join(self.p.folder, JOB_LOCK_NAME))
        return JobLock(lock_path_for_remote(self.source.id, self.p.folder))

    def _list_source(self):
        """List the snapshot folder (creating it on first use) and check the source."""
        source_path = self.source.path
        try:
            listing = list_folder(self.source, self.runner, self.p.folder, [source_path])
        except MissingPathError as err:
            if source_path in err.paths:
                raise EndpointError("source %s does not exist" % self.source.id)
            # First run: the snapshot folder is missing. Check the source before creating it.
            probe = list_folder(self.source, self.runner, source_path)
            if not probe.is_subvolume(source_path):
                raise EndpointError(_not_subvolume(self.source.id))
            if self.check:
                self.result.changed = True  # a new folder is a change; in check mode a predicted one
                self.result.plan.append("create snapshot folder %s" % self.p.folder)
                return None
            self._require_a_usable_destination(self.p.destinations)
            self._make_folder(self.p.folder, parents=True)
            self.result.changed = True
            listing = list_folder(self.source, self.runner, self.p.folder, [source_path])
        if not listing.is_subvolume(source_path):
            raise EndpointError(_not_subvolume(self.source.id))
        return listing

    def _make_folder(self, path, parents):
        LOG.info("creating folder %s", path)
        actions.make_folder(self.source, self.runner, path, parents)

    def _lock_store(self):
        if isinstance(self.source, LocalEndpoint):
            return LocalLockStore(self.p.folder)
        return RemoteLockStore(self.source, self.runner, self.p.folder)

    def _run_locked(self, listing):
        store = self._lock_store()
        locks = store.read() if listing is not None else LockTable()
        self.store, self.locks = store, locks
        self.result.locks_before = locks.as_dict()
        snapshots = self._source_snapshots(listing)

        destinations = list(self.p.destinations)
        if self.config.locked_dests:
            known = {d.id for d in destinations}
            for dest_id in locks.destinations():
                if dest_id not in known:
                    try:
                        destinations.append(self.connections.attach(parse_location(
                            dest_id, self.config.ssh_options, self.config.ssh_sudo)))
                        known.add(dest_id)
                    except ConfigError as err:
                        self.result.warn("locked destination %r cannot be used: %s" % (dest_id, err))

        if self.config.remove_locks:
            for dest in destinations:
                touched = locks.discard_destination(dest.id_aliases)
                for name in touched:
                    self.result.locks_removed.append({"snapshot": name, "destination": dest.id})
            if self.result.locks_removed:
                self.result.changed = True
                self._save_locks()

        new_snapshot = None
        if not self.config.no_snapshot:
            self._require_a_usable_destination(destinations)
            new_snapshot = self._take_snapshot(listing, snapshots)
            snapshots = snapshots + [new_snapshot]

        present_by_dest = {}
        for dest in destinations:
            if self.config.no_transfer:
                present_by_dest[dest.id] = self._survey_destination(dest, snapshots)
            else:
                present_by_dest[dest.id] = self._sync_destination(dest, snapshots, new_snapshot)

        self._apply_source_retention(snapshots, present_by_dest, destinations)
        self.result.locks_after = self.locks.as_dict()

    def _source_snapshots(self, listing):
        if listing is None:
            return []
        found = []
        for sub in listing.children.values():
            if not names.is_snapshot_name(self.config.prefix, sub.name):
                continue
            if not sub.readonly:
                self.result.warn("%s is writable, so it is not used as a snapshot" % sub.path)
                continue
            found.append(sub)
        return sorted(found, key=lambda s: names.sort_key(self.config.prefix, s.name))

    def _take_snapshot(self, listing, snapshots):
        taken = set(listing.children) if listing is not None else set()
        prefix = self.config.prefix
        newest = names.parse_time(prefix, snapshots[-1].name) if snapshots else None
        try:
            when = names.next_snapshot_time(prefix, self.now, taken, newest)
        except ValueError as err:
            raise BackupError("not taking a snapshot: %s" % err)
        # Names have one-second resolution: wait for the chosen second rather than invent a
        # suffix that btrfs-backup 0.3 would not recognise.
        if self.config.now is None and not self.check:
            wait = (when - datetime.datetime.now()).total_seconds()
            if wait > 0:
                time.sleep(wait + 0.01)
        name = names.format_name(prefix, when)
        path = posixpath.join(self.p.folder, name)
        self.now = when
        if self.check:
            self.result.plan.append("create snapshot %s of %s" % (path, self.source.path))
            self.result.snapshot = {"name": name, "path": path, "uuid": None}
            self.result.changed = True
            return Subvolume(name, path, None, None, None, None, True)
        LOG.info("snapshot %s -> %s", self.source.path, path)
        actions.take_snapshot(self.source, self.runner, self.source.path, path)
        self.result.changed = True
        created = find_subvolume(self.source, self.runner, self.p.folder, name)
        if created is None or not created.readonly:
            raise BackupError("snapshot %s was not created read-only" % path)
        self.result.snapshot = {"name": name, "path": path, "uuid": created.uuid}
        return created

    # -- destinations ------------------------------------------------------------------------

    def _sync_destination(self, dest, snapshots, new_snapshot):
        outcome = DestinationResult(dest.id)
        self.result.destinations.append(outcome)
        try:
            if isinstance(dest, ShellEndpoint):
                self._sync_stream_sink(dest, snapshots, new_snapshot, outcome)
            else:
                self._sync_subvolume_destination(dest, snapshots, outcome)
        except BackupError as err:
            outcome.fail(err)
            self.result.fail(err, where=dest.id)
        return outcome.present

    def _survey_destination(self, dest, snapshots):
        """What a destination holds, without sending (-T): retention still has to protect it."""
        if isinstance(dest, ShellEndpoint):
            return {}
        try:
            return present_backups(snapshots, list_folder(dest, self.runner).children.values())
        except BackupError as err:
            self.result.warn("%s could not be checked: %s" % (dest.id, err))
            return None

    def _locked_names(self, dest):
        return {name for name in self.locks.locks if self.locks.locked(name, dest.id_aliases)}

    def _sync_stream_sink(self, dest, snapshots, new_snapshot, outcome):
        # A shell:// sink cannot be listed: it gets this run's snapshot and retries of failed ones.
        wanted = self._locked_names(dest)
        if new_snapshot is not None:
            wanted.add(new_snapshot.name)
        plan = plan_destination(snapshots, {}, (), incremental=False, only=wanted)
        outcome.plan = plan.as_dict()
        outcome.present = {}
        for transfer in plan.transfers:
            self._transfer(dest, transfer, outcome, verify=False)
        self._clear_locks(dest, [t.snapshot.name for t in plan.transfers], outcome)

    def _sync_subvolume_destination(self, dest, snapshots, outcome):
        listing = self._list_destination(dest)
        children = listing.children if listing is not None else {}
        locked = self._locked_names(dest)
        plan = plan_destination(
            snapshots, children, locked,
            incremental=not self.config.no_incremental,
            keep_backups=self.p.backup_policy.count if not self.p.backup_policy.buckets else 0,
        )
        outcome.plan = plan.as_dict()
        for conflict in plan.conflicts:
            outcome.conflicts.append(conflict.reason)
            self.result.warn("%s: %s" % (dest.id, conflict.reason))
        ours = [n for n, s in children.items()
                if s.complete and names.is_snapshot_name(self.config.prefix, n)]
        if plan.transfers and plan.transfers[0].parent is None and ours \
                and not self.config.no_incremental:
            # The chain is broken (common snapshot deleted on one side): say why this is full.
            self.result.warn("%s holds backups (%s) but none of a snapshot still at the source; "
                             "sending %s in full" % (dest.id, ", ".join(sorted(ours)[-3:]),
                                                     plan.transfers[0].snapshot.name))

        if plan.garbage:
            paths = [g.path for g in plan.garbage]
            if self.check:
                self.result.plan.extend("delete partial backup %s at %s" % (p, dest.id) for p in paths)
            else:
                LOG.warning("%s: deleting partial backups left by a failed transfer: %s",
                            dest.id, ", ".join(paths))
                self._delete_subvolumes(dest, paths, posixpath.dirname(paths[0]))
                self.result.changed = True
            outcome.partials_deleted.extend(paths)
        # Partials are gone (or never existed): the old locks of this destination are settled.
        self._clear_locks(dest, sorted(self.locks.locks), outcome)

        # Known from here on, also if a transfer fails: source retention must protect it.
        outcome.present = present = dict(plan.present)
        for transfer in plan.transfers:
            # A failure raises and ends this destination's chain: later ones need it as parent.
            present[transfer.snapshot.name] = self._transfer(dest, transfer, outcome, verify=True)
        if plan.conflicts:
            conflict = BackupError("; ".join(c.reason for c in plan.conflicts))
            outcome.fail(conflict)
            self.result.fail(conflict, where=dest.id)
        if outcome.status != "failed":
            self._apply_destination_retention(dest, snapshots, present, outcome)

    def _require_a_usable_destination(self, destinations):
        """Invariant 7: if no destination can take a backup (a mistyped path, a disk that is not
        mounted), create nothing, not even the snapshot folder. One usable one is enough, and so
        is one that is only unreachable now: its snapshot is sent when it is back (catch-up),
        unless the job requires a destination that can take it now."""
        if self.config.no_snapshot or self.config.no_transfer or self.destinations_checked:
            return
        self.destinations_checked = True
        problems = []
        for dest in destinations:
            if not dest.can_list:
                return  # a shell:// sink is only known by trying
            try:
                self._list_destination(dest, create=False)
                return
            except BackupError as err:
                self.unusable[dest.id] = err
                problems.append("%s: %s" % (dest.id, err))
        if not problems:
            return
        unreachable = [d.id for d in destinations
                       if isinstance(self.unusable.get(d.id), UnreachableError)]
        if unreachable and not self.config.require_destination:
            self.result.warn("no destination can take a backup now (%s); taking the snapshot "
                             "anyway, it is sent when %s can be reached again"
                             % ("; ".join(problems), " and ".join(unreachable)))
            return
        raise EndpointError("no snapshot taken, as no destination can take it: %s"
                            % "; ".join(problems))

    def _list_destination(self, dest, create=True):
        if dest.id in self.unusable:
            raise self.unusable[dest.id]
        try:
            return list_folder(dest, self.runner)
        except MissingPathError:
            parent = posixpath.dirname(dest.path)
            try:
                list_folder(dest, self.runner, parent)
            except MissingPathError:
                raise EndpointError("destination %s does not exist, nor does its parent folder %s"
                                    % (dest.id, parent))
            if not create:
                return None
            self.result.changed = True
            if self.check:
                self.result.plan.append("create destination folder %s" % dest.id)
                return None
            LOG.info("creating destination folder %s", dest.id)
            actions.make_folder(dest, self.runner, dest.path)
            return list_folder(dest, self.runner)

    def _transfer(self, dest, transfer, outcome, verify):
        snapshot, parent = transfer.snapshot, transfer.parent
        record = {
            "snapshot": snapshot.name,
            "parent": parent.name if parent else None,
            "mode": "incremental" if parent else "full",
            "bytes": None,
            "seconds": None,
            "status": "planned" if self.check else "running",
        }
        outcome.transfers.append(record)
        if self.check:
            self.result.plan.append("send %s to %s (%s)" % (
                snapshot.name, dest.id, "incremental from %s" % parent.name if parent else "full"))
            self.result.changed = True
            return snapshot
        LOG.info("sending %s to %s (%s)", snapshot.name, dest.id,
                 "incremental from %s" % parent.name if parent else "full")
        # Lock before the first byte moves, so a crash at any point is found by the next run.
        self.locks.add(snapshot.name, dest.id)
        if parent is not None:
            self.locks.add(parent.name, dest.id, "parent_locks")
        self._save_locks()
        self.result.changed = True
        try:
            stats = run_pipeline(self.runner, self._stages(dest, snapshot, parent))
            record["bytes"], record["seconds"] = stats.bytes_sent, round(stats.seconds, 3)
            backup = self._verify(dest, snapshot) if verify else snapshot
        except BackupError as err:
            record["status"] = "failed"
            record["error"] = str(err)
            if verify:
                self._remove_partial(dest, snapshot, outcome)
            raise TransferError("sending %s failed: %s" % (snapshot.name, err))
        except BaseException:
            # Interrupted (SIGTERM, Ctrl-C): the lock stays, the next run cleans up.
            record["status"] = "interrupted"
            raise
        record["status"] = "done"
        self.locks.discard(snapshot.name, dest.id_aliases)
        if parent is not None:
            self.locks.discard(parent.name, dest.id_aliases, "parent_locks")
        self._save_locks(durable=False)  # the backup is verified: losing this write is harmless
        LOG.info("%s: %s arrived (%s bytes in %.1fs)", dest.id, snapshot.name,
                 record["bytes"], record["seconds"])
        return backup

    def _stages(self, dest, snapshot, parent):
        debug = self.config.btrfs_debug
        send = self.source.command(btrfs.send_argv(snapshot.path, parent.path if parent else None, debug))
        stages = [Stage("btrfs send" if isinstance(self.source, LocalEndpoint) else
                        "btrfs send on %s" % self.source.host, send)]
        if self.config.progress and sys.stderr.isatty():
            import shutil  # only here: start-up time of every run
            if shutil.which("pv"):
                stages.append(Stage("pv", ["pv"], capture_stderr=False))
        if isinstance(dest, ShellEndpoint):
            stages.append(Stage("shell command %r" % dest.shell_command, dest.receive_argv()))
        else:
            receive = dest.command(btrfs.receive_argv(dest.path, debug))
            stages.append(Stage("btrfs receive" if isinstance(dest, LocalEndpoint) else
                                "btrfs receive on %s" % dest.host, receive))
        return stages

    def _verify(self, dest, snapshot):
        """Invariant 2: the received subvolume must be read-only with received_uuid = snapshot uuid."""
        backup = find_subvolume(dest, self.runner, dest.path, snapshot.name)
        if backup is None:
            raise TransferError("%s did not appear at %s after the receive" % (snapshot.name, dest.id))
        if not backup.complete or backup.received_uuid != snapshot.uuid:
            raise TransferError(
                "%s at %s did not verify (read-only: %s, received_uuid %s, expected %s)" % (
                    snapshot.name, dest.id, backup.readonly, backup.received_uuid, snapshot.uuid))
        return backup

    def _remove_partial(self, dest, snapshot, outcome):
        """Best effort right after a failure; if it fails too, the lock makes the next run do it."""
        try:
            listing = list_folder(dest, self.runner)
            found = listing.children.get(snapshot.name)
            if found is not None and not (found.complete and found.received_uuid == snapshot.uuid) \
                    and found.received_uuid in (None, snapshot.uuid):
                self._delete_subvolumes(dest, [found.path], dest.path)
                outcome.partials_deleted.append(found.path)
                LOG.warning("%s: deleted the partial backup %s", dest.id, found.path)
        except BackupError as err:
            LOG.warning("%s: could not remove the partial backup of %s now (%s); "
                        "the next run will", dest.id, snapshot.name, err)

    def _clear_locks(self, dest, snapshot_names, outcome):
        touched = []
        for name in snapshot_names:
            if self.locks.locked(name, dest.id_aliases) or \
                    self.locks.locked(name, dest.id_aliases, "parent_locks"):
                touched.append(name)
                if not self.check:
                    self.locks.discard(name, dest.id_aliases)
                    self.locks.discard(name, dest.id_aliases, "parent_locks")
        if touched:
            # Rewriting the lock file is a change too (idempotence: a rerun finds nothing to clear).
            self.result.changed = True
            outcome.locks_cleared.extend(touched)
            if self.check:
                self.result.plan.append("clear locks of %s for %s" % (", ".join(touched), dest.id))
            else:
                self._save_locks()

    # -- retention ---------------------------------------------------------------------------

    def _apply_source_retention(self, snapshots, present_by_dest, destinations):
        unknown = [d.id for d in destinations if present_by_dest.get(d.id) is None]
        if unknown and not self.p.snapshot_policy.keeps_everything:
            # Without knowing what a destination holds, its next incremental parent is unknown.
            self.result.warn("source retention skipped: could not check %s" % ", ".join(unknown))
            return
        protected = {s.name: self.locks.reasons(s.name) for s in snapshots}
        for dest in destinations:
            present = present_by_dest.get(dest.id) or {}
            common = [s.name for s in snapshots if s.name in present]
            if common:
                protected[common[-1]].append(
                    "newest snapshot that %s holds (its next incremental parent)" % dest.id)
        items = [(s.name, names.parse_time(self.config.prefix, s.name)) for s in snapshots]
        decisions = plan_retention(items, self.p.snapshot_policy, protected, self.now)
        by_name = {s.name: s for s in snapshots}
        section = self.result.retention_section("source", self.p.snapshot_policy)
        doomed = [by_name[d.name] for d in decisions if not d.keep]
        for decision in decisions:
            section.record(decision)
        if doomed:
            self._retire(self.source, doomed, self.p.folder, "source")

    def _apply_destination_retention(self, dest, snapshots, present, outcome):
        policy = self.p.backup_policy
        if policy.keeps_everything:
            return
        if self.check:
            backups = dict(present)
        else:
            listing = list_folder(dest, self.runner)
            by_name = {s.name: s for s in snapshots}
            backups = {}
            for name, sub in listing.children.items():
                if not (sub.complete and names.is_snapshot_name(self.config.prefix, name)):
                    continue
                if name in by_name and counterpart(by_name[name], [sub]) is None:
                    # It carries a snapshot's name but is not its backup: never counted or deleted.
                    self.result.warn("%s: %s" % (dest.id, describe_foreign(sub, by_name[name])))
                    continue
                backups[name] = sub
        protected = {name: [] for name in backups}
        common = [s.name for s in snapshots if s.name in present]
        if common:
            protected.setdefault(common[-1], []).append(
                "newest backup whose snapshot is still at the source (next incremental parent)")
        items = [(n, names.parse_time(self.config.prefix, n)) for n in backups]
        decisions = plan_retention(items, policy, protected, self.now)
        section = self.result.retention_section(dest.id, policy)
        for decision in decisions:
            section.record(decision)
        doomed = [backups[d.name] for d in decisions if not d.keep]
        if doomed:
            self._retire(dest, doomed, dest.path, dest.id)

    def _retire(self, endpoint, subvolumes, folder, label):
        paths = [s.path for s in subvolumes]
        if self.check:
            self.result.plan.extend("delete %s at %s (retention)" % (p, label) for p in paths)
            self.result.changed = True
            return
        LOG.info("retention at %s: deleting %s", label, ", ".join(s.name for s in subvolumes))
        try:
            self._delete_subvolumes(endpoint, paths, folder)
        except BackupError as err:
            if APPEND_ONLY_REFUSAL in str(err):
                # Invariant 10: an append-only server keeps its backups until its own retention.
                self.result.warn("%s is append-only: the server's own retention (btrfs-backup "
                                 "prune) deletes its backups, not this run" % label)
                return
            self.result.fail(err, where="retention at %s" % label)
            return
        self.result.changed = True

    # -- effects -----------------------------------------------------------------------------

    def _delete_subvolumes(self, endpoint, paths, folder):
        actions.delete_subvolumes(endpoint, self.runner, paths, folder,
                                  convert_rw=self.config.convert_rw, sync=self.config.sync)

    def _save_locks(self, durable=True):
        if not self.check:
            self.store.write(self.locks, durable)


def _not_subvolume(path):
    return ("source %s is not a btrfs subvolume (snapshots can only be taken of subvolumes; "
            "create one with 'btrfs subvolume create')" % path)
