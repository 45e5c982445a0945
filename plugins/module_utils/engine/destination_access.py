# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Which destinations can take a backup now, and their folders' listings (a missing folder is created)."""

from __future__ import annotations

import posixpath

from .errors import BackupError, EndpointError, MissingPathError, UnreachableError
from .listing import FolderListing, list_folder
from .planning import present_backups
from .steps import CreateFolder


class DestinationFolders:
    """The backup folders of a run's destinations, listed through the executor's runner.

    `gate` is False when the run takes no snapshot or sends nothing: then no destination has
    to be usable before the snapshot."""

    def __init__(self, executor, result, *, gate, require_destination):
        self.executor = executor
        self.runner = executor.runner
        self.result = result
        self.gate = gate
        self.require_destination = require_destination
        # Destinations that failed the check before the snapshot: a host that never answers
        # costs a ConnectTimeout, so it is not asked again in the same run.
        self.unusable = {}

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
