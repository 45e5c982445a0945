# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The source side of every operation: its snapshot folder, the source check, the lock store, the next snapshot."""

from __future__ import annotations

import datetime
import posixpath

from ..model import names, snapper
from ..host.endpoints.base import Endpoint
from ..host.job_source import job_source
from ..model.errors import BackupError, ConfigError, EndpointError, MissingPathError
from ..host.listing import FolderListing, Subvolume, build_listing, find_subvolume, list_folder, listing_commands
from ..host.locks import lock_store
from ..model.job_identity import JobIdentity
from ..model.steps import CreateFolder, TakeSnapshot


def not_a_subvolume(source_id: str) -> str:
    return (f"source {source_id} is not a btrfs subvolume (snapshots can only be taken of "
            "subvolumes; create one with 'btrfs subvolume create')")


class SourceSide:
    """A source subvolume at an endpoint (resolved: see job_source) and the job's snapshot folder
    and naming scheme, from its identity."""

    #: Whether a run takes the job's snapshots (a SnapperSourceSide's are snapper's).
    takes_snapshots = True

    def __init__(self, endpoint: Endpoint, runner, identity: JobIdentity):
        self.endpoint = endpoint
        self.runner = runner
        self.identity = identity
        self.prefix = identity.prefix
        self.folder = identity.snapshot_folder
        self.filesystem = None  # the source's filesystem, once listed (rule 8)
        self._lock_answers = None  # a remote source's lock file, read with its listing
        self._source_listing = None  # a remote source's own folder, listed with a missing snapshot folder
        self.tools = None  # a remote source's EndTools, asked with its listing (None: not asked)

    @classmethod
    def of(cls, location: str, runner, *, snapshot_folder: str = "snapshot", prefix: str = "",
           ssh_options=(), ssh_sudo: bool = False, job_name: str | None = None) -> SourceSide:
        """The source side of a source location as a user gave it (ConfigError if unusable)."""
        endpoint, identity = job_source(location, ssh_options=ssh_options, ssh_sudo=ssh_sudo,
                                        snapshot_folder=snapshot_folder, prefix=prefix, job_name=job_name)
        return cls(endpoint, runner, identity)

    @property
    def id(self) -> str:
        return self.endpoint.id

    def list(self) -> FolderListing | None:
        """List the snapshot folder and check the source is a subvolume (one listing round).
        None: the folder does not exist yet (first run), and the source was checked apart."""
        source = self.endpoint.path
        try:
            listing = self._list_with_locks(source)
        except MissingPathError as err:
            if source in err.paths:
                raise EndpointError(f"source {self.id} does not exist")
            probe = self._source_listing or list_folder(self.endpoint, self.runner, source)
            if not probe.is_subvolume(source):
                raise EndpointError(not_a_subvolume(self.id))
            self.filesystem = probe
            return None
        if not listing.is_subvolume(source):
            raise EndpointError(not_a_subvolume(self.id))
        self.filesystem = listing
        return listing

    def _list_with_locks(self, source: str) -> FolderListing:
        """The snapshot folder's listing; at another host its lock file and tools are asked in the
        same remote command (one round trip for all a run needs there before its snapshot)."""
        if not self.endpoint.crosses_network:
            return list_folder(self.endpoint, self.runner, self.folder, [source])
        from ..host.capabilities import SOURCE_PROBES, source_tools_from  # a remote source's only

        # btrfs lists the source's filesystem, the snapshot folder's too: it answers also on a
        # first run, when the folder does not exist yet.
        commands = listing_commands(self.folder, [source], listed=source)
        lock_commands = self.lock_store().read_commands()
        results = self.endpoint.run_batch(self.runner, commands + lock_commands + list(SOURCE_PROBES))
        self._lock_answers = results[len(commands):len(commands) + len(lock_commands)]
        self.tools = source_tools_from(results[len(commands) + len(lock_commands):])
        try:
            return build_listing(self.folder, [source], results[:len(commands)])
        except MissingPathError as err:
            if source not in err.paths:  # the same answers, read as the listing of the source's folder
                self._source_listing = build_listing(source, (), results[1:len(commands)])
            raise

    def created_folder_listing(self) -> FolderListing | None:
        """The listing of the snapshot folder that this run has just created (or will create with
        its snapshot, create_in_next_command) at another host: empty, on the source's filesystem,
        without asking that host again; None where it is listed anew (this machine's, cheaply)."""
        if not self.endpoint.crosses_network or self.filesystem is None:
            return None
        return FolderListing(self.folder, {}, {self.endpoint.path}, filesystem=self.filesystem.filesystem,
                             uuids=self.filesystem.uuids)

    def create_folder_step(self) -> CreateFolder:
        """The step that creates the snapshot folder; at another host the command that takes the
        snapshot creates it (`mkdir -p` first: the send's, or the snapshot's own batch)."""
        self.endpoint.create_in_next_command(self.folder)
        return CreateFolder(endpoint=self.endpoint, path=self.folder, parents=True,
                            what="snapshot folder", shown=self.folder)

    def read_locks(self, store):
        """The lock file of `store` (this side's lock_store()): as read with the listing, or now."""
        answers, self._lock_answers = self._lock_answers, None
        return store.read(answers) if answers else store.read()

    def lock_store(self):
        return lock_store(self.endpoint, self.runner, self.folder)

    def snapshots(self, listing: FolderListing | None) -> tuple:
        """(read-only snapshots of the scheme, oldest first; paths of writable ones under its names)."""
        found, writable = [], []
        for sub in listing.children.values() if listing is not None else ():
            if not names.is_snapshot_name(self.prefix, sub.name):
                continue
            if sub.readonly:
                found.append(sub)
            else:
                writable.append(sub.path)
        return sorted(found, key=lambda s: names.sort_key(self.prefix, s.name)), sorted(writable)

    def next_snapshot(self, listing: FolderListing | None, now: datetime.datetime | None) -> tuple:
        """(name, time) of the next snapshot after the newest one. Names have one-second
        resolution: a run without a given `now` takes it not before the chosen second (see
        snapshot_step) rather than invent a suffix that btrfs-backup 0.3 would not recognise."""
        snapshots = self.snapshots(listing)[0]
        newest = names.parse_time(self.prefix, snapshots[-1].name) if snapshots else None
        taken = set(listing.children) if listing is not None else set()
        try:
            when = names.next_snapshot_time(self.prefix, now or datetime.datetime.now(), taken, newest)
        except ValueError as err:
            raise BackupError(f"not taking a snapshot: {err}")
        return names.format_name(self.prefix, when), when

    def take_snapshot(self, executor, name: str, label: str = "snapshot", not_before=None) -> Subvolume:
        """Take the read-only snapshot `name`, not before `not_before` (a time; None: now); in
        check mode, the executor gives a stand-in without id."""
        return executor.carry_out(TakeSnapshot(endpoint=self.endpoint, source_path=self.endpoint.path,
                                               path=posixpath.join(self.folder, name), label=label,
                                               not_before=not_before))


class SnapperSourceSide(SourceSide):
    """A source whose snapshots snapper takes (source_snapshots snapper:CONFIG): its read-only
    SOURCE/.snapshots/N/snapshot are the job's snapshots, each named `<prefix><date>_<N>` from
    snapper's list; no run takes one, and snapper's cleanup deletes them at the source."""

    takes_snapshots = False

    def __init__(self, endpoint: Endpoint, runner, identity: JobIdentity, config: str):
        super().__init__(endpoint, runner, identity)
        self.config = config

    @classmethod
    def of(cls, location: str, runner, *, source_snapshots: str, snapshot_folder: str = "snapshot",
           prefix: str = "", ssh_options=(), ssh_sudo: bool = False, job_name: str | None = None):
        endpoint, identity = job_source(location, ssh_options=ssh_options, ssh_sudo=ssh_sudo,
                                        snapshot_folder=snapshot_folder, prefix=prefix, job_name=job_name,
                                        source_snapshots=source_snapshots)
        if not endpoint.on_this_machine:
            raise ConfigError(f"source_snapshots {source_snapshots}: snapper's snapshots are sent from "
                              f"the host they are on; run the job on that host (not for {endpoint.id})")
        return cls(endpoint, runner, identity, snapper.snapper_config(source_snapshots))

    def list(self) -> FolderListing:
        listing = super().list()
        if listing is None:
            self._taken()  # the clearer error first: no such configuration, or one of another subvolume
            raise EndpointError(f"source {self.id} has no {snapper.SNAPSHOTS_FOLDER} folder: is snapper "
                                f"configuration {self.config} of it ('snapper -c {self.config} list')?")
        return listing

    def create_folder_step(self):
        raise EndpointError(f"snapper makes {self.folder}, not this run")

    def snapshots(self, listing: FolderListing | None) -> tuple:
        """(snapper's read-only snapshots of the source as the job's snapshots, oldest first;
        paths of writable ones, which are not sent)."""
        found, writable = [], []
        for taken in self._taken():
            path = taken.path(self.endpoint.path)
            sub = find_subvolume(self.endpoint, self.runner, posixpath.dirname(path), "snapshot")
            if sub is None:
                continue  # snapper is deleting it, or lists what is gone: not a snapshot to send
            if not sub.readonly:
                writable.append(path)
                continue
            found.append(sub._replace(name=names.format_snapper_name(self.prefix, taken.date, taken.number)))
        return sorted(found, key=lambda s: names.sort_key(self.prefix, s.name)), sorted(writable)

    def _taken(self) -> list:
        """snapper's list of the configuration's snapshots (SnapperSnapshot), oldest first."""
        result = self.endpoint.run(self.runner, snapper.list_argv(self.config))
        if not result.ok:
            detail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise EndpointError(f"snapper cannot list configuration {self.config}: {detail}")
        return snapper.parse_list(result.stdout, self.config, self.endpoint.path)

    def next_snapshot(self, listing, now) -> tuple:
        raise BackupError(f"snapper takes the snapshots of {self.id}, not this run")


def snapshot_info(subvolume: Subvolume) -> dict:
    """A snapshot as the results show it (a check-mode stand-in, without id, has no uuid yet)."""
    uuid = subvolume.uuid if subvolume.id is not None else None
    return {"name": subvolume.name, "path": subvolume.path, "uuid": uuid,
            "readonly": subvolume.readonly, "received_uuid": subvolume.received_uuid}
