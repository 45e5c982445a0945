# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Effects of a restore at its target on this machine: the origin marker, the run files a
restored snapshot folder brought along, the staging folder."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os

from . import btrfs, effects
from .listing import list_folder
from .locks import LOCK_FILE_NAME, STAGED_FILE_NAME
from ..model.errors import BackupError

if TYPE_CHECKING:
    from .endpoints.base import Endpoint
    from .runner import CommandRunner

# On the restored subvolume's top folder: which backup it is, so that a rerun changes nothing.
ORIGIN_XATTR = "user.btrfs-backup.restored-from"
# Files of a run in a snapshot folder (transfer locks; an earlier version's last-run state and
# job lock): in a restored copy they describe the source as it was, and mislead its next runs.
RUN_FILE_PREFIX = ".btrfs-backup."


def restored_from(target: str) -> str | None:
    """The origin marker of an earlier restore at `target`, or None."""
    try:
        return os.getxattr(target, ORIGIN_XATTR).decode("utf-8", "replace")
    except OSError:
        return None


def record_origin(target: str, value: str) -> None:
    try:
        os.setxattr(target, ORIGIN_XATTR, value.encode("utf-8"))
    except OSError:
        pass  # only idempotence on reruns is lost; the restore itself is complete


def is_stale_run_file(name: str) -> bool:
    """Pure: whether a file of a restored snapshot folder is a run's leftover, not data."""
    return name in (LOCK_FILE_NAME, STAGED_FILE_NAME) or name.startswith(RUN_FILE_PREFIX)


def remove_stale_run_files(target: str) -> None:
    """Remove run leftovers from a writable restore's snapshot folders (its top folder and the
    folders in it; a snapshot folder holds no snapshot in a backup): the paths removed."""
    removed = []
    folders = [target]
    try:
        with os.scandir(target) as entries:
            folders += [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                stale = [e.path for e in entries if e.is_file(follow_symlinks=False) and is_stale_run_file(e.name)]
            for path in stale:
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue  # unreadable folders are data the restore leaves as they came
    return sorted(removed)


def remove_rebuilt(here: Endpoint, runner: CommandRunner, source: str, folder: str, snapshots: list) -> None:
    """Undo a rebuild that failed after it made the source: the snapshots placed in the snapshot
    folder, then the source (best effort: the error that stopped the rebuild is what is reported)."""
    made = [p for p in (os.path.join(folder, name) for name in snapshots) if os.path.isdir(p)]
    if os.path.isdir(source):
        made.append(source)
    for path in made:
        here.run(runner, btrfs.delete_argv([path]))


def remove_staging(here: Endpoint, runner: CommandRunner, staging: str) -> None:
    """Delete whatever the receive left in the staging folder, then the folder itself."""
    try:
        leftovers = list_folder(here, runner, staging).children
    except BackupError:
        return
    if leftovers:
        effects.delete_subvolumes(here, runner, [s.path for s in leftovers.values()], staging)
    effects.run_or_raise(here, runner, ["rmdir", "--", staging], "remove %s" % staging)
