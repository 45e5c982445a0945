# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Which destinations can take a backup now, and their folders' listings (a missing folder is created)."""

from __future__ import annotations

import posixpath

from ..model.errors import BackupError, EndpointError, MissingPathError, NotBtrfsError, UnreachableError
from ..host.listing import FolderListing, list_folder
from ..model.planning import present_backups
from ..model.steps import CreateFolder
from ..host.subvol_info import subvolume_info


class DestinationFolders:
    """The backup folders of a run's destinations, listed through the executor's runner.

    `gate` is False when the run takes no snapshot or sends nothing: then no destination has
    to be usable before the snapshot."""

    def __init__(self, executor, result, *, gate, require_destination, source=None,
                 allow_same_filesystem=False):
        self.executor = executor
        self.runner = executor.runner
        self.result = result
        self.gate = gate
        self.require_destination = require_destination
        self.source = source  # the SourceSide, whose filesystem a destination must not share (rule 8)
        self.allow_same_filesystem = allow_same_filesystem
        # Destinations that failed the check before the snapshot: a host that never answers
        # costs a ConnectTimeout, so it is not asked again in the same run.
        self.unusable = {}
        # Each destination's listing, asked once per run: the check before the snapshot is also
        # the plan's (nothing changes a destination's folder in between but this run's own steps).
        self._listings = {}
        self._missing = {}  # a destination whose folder is missing -> its parent's listing
        # ssh hosts planned on what the job's last run left there, surveyed beside the stream
        # (run/folder_forecast.py): usable without asking them first.
        self.on_forecast = set()

    def require_a_usable_one(self, destinations) -> None:
        """Rule 7: if no destination can take a backup (a mistyped path, a disk that is not
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
            if self._took_the_last_run(dest) or dest.id in self.on_forecast:
                return
            try:
                self.listing(dest, create=False)
                return
            except BackupError as err:
                self.unusable[dest.id] = err
                problems.append(f"{dest.id}: {err}")
        if not problems:
            return
        unreachable = [d.id for d in destinations if isinstance(self.unusable.get(d.id), UnreachableError)]
        if unreachable and not self.require_destination:
            self.result.warn(f"no destination can take a backup now ({'; '.join(problems)}); taking the "
                             f"snapshot anyway, it is sent when {' and '.join(unreachable)} can be reached again")
            return
        raise EndpointError("no snapshot taken, as no destination can take it: " + "; ".join(problems))

    def listing(self, dest, create=True) -> FolderListing | None:
        """The destination folder's subvolumes; a missing folder is created when its parent exists
        (None in check mode, or when `create` is False)."""
        if dest.id in self.unusable:
            raise self.unusable[dest.id]
        if dest.id in self._listings:
            return self._listings[dest.id]
        try:
            listing = self._listing(dest, create)
        except NotBtrfsError as err:
            raise EndpointError(not_mounted_hint(err)) from err
        if listing is not None:
            self._listings[dest.id] = listing
        return listing

    def _took_the_last_run(self, dest) -> bool:
        """An archive store that took the job's last run there (its forecast is recorded): usable
        without listing it first, which would cost the run the store's whole opening before the
        snapshot (it is listed beside the stream; a failure there fails that destination alone).
        Not with require_destination: that job takes a snapshot only for a store that answers now."""
        if not dest.holds_archives or self.source is None or self.executor.check_mode or self.require_destination \
                or not getattr(self.runner, "kernel_listing", False):  # listed beside a stream: a real runner
            return False
        from .archive_forecast import recorded_stores  # only a run with an archive store needs it
        return dest.id in recorded_stores(self.source.identity)

    def known(self, dest) -> bool:
        """Whether the destination was listed in this run."""
        return dest.id in self._listings

    def remember(self, dest, listing) -> None:
        """A listing this run got otherwise (an archive store listed beside a stream)."""
        self._listings[dest.id] = listing

    def _listing(self, dest, create):
        if dest.holds_archives:  # a repository that cannot be listed is a clear error: no folder to create
            return dest.list_backups(self.runner)
        parent_listing = self._missing.get(dest.id)
        if parent_listing is None:
            try:
                return self._refuse_on_source_filesystem(dest, self._list_surveying(dest), dest.path)
            except MissingPathError:
                parent = posixpath.dirname(dest.path)
                try:
                    # A missing folder is created only where its parent is not on the source's disk.
                    parent_listing = self._refuse_on_source_filesystem(
                        dest, list_folder(dest, self.runner, parent), parent)
                except MissingPathError:
                    raise EndpointError(missing_destination(dest, parent, self._on_backup_server(dest)))
                self._missing[dest.id] = parent_listing
        if not create:
            return None
        if dest.crosses_network and self._receive_makes_folder(dest):
            # The receive's own command creates it (`mkdir -p && btrfs receive`): one remote
            # command less; a serve that does not say it takes that form gets a mkdir of its own.
            dest.create_in_next_command(dest.path)
        created = self.executor.carry_out(CreateFolder(endpoint=dest, path=dest.path, parents=False,
                                                       what="destination folder", shown=dest.id))
        del self._missing[dest.id]
        # The folder this run just made is empty, on its parent's filesystem: nothing to ask.
        return None if created is None else FolderListing(dest.path, {}, set(), filesystem=parent_listing.filesystem,
                                                          uuids=parent_listing.uuids)

    def _list_surveying(self, dest) -> FolderListing:
        """The destination folder's listing; at another host, in the same remote command, its
        tools and whether it is a backup server's serve (destination_survey): one round trip
        tells the run all it needs before sending."""
        if not dest.crosses_network or self.source is None:
            return list_folder(dest, self.runner)
        probe = self.executor.probe(self.source.endpoint)
        if probe.knows(dest):
            return list_folder(dest, self.runner)
        from ..host.destination_survey import survey  # a run with only local destinations starts without it
        try:
            found = survey(dest, self.runner)
        except UnreachableError:
            raise
        except BackupError:
            # A serve from before the mode probe refuses the whole batch: list alone, and the
            # tools are asked apart, without that probe (capabilities.py).
            probe.refused_mode_probe(dest)
            return list_folder(dest, self.runner)
        return self._learned(dest, found)

    def _learned(self, dest, found) -> FolderListing:
        """A survey's answer: the host's tools learned, its folder's listing, or its problem raised."""
        self.executor.probe(self.source.endpoint).learn(dest, found.tools, found.mode, found.features)
        if found.problem is not None:
            raise found.problem
        return found.listing

    def accept_survey(self, dest, found) -> FolderListing:
        """A survey's answer read beside a stream planned on a forecast (run/folder_forecast.py): the
        host's tools learned, and its folder's listing, refused as a listing asked first would be
        (a missing folder, not btrfs, the source's own filesystem: rule 8)."""
        return self._refuse_on_source_filesystem(dest, self._learned(dest, found), dest.path)

    def _receive_makes_folder(self, dest) -> bool:
        """Whether the receive's own command may create the missing folder at `dest` (a plain ssh
        host, or a serve that said it accepts `mkdir -p -- F && ... btrfs receive F`)."""
        return self.source is None or self.executor.probe(self.source.endpoint).receive_makes_folder(dest)

    def _on_backup_server(self, dest) -> bool:
        """Whether `dest` is a backup server's serve key (asked with its tools, once per run)."""
        return self.source is not None and self.executor.probe(self.source.endpoint).is_serve(dest)

    def _refuse_on_source_filesystem(self, dest, listing, path):
        """Rule 8: a backup on the source's own filesystem is lost with it; refused unless allowed."""
        source = self.source
        if self.allow_same_filesystem or source is None or source.filesystem is None:
            return listing
        if on_same_filesystem(source.endpoint, source.filesystem, source_uuids(source), dest, listing):
            raise EndpointError(
                f"destination {dest.id} is on the same btrfs filesystem as the source {source.id} "
                f"({listing.filesystem}), so a backup there is lost with the source's disk: refused "
                f"(rule 8). If a backup disk should be mounted at {path}, it is not mounted; mount "
                f"it, or give --allow-same-filesystem to keep backups there on purpose")
        return listing

    def held_without_sending(self, dest, snapshots) -> dict | None:
        """What a destination holds, without sending (-T): retention still has to protect it."""
        if not dest.can_list:
            return {}
        try:
            listing = dest.list_backups(self.runner) if dest.holds_archives else list_folder(dest, self.runner)
            return present_backups(snapshots, listing.children.values())
        except BackupError as err:
            self.result.warn(f"{dest.id} could not be checked: {err}")
            return None


def source_uuids(source) -> frozenset:
    """The UUIDs by which a destination's listing shows that it shares the source's filesystem:
    the source's snapshots (all subvolumes, where the listing had them)."""
    listing = source.filesystem
    if listing.uuids is not None:
        return listing.uuids
    found = {s.uuid for s in listing.children.values() if s.uuid}
    if source.endpoint.kernel_answers(source.runner):
        try:
            found.add(subvolume_info(source.endpoint.path)[1])  # the source itself (a first run)
        except OSError:
            pass
    return frozenset(found)


def missing_destination(dest, parent, on_backup_server: bool) -> str:
    """Pure: the error for a destination folder whose parent is missing too. On a backup server's
    serve key, that parent is the host's folder, which the role makes: the server is at fault."""
    if on_backup_server:
        return (f"the backup server {dest.host} has no folder {parent} for this host: did the role's "
                f"server part fail there, or is its backup disk not mounted? (destination {dest.id})")
    return f"destination {dest.id} does not exist, nor does its parent folder {parent}"


def not_mounted_hint(err: NotBtrfsError) -> str:
    """Pure: a destination that is not on btrfs is most often a backup disk that did not mount,
    leaving its empty mount point on the system disk: say so, as for rule 8."""
    return (f"{err}: is the backup disk mounted? Backups are received only on btrfs; if a backup "
            f"disk should be mounted at {err.path}, mount it, or choose a folder on btrfs")


def on_same_filesystem(source, source_listing, uuids, dest, dest_listing) -> bool:
    """Pure: whether a destination's listing is of the source's own filesystem (endpoints
    `source` and `dest`): the same mount source on one machine, or (any host, e.g.
    ssh://localhost) a subvolume UUID of the source's filesystem among the destination's."""
    if source.shares_mounts_with(dest) and source_listing.filesystem:
        return source_listing.filesystem == dest_listing.filesystem
    return bool(dest_listing.uuids and uuids and not uuids.isdisjoint(dest_listing.uuids))
