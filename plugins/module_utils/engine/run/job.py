# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The job runner: the source, each destination, then retention, as steps of one executor; one structured result."""

from __future__ import annotations

import collections
import contextlib
import datetime
import os

from .destination_access import DestinationFolders
from ..model import archives, hooks, job_settings, notifications, unsent
from .destination_sync import DestinationSync
from ..host.endpoints.location import parse_location
from ..host.endpoints.ssh import SshConnections
from ..model.errors import BackupError, ConfigError
from .executor import NOT_TAKEN, PENDING, EffectOptions, Executor
from ..host.joblock import JobLock, remove_legacy_lock
from ..host.locks import LockTable
from ..model.result import JobResult
from ..model.retention import Policy, parse_buckets
from .retention_phase import RetentionPhase
from ..host.runner import CommandRunner
from ..model.snapper import snapper_config
from .source_side import SnapperSourceSide, SourceSide, snapshot_info
from ..host.state_store import LEGACY_JOB_LOCK_NAME, job_lock_path, load_state
from ..model.steps import RemoveLocks
from ..model.units import parse_count, parse_duration
from ..model.stream_options import StreamOptions
from ..model.log import LOG


# Every setting of a job but its source, with its default (btrfs-backup 0.3's): the table's, and
# how the run reports (`progress`), its clock (`now`, for tests) and the job's name as its record
# names it (`job_name`, for hooks and notifications; None: from the source).
_SETTINGS = dict(job_settings.defaults(), progress=False, now=None, job_name=None)


class JobConfig(collections.namedtuple("JobConfig", ["source"] + list(_SETTINGS), defaults=_SETTINGS.values())):
    """Everything one run needs, given by keyword; the defaults are btrfs-backup 0.3's.

    `compress` ("auto", "none", "zstd", "zstd:LEVEL"), `limit_rate` and `buffer` (sizes such as
    "20M"), `send_protocol` ("auto", "1", "2"): the stream's settings (stream_options.StreamOptions).
    `allow_same_filesystem`: accept a destination on the source's own filesystem (rule 8).
    `require_destination`: take no snapshot unless a destination can take it now (btrfs-backup
    0.3 and btrbk always take it: an outage of the server should not also stop the local
    restore points). `max_unsent_snapshots`: how many snapshots source retention keeps for a
    destination that cannot be listed (0: no limit); at that many, it keeps only the newest one the
    destination holds, or, when that is not known or no destination answers, no snapshot is taken.
    `before_snapshot`, `after_snapshot` and `after_run`: hook command lines (model/hooks.py), each killed past
    `hook_timeout`; `before_snapshot_failure`: "abort" or "warn". `ping_url`, `ntfy_url`,
    `ntfy_on_success`: notifications (model/notifications.py); the URLs are never shown whole.
    `now` fixes the clock (tests); otherwise a new snapshot waits for its second.
    """

    __slots__ = ()

    def __new__(cls, source, **settings):
        config = super().__new__(cls, source, **settings)
        return config._replace(destinations=list(config.destinations), ssh_options=list(config.ssh_options),
                               before_snapshot=list(config.before_snapshot), after_snapshot=list(config.after_snapshot),
                               after_run=list(config.after_run))


def _archive_settings(config, job: str):
    """The job's settings for its archive stores (host/endpoints/archive.py, imported only by a job
    that may have one: every other run starts faster)."""
    from ..host.endpoints.archive import ArchiveSettings
    # The host's name as borg and restic record it (gethostname): the job's archives are this host's.
    return ArchiveSettings(job=job, key_file=config.archive_key_file, env_file=config.archive_env_file,
                           full_every=config.archive_full_every, host=os.uname().nodename)


class _Prepared:
    """Validated configuration: the source side, the destinations, the policies (rule 7:
    bad input is refused here, before anything is changed)."""

    def __init__(self, config, runner):
        where = dict(snapshot_folder=config.snapshot_folder, prefix=config.prefix,
                     ssh_options=config.ssh_options, ssh_sudo=config.ssh_sudo)
        if snapper_config(config.source_snapshots):
            self.source = SnapperSourceSide.of(config.source, runner, source_snapshots=config.source_snapshots,
                                               **where)
        else:
            self.source = SourceSide.of(config.source, runner, **where)
        source = self.source.endpoint
        self.snapshot_policy = Policy(parse_count(config.num_snapshots, "num_snapshots"),
                                      parse_buckets(config.preserve_snapshots))
        self.ignored_retention = None
        if not self.source.takes_snapshots and not self.snapshot_policy.keeps_everything:
            # The role gives every job a num_snapshots: ignored (logged), not refused.
            self.ignored_retention = (
                f"num_snapshots and preserve_snapshots are ignored: snapper's cleanup deletes the snapshots "
                f"of configuration {self.source.config} (its NUMBER_LIMIT and TIMELINE_LIMIT_* settings)")
            self.snapshot_policy = Policy()
        problem = hooks.snapshot_hooks_problem(self.source.takes_snapshots, config.before_snapshot,
                                               config.after_snapshot, getattr(self.source, "config", ""))
        if problem:
            raise ConfigError(problem)
        self.backup_policy = Policy(parse_count(config.num_backups, "num_backups"),
                                    parse_buckets(config.preserve_backups))
        self.max_unsent = parse_count(config.max_unsent_snapshots, "max_unsent_snapshots")
        self.stream = StreamOptions(config.compress, config.limit_rate, config.buffer, config.send_protocol,
                                    config.btrfs_debug, config.resumable, config.resumable_chunk_size)
        self.hooks = _Hooks(config)
        self.archive = None
        if config.locked_dests or any(archives.is_archive_location(spec) for spec in config.destinations):
            self.archive = _archive_settings(config, config.job_name or self.source.identity.name)
        self.destinations = []
        seen = set()
        for spec in config.destinations:
            endpoint = parse_location(spec, config.ssh_options, config.ssh_sudo, archive=self.archive)
            if endpoint.holds_archives:  # check mode lists the repository too: it needs them as well
                self.archive.require_files(endpoint.id)
            if endpoint.id not in seen:
                seen.add(endpoint.id)
                self.destinations.append(endpoint)
        if source.on_this_machine:
            for dest in self.destinations:
                if dest.on_this_machine and dest.id == os.path.realpath(self.source.folder):
                    raise ConfigError(f"destination {dest.path} is the snapshot folder itself")


def run_job(config: JobConfig, runner=None) -> JobResult:
    """Run one backup job; never raises for a failing destination (see JobResult.errors)."""
    runner = runner or CommandRunner()
    result = JobResult(check_mode=config.check_mode)
    try:
        prepared = _Prepared(config, runner)
        executor = Executor(runner, config.check_mode, EffectOptions(
            convert_rw=config.convert_rw, sync=config.sync, progress=config.progress, stream=prepared.stream))
    except BackupError as err:
        result.fail(err)
        return result
    result.identity = prepared.source.identity
    result.source = prepared.source.id
    result.snapshot_folder = prepared.source.folder
    result.max_unsent_snapshots = prepared.max_unsent
    try:
        _Run(config, prepared, executor, result).run()
    except BackupError as err:
        result.fail(err)
    return result


def _run_snapshot(subvolume) -> dict:
    """The run's snapshot as its result names it: name, path and uuid (source_side.snapshot_info)."""
    info = snapshot_info(subvolume)
    return {key: info[key] for key in ("name", "path", "uuid")}


class _Run:
    """One run: the source phase, each destination's phase, then retention; all through one executor."""

    def __init__(self, config, prepared, executor, result):
        self.config = config
        self.prepared = prepared
        self.source = prepared.source
        self.runner = executor.runner
        self.result = result
        self.executor = executor
        result.steps = self.executor.steps
        policy = prepared.backup_policy
        self.folders = DestinationFolders(self.executor, result, gate=not (config.no_snapshot or config.no_transfer),
                                          require_destination=config.require_destination, source=self.source,
                                          allow_same_filesystem=config.allow_same_filesystem)
        self.sync = DestinationSync(self.executor, result, config, self.source, self.folders,
                                    keep_backups=policy.count if not policy.buckets else 0)
        self.now = config.now or datetime.datetime.now()
        self.connections = None
        self.unsent = _UnsentSnapshots(self.folders, result, self.source, prepared.max_unsent)
        executor.stream_compressed_before = lambda dest_id: self.unsent.last_record(dest_id).get("stream_compressed")

    def run(self) -> None:
        with SshConnections(self.runner, [self.source.endpoint] + self.prepared.destinations) as connections:
            self.connections = connections
            lock = JobLock(job_lock_path(self.source.identity), wait=self.config.wait, job=self.source.id)
            with self.executor.holding(lock) as held:  # rule 5
                if held and self.source.endpoint.on_this_machine:
                    remove_legacy_lock(os.path.join(self.source.folder, LEGACY_JOB_LOCK_NAME))
                # Hooks and notifications only for a real run that holds the job (a busy job is no run).
                with self.prepared.hooks.around(self.result, self.source.identity, active=held is not None):
                    try:
                        # Listed under the lock, so no other run of this job changes it meanwhile.
                        self._phases(self._snapshot_folder())
                    finally:
                        self.executor.give_up_receive_ahead()

    def _snapshot_folder(self):
        """The snapshot folder's listing; on the first run the folder is created (None in check mode)."""
        listing = self.source.list()
        if self.source.tools is not None:
            self.executor.probe(self.source.endpoint).learn(self.source.endpoint, self.source.tools, None)
        self._sample_ahead(listing)
        if listing is None:
            self.folders.require_a_usable_one(self.prepared.destinations)
            if self.executor.carry_out(self.source.create_folder_step()) is not None:
                listing = self.source.created_folder_listing() or self.source.list()
        return listing

    def _sample_ahead(self, listing):
        """A run with no snapshot yet sends in full: the source's files are sampled for `--compress
        auto` while the destinations are surveyed (transfer.sample_source_ahead). Not where no
        snapshot is taken, nor where a before_snapshot hook may still change them."""
        if self.config.check_mode or self.config.no_snapshot or not self.source.takes_snapshots \
                or self.prepared.hooks.before_commands or self.source.snapshots(listing)[0]:
            return
        from .transfer import sample_source_ahead  # only a run that sends needs it
        sample_source_ahead(self.source.endpoint, self.prepared.destinations, self.executor.options.stream,
                            self.executor.probe(self.source.endpoint))

    def _phases(self, listing):
        self.executor.settle_later = True  # flushed below, also when a phase failed
        try:
            self._run_phases(listing)
        except BackupError:
            self._flush_locks()
            raise
        # Not after an interruption (SIGTERM, Ctrl-C): the run ends at once, and the locks it
        # leaves are cleared by the next run, which finds the backups complete.
        self._flush_locks()

    def _flush_locks(self):
        """The settled lock file that no command at the source took along (rule 3: the file says
        what is unfinished when the run ends); a failure leaves the locks, which the next run clears."""
        try:
            self.executor.flush_locks()
        except BackupError as err:
            self.result.warn(f"the lock file could not be updated after the transfers: {err}")

    def _run_phases(self, listing):
        destinations, snapshots, new_snapshot = self._source_phase(listing)
        try:
            self._phases_at_destinations(destinations, snapshots, new_snapshot)
        finally:
            self._recorded_snapshot()

    def _phases_at_destinations(self, destinations, snapshots, new_snapshot):
        """Each destination's phase, then retention (what may go depends on what they now hold)."""
        # Retention comes last: what may go depends on what the destinations now hold.
        retention = RetentionPhase(self.executor, self.result, prefix=self.source.prefix, now=self.now,
                                   source=self.source.endpoint)
        present_by_dest, synced = {}, []
        if self.config.no_transfer:
            for dest in destinations:
                present_by_dest[dest.id] = self.folders.held_without_sending(dest, snapshots)
        else:
            outcomes = self.sync.run(destinations, snapshots, new_snapshot)
            if self.sync.refused and len(self.sync.refused) == len(destinations) and new_snapshot is not None \
                    and self.source.takes_snapshots:
                self._give_back_snapshot(new_snapshot)
            # Retention matches the new backups to the snapshot by its uuid, known from here on.
            snapshots = self._with_pending_snapshot_taken(snapshots)
            for dest, outcome in zip(destinations, outcomes):
                present_by_dest[dest.id] = outcome.present
                if outcome.status != "failed" and dest.can_list:
                    retention.at_destination(dest, snapshots, outcome, self.prepared.backup_policy)
                synced.append((dest, outcome))
        snapshots = self._with_pending_snapshot_taken(snapshots)
        released = retention.at_source(self.source, snapshots, self.prepared.snapshot_policy, destinations,
                                       present_by_dest, continues_from=self.unsent.continues_from)
        # Counted after source retention: at the ceiling it may have deleted some of them.
        remaining = [s for s in snapshots if s.name not in released]
        for dest, outcome in synced:
            outcome.unsent_ceiling = self.unsent.at_ceiling.get(dest.id)
            self.unsent.count(dest, outcome, remaining)
        if not self.config.check_mode and any(dest.holds_archives for dest, _outcome in synced):
            self._record_archive_forecasts(synced)
        if not self.config.check_mode and any(dest.answers_arrival for dest, _outcome in synced):
            self._record_folder_forecasts(synced)
        self.result.locks_after = self.executor.locks.as_dict()

    def _with_pending_snapshot_taken(self, snapshots):
        """The snapshots with this run's as it was taken: a snapshot that was to ride in a send's
        command but none took along (no destination wanted it) is taken apart now."""
        pending = self.executor.pending
        if pending is None:
            return snapshots
        self.executor.take_pending_snapshot()
        if pending.taken is None:
            return snapshots  # taken, its facts unread: named as planned
        return [pending.taken if s is pending.stand_in else s for s in snapshots]

    def _recorded_snapshot(self):
        """The run's snapshot in its result, once a send (or a command apart) has taken it: with its
        uuid; none when it was not taken."""
        pending = self.executor.pending
        if pending is None or pending.state == PENDING:
            return
        if pending.state == NOT_TAKEN:
            self.result.snapshot = None
            return
        # Facts that could not be read: its stand-in, which names it without a uuid (no id).
        self.result.snapshot = _run_snapshot(pending.taken if pending.taken is not None else pending.stand_in)

    def _deleted_by_retention(self):
        """Where -> the names retention deleted there in this run."""
        deleted = collections.defaultdict(set)
        for section in self.result.retention:
            deleted[section.where].update(d["name"] for d in section.deleted)
        return deleted

    def _give_back_snapshot(self, snapshot):
        """Rule 7 for a run planned on a forecast: the survey beside the stream found that its one
        destination cannot take backups (a backup disk that is not mounted, say), and its receive
        refused the stream. The snapshot taken for it goes again, as if the run had asked first."""
        from ..model.errors import EndpointError
        from ..model.steps import Delete
        self.executor.carry_out(Delete(endpoint=self.source.endpoint, paths=(snapshot.path,), folder=self.source.folder,
                                       what="snapshot ", where=None, reason="no destination can take it"))
        self.result.snapshot = None
        raise EndpointError(f"no snapshot kept, as no destination can take it: {snapshot.name}, taken before "
                            f"{' and '.join(self.sync.refused)} answered, was deleted again")

    def _record_folder_forecasts(self, synced):
        """What each plain ssh host's folder holds after this run, for the next run's plan
        (run/folder_forecast.py): what it held and received, less what retention deleted there,
        with the host's tools and the folder's filesystem as its receive printed it; not known (the
        next run surveys first) after a failure there, or where no receive said its filesystem."""
        from ..model.folder_forecast import forecast_entry
        from .folder_forecast import recorded_filesystem, save_forecasts
        probe, deleted, entries = self.executor.ends, self._deleted_by_retention(), {}
        for dest, outcome in synced:
            if not dest.answers_arrival:
                continue
            # A run that received nothing there keeps the filesystem recorded before: the next
            # receive checks it anyway, and refuses the stream where it is another.
            filesystem = dest.filesystem_seen or dest.expect_filesystem or \
                recorded_filesystem(self.source.identity, dest)
            known = probe is not None and probe.knows(dest) and probe.is_plain_host(dest)
            if outcome.status != "ok" or outcome.backups is None or not known or filesystem is None:
                entries[dest.id] = None
                continue
            tools = probe(dest)
            entries[dest.id] = forecast_entry({name: sub for name, sub in outcome.backups.items()
                                               if name not in deleted[dest.id]}, filesystem, tools.zstd, tools.proto2)
        save_forecasts(self.source.identity, entries)

    def _record_archive_forecasts(self, synced):
        """What each archive store holds after this run, for the next run's forecast
        (run/archive_forecast.py): what it held and received, less what retention deleted there;
        not known (the next run lists first) after a failure there."""
        from .archive_forecast import save_forecasts
        deleted = self._deleted_by_retention()
        left, states = {}, {}
        for dest, outcome in synced:
            if dest.holds_archives:
                ok = outcome.status == "ok" and outcome.backups is not None
                left[dest.id] = {name: sub for name, sub in outcome.backups.items()
                                 if name not in deleted[dest.id]} if ok else None
                states[dest.id] = dest.repository_state() if ok else None
        save_forecasts(self.source.identity, left, states)

    def _source_phase(self, listing):
        """Locks, the destinations to serve, and the new snapshot: (destinations, snapshots, new snapshot)."""
        store = self.source.lock_store()
        self.executor.locks = locks = self.source.read_locks(store) if listing is not None else LockTable()
        self.executor.store = store
        self.result.locks_before = locks.as_dict()
        snapshots, writable = self.source.snapshots(listing)
        for path in writable:
            self.result.warn(f"{path} is writable, so it is not used as a snapshot")
        destinations = self._with_locked_destinations(locks)
        if self.config.remove_locks:
            self._remove_locks(destinations, locks)
        if not self.source.takes_snapshots:
            return destinations, snapshots, self._snapper_snapshot(snapshots, locks)
        if self.config.no_snapshot:
            return destinations, snapshots, None
        if self.unsent.ceiling(destinations, snapshots) == unsent.STOPPED:
            return destinations, snapshots, None
        ahead = self._receive_ahead(listing, destinations)
        self.folders.require_a_usable_one(destinations)
        # Nothing runs between the snapshot and its send: it rides in the send's command.
        self.executor.snapshot_in_send = not self.prepared.hooks.after_snapshot_commands
        try:
            self.prepared.hooks.before_snapshot(self.result)
            name, self.now = ahead or self.source.next_snapshot(listing, self.config.now)
            new_snapshot = self.source.take_snapshot(self.executor, name,
                                                     not_before=None if self.config.now else self.now)
            if self.executor.pending is None:  # else recorded once its send has taken it
                self.result.snapshot = _run_snapshot(new_snapshot)
        finally:  # also when a before hook or the snapshot failed: what they quiesced is released
            self.prepared.hooks.after_snapshot(self.result)
        return destinations, snapshots + [new_snapshot], new_snapshot

    def _receive_ahead(self, listing, destinations):
        """(name, time) of this run's snapshot, chosen before its one destination is surveyed,
        where the receive there starts now (transfer.receive_ahead): a plain ssh host whose shell
        received the last stream that arrived there (run record). None otherwise: several
        destinations, check mode, a run that sends nothing (-T), a before_snapshot hook (the name
        is the time after it), an always-staged transfer."""
        if self.config.check_mode or self.config.no_transfer or self.prepared.hooks.before_commands \
                or len(destinations) != 1:
            return None
        dest = destinations[0]
        record = self.unsent.last_record(dest.id)
        compressed = record.get("stream_compressed")
        if not record.get("receive_in_shell") or compressed is None:
            return None
        from ..host.overlap import InBackground  # only a run that sends to an ssh host needs them
        from .transfer import may_receive_early, receive_ahead
        if not may_receive_early(dest, self.executor.options.stream):
            return None
        name, when = self.source.next_snapshot(listing, self.config.now)
        predicted = self._folder_forecast(dest)
        if predicted is not None:
            dest.expect_filesystem = predicted.filesystem  # its receive's command checks it
        started = receive_ahead(dest, name, self.executor.options.stream, self.runner, compressed)
        if started is None:
            dest.expect_filesystem = None
            return None
        if predicted is not None:
            self._plan_on_forecast(dest, predicted)
        self.executor.receive_ahead = (name, dest.id, started)
        InBackground(_load_a_sends_modules)
        return name, when

    def _folder_forecast(self, dest):
        """What the job's last run left at the folder of `dest` (folder_forecast.Predicted), where
        this run may plan on it: its snapshot is taken here and sent at once, while the host is
        surveyed. None: surveyed first (a lock of this job there to settle, a job that requires
        a destination that answers now, a source at another host, nothing recorded)."""
        if self.config.require_destination or not self.source.endpoint.on_this_machine \
                or self.executor.locks.names_locked_by(dest.id_aliases):
            return None
        from .folder_forecast import load_forecast
        return load_forecast(self.source.identity, dest)

    def _plan_on_forecast(self, dest, predicted):
        """`dest` planned on `predicted`: its tools as recorded (a plain ssh host), its survey begun."""
        from ..model.server_mode import NOT_SERVE
        from .folder_forecast import FolderForecast
        self.executor.probe(self.source.endpoint).learn(dest, predicted.tools, NOT_SERVE)
        self.sync.forecasts[dest.id] = FolderForecast(dest, self.runner, predicted, self.folders.accept_survey)
        self.folders.on_forecast.add(dest.id)
        LOG.info("%s: planned on what this job's last run left there, surveyed beside the stream", dest.id)

    def _snapper_snapshot(self, snapshots, locks):
        """A snapper job's newest snapshot is this run's (None: there is none, or --no-snapshot);
        locked snapshots that snapper deleted are said."""
        if self.prepared.ignored_retention:
            LOG.warning("%s", self.prepared.ignored_retention)
        present = {s.name for s in snapshots}
        for name in sorted(set(locks.locks) - present):
            reasons = locks.reasons(name)
            if reasons:
                self.result.warn(f"snapper deleted {name}, which the lock file keeps ({'; '.join(reasons)}): "
                                 "those destinations continue from the newest backup whose snapshot "
                                 "snapper still has, or in full")
        if not snapshots or self.config.no_snapshot:
            if not snapshots:
                self.result.warn(f"snapper configuration {self.source.config} has no read-only "
                                 "snapshot yet: nothing to send")
            return None
        newest = snapshots[-1]
        self.result.snapshot = _run_snapshot(newest)
        return newest

    def _with_locked_destinations(self, locks):
        """The given destinations, plus (--locked-dests) every one that holds a lock."""
        destinations = list(self.prepared.destinations)
        if not self.config.locked_dests:
            return destinations
        known = {d.id for d in destinations}
        for dest_id in locks.destinations():
            if dest_id in known:
                continue
            try:
                endpoint = parse_location(dest_id, self.config.ssh_options, self.config.ssh_sudo,
                                          archive=self.prepared.archive)
            except ConfigError as err:
                self.result.warn(f"locked destination {dest_id!r} cannot be used: {err}")
                continue
            destinations.append(self.connections.attach(endpoint))
            known.add(dest_id)
        return destinations

    def _remove_locks(self, destinations, locks):
        for dest in destinations:
            touched = locks.names_locked_by(dest.id_aliases)
            if touched:
                self.executor.carry_out(RemoveLocks(destination=dest, names=tuple(touched)))
                self.result.locks_removed.extend({"snapshot": name, "destination": dest.id} for name in touched)


class _Hooks:
    """A job's hooks and notifications (checked when the run is prepared): the commands before
    and after the snapshot, and around the run its start and end pings and the after_run commands."""

    def __init__(self, config):
        self.config = config
        self.before_commands = hooks.hook_argvs(config.before_snapshot, hooks.BEFORE_SNAPSHOT)
        self.after_snapshot_commands = hooks.hook_argvs(config.after_snapshot, hooks.AFTER_SNAPSHOT)
        self.after_run_commands = hooks.hook_argvs(config.after_run, hooks.AFTER_RUN)
        self.on_failure = hooks.check_failure_choice(config.before_snapshot_failure)
        self.timeout = parse_duration(config.hook_timeout, "hook_timeout")
        self.ping_url = notifications.check_url(config.ping_url, "ping_url") if config.ping_url else ""
        self.ntfy_url = notifications.check_url(config.ntfy_url, "ntfy_url") if config.ntfy_url else ""
        self.job = None
        self.active = False

    @property
    def notifies(self) -> bool:
        return bool(self.ping_url or self.ntfy_url)

    @contextlib.contextmanager
    def around(self, result, identity, *, active):
        """The start ping, then the run; after it, also when it failed or was stopped, the
        after_run hooks and the end's notifications. A BackupError of the run is recorded in
        `result` here, so that the hooks and the pings know the run failed."""
        self.active = active and not self.config.check_mode
        self.job = self.config.job_name or identity.name
        if not self.active:
            if self.config.check_mode and (self.before_commands or self.after_snapshot_commands
                                           or self.after_run_commands or self.notifies):
                LOG.info("check mode: no hook runs and no notification is sent")
            yield
            return
        tail = _log_tail() if self.notifies else None  # the last lines go with a failure ping
        try:
            self._notify(result, notifications.START)
            try:
                yield
            except BackupError as err:
                result.fail(err)
            except BaseException as err:  # stopped: the after hooks still undo what the before hooks did
                result.fail(BackupError(f"the run was stopped ({type(err).__name__})"))
                self._after_run(result)
                self._notify(result, notifications.FAILURE, tail)
                raise
            self._after_run(result)
            self._notify(result, notifications.FAILURE if result.failed else notifications.SUCCESS, tail)
        finally:
            if tail is not None:
                LOG.removeHandler(tail)

    def before_snapshot(self, result) -> None:
        """Run the before_snapshot commands in order; one that fails stops the run (BackupError:
        no snapshot) or, with before_snapshot_failure warn, is a warning."""
        if not self.active:
            return
        from ..host.hooks import run_hook
        environment = hooks.snapshot_environment(job=self.job, source=result.source)
        for argv in self.before_commands:
            outcome = run_hook(argv, timeout=self.timeout, environment=environment, label=hooks.BEFORE_SNAPSHOT)
            verdict = hooks.before_snapshot_verdict(self.on_failure, outcome)
            if verdict == hooks.ABORT:
                raise BackupError(hooks.failure_message(hooks.BEFORE_SNAPSHOT, outcome, self.timeout)
                                  + ": no snapshot was taken")
            if verdict == hooks.WARN:
                result.warn(hooks.failure_message(hooks.BEFORE_SNAPSHOT, outcome, self.timeout))

    def after_snapshot(self, result) -> None:
        """Run the after_snapshot commands, told the snapshot (none if it was not taken)."""
        if self.active:
            self._run_all(hooks.AFTER_SNAPSHOT, self.after_snapshot_commands, result, hooks.snapshot_environment(
                job=self.job, source=result.source, snapshot=result.snapshot))

    def _run_all(self, setting, commands, result, environment) -> None:
        """Run each command; one that fails is a warning (the run goes on)."""
        if not commands:
            return
        from ..host.hooks import run_hook
        for argv in commands:
            outcome = run_hook(argv, timeout=self.timeout, environment=environment, label=setting)
            if not outcome.ok:
                result.warn(hooks.failure_message(setting, outcome, self.timeout))

    def _after_run(self, result) -> None:
        """Every after_run command, each told the run's outcome; one that fails is a warning."""
        self._run_all(hooks.AFTER_RUN, self.after_run_commands, result, hooks.run_environment(
            job=self.job, source=result.source, snapshot=result.snapshot, failed=result.failed,
            destinations=result.destinations, errors=result.errors))

    def _notify(self, result, event, tail=None) -> None:
        """Send the event's requests (`tail`: the LogTail whose lines go with them); one that is
        not delivered is a warning, never a failure."""
        if not self.notifies:
            return
        from ..host import notify
        log_tail = tail.text() if tail is not None else ""
        text = notifications.summary(job=self.job, failed=result.failed, snapshot=result.snapshot,
                                     errors=result.errors,
                                     failed_destinations=[d.id for d in result.destinations if d.status == "failed"])
        for url, request in notifications.run_requests(
                event=event, ping_url=self.ping_url, ntfy_url=self.ntfy_url,
                ntfy_on_success=self.config.ntfy_on_success, job=self.job, summary=text, log_tail=log_tail):
            problem = notify.send(url, request)
            if problem:
                result.warn(problem)


def _load_a_sends_modules() -> None:
    """Import what a snapshot's send needs while the survey's answer is awaited: otherwise those
    imports come between that answer and the stream's first byte."""
    import importlib

    for name in (".sending", "..host.compressibility", "..host.hooks"):
        importlib.import_module(name, __package__)


class _UnsentSnapshots:
    """Snapshots that wait for destinations out of reach (max_unsent_snapshots): what the run
    does at the ceiling before it takes a snapshot, and how many wait for each one after it."""

    def __init__(self, folders, result, source, max_unsent):
        self.folders = folders
        self.result = result
        self.source = source
        self.max_unsent = max_unsent
        self.recorded = None  # the last-run state's destinations, read when needed
        # Destinations out of reach at max_unsent_snapshots: id -> unsent.RELEASED or STOPPED,
        # and (released) id -> the snapshot each continues from, which source retention keeps.
        self.at_ceiling = {}
        self.continues_from = {}

    def last_record(self, dest_id) -> dict:
        """What the job's last-run state knows of a destination, read once per run ({}: nothing)."""
        return self._recorded(dest_id)

    def _recorded(self, dest_id) -> dict:
        """What the job's last-run state knows of a destination ({} without one: not readable)."""
        if self.recorded is None:
            try:
                self.recorded = (load_state(self.source.identity) or {}).get("destinations") or {}
            except (BackupError, OSError):
                self.recorded = {}  # the run's record reports a damaged state; the run goes on
        return self.recorded.get(dest_id) or {}

    def ceiling(self, destinations, snapshots) -> str | None:
        """What this run does for the destinations that cannot be listed now and have
        max_unsent_snapshots waiting for them (None: there is none): RELEASED, the snapshot is
        taken and source retention keeps for each only the snapshot it continues from; STOPPED, no
        snapshot is taken and the run fails saying why (see unsent.at_ceiling)."""
        ceiling = self.max_unsent
        if not unsent.ceiling_reached(len(snapshots), ceiling):
            return None  # fewer snapshots than the ceiling: no need to read the state
        names = [s.name for s in snapshots]
        capped = []  # (destination, its record, what waits for it, why it cannot be listed)
        for dest in destinations:
            if not dest.can_list:
                continue
            record = self._recorded(dest.id)
            waiting = unsent.waiting_for(names, self.source.prefix, record.get("newest_backup"))
            if not unsent.ceiling_reached(len(waiting), ceiling):
                continue
            try:
                self.folders.listing(dest, create=False)
                continue  # it is back: this run sends what waits for it
            except BackupError as err:
                self.folders.unusable[dest.id] = err  # not asked again in this run
                capped.append((dest, record, waiting, err))
        if not capped:
            return None
        parents = {dest.id: unsent.continues_from(names, record.get("newest_backup"))
                   for dest, record, _waiting, _err in capped}
        others = [d for d in destinations if d.id not in parents]
        decision = unsent.at_ceiling(parents, self._one_answers(others))
        for dest, record, waiting, err in capped:
            self.at_ceiling[dest.id] = decision
            if decision == unsent.RELEASED:
                self.continues_from[dest.id] = parents[dest.id]
                self.result.warn(unsent.release_warning(dest.id, len(waiting), record.get("last_success"),
                                                        ceiling, parents[dest.id], err))
            else:
                self.result.fail(BackupError(unsent.ceiling_message(
                    dest.id, len(waiting), record.get("last_success"), ceiling, err,
                    parent_known=parents[dest.id] is not None)))
        return decision

    def _one_answers(self, destinations) -> bool:
        """Whether one of these destinations can be listed now (a stream sink, only known by
        trying, does not count: a run that cannot know must not let snapshots go)."""
        for dest in destinations:
            if not dest.can_list:
                continue
            try:
                self.folders.listing(dest, create=False)
                return True
            except BackupError as err:
                self.folders.unusable[dest.id] = err
        return False

    def count(self, dest: object, outcome: object, snapshots: list) -> None:
        """How many snapshots still wait for a destination after the run (what it holds when it
        was listed, its recorded newest backup when not); a warning while they are kept for it."""
        if not dest.can_list:
            return
        names = [s.name for s in snapshots]
        if outcome.present is not None:
            held = [s.name for s in snapshots if s.name in outcome.present]
            outcome.unsent_snapshots = len(unsent.waiting_for(names, self.source.prefix, held[-1] if held else None))
            return
        record = self._recorded(dest.id)
        waiting = unsent.waiting_for(names, self.source.prefix, record.get("newest_backup"))
        outcome.unsent_snapshots = len(waiting)
        if waiting and outcome.unsent_ceiling != unsent.RELEASED:  # that run warned already
            self.result.warn(unsent.waiting_warning(dest.id, len(waiting), record.get("last_success"),
                                                    self.max_unsent))


def _log_tail():
    """A LogTail on the run's log (host/notify.py: imported only by a run that notifies)."""
    from ..host import notify

    tail = notify.LogTail()
    LOG.addHandler(tail)
    return tail
