# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Restore: bring a backup back onto a btrfs filesystem, read-only as received or writable.

The stream goes `btrfs send` at the backup's endpoint -> `btrfs receive` in a staging folder
beside the target; only a verified receive becomes the target, so a failed restore leaves
nothing behind, and an existing target is never overwritten (with `force`, it is renamed aside).
"""

import datetime
import os
import posixpath
import uuid

from ..host import effects

from ..model import names
from ..host.endpoints import LocalEndpoint, SshConnections, check_path, parse_location
from ..model.errors import BackupError, ConfigError, EndpointError, MissingPathError
from ..host.listing import list_folder
from ..host.locks import LOCK_FILE_NAME
from .executor import Executor
from ..host.runner import CommandRunner
from ..model.steps import Receive, Rename, SnapshotAt

STAGING_PREFIX = ".btrfs-backup-restore-"
# On the restored subvolume's top folder: which backup it is, so that a rerun changes nothing.
ORIGIN_XATTR = "user.btrfs-backup.restored-from"
# Files of a run in a snapshot folder (transfer locks; an earlier version's last-run state and
# job lock): in a restored copy they describe the source as it was, and mislead its next runs.
RUN_FILE_PREFIX = ".btrfs-backup."


def choose_backup(children, prefix="", name=None):
    """Pure: the backup to restore: `name`, or the newest complete `<prefix><timestamp>` one."""
    if name is not None:
        names.validate_name(name)
        found = children.get(name)
        if found is None:
            raise ConfigError("no backup named %s here (have: %s)" % (
                name, ", ".join(sorted(children)) or "none"))
        if not found.complete:
            raise BackupError("%s is not a complete backup (read-only: %s, received_uuid: %s)" % (
                found.path, found.readonly, found.received_uuid))
        return found
    ours = [s for n, s in children.items() if s.complete and names.is_snapshot_name(prefix, n)]
    if not ours:
        raise BackupError("no complete backup with prefix %r here" % prefix)
    return max(ours, key=lambda s: names.sort_key(prefix, s.name))


def restore(backups, target, name=None, prefix="", writable=False, force=False,
            check_mode=False, ssh_options=(), ssh_sudo=False, runner=None, now=None):
    """Restore a backup from the folder `backups` (path or ssh:// URL) to the local path `target`."""
    runner = runner or CommandRunner()
    names.validate_prefix(prefix)
    origin = parse_location(backups, ssh_options, ssh_sudo, allow_shell=False)
    target = check_path(target, "restore target")
    if not target.startswith("/"):
        raise ConfigError("restore target %r must be an absolute path" % target)
    here = LocalEndpoint(posixpath.dirname(target))
    with SshConnections(runner, [origin]):
        backup = choose_backup(list_folder(origin, runner).children, prefix, name)
        try:
            at_target = list_folder(here, runner)
        except MissingPathError:
            raise EndpointError("the folder %s for the restore target does not exist" % here.path)
        result = {"changed": False, "backup": backup.path, "source": origin.id,
                  "snapshot": backup.name, "target": target, "writable": writable,
                  "moved_aside": None, "plan": []}
        present = at_target.children.get(posixpath.basename(target))
        existing = _exists(here, runner, target)
        # A read-only restore is the backup as received (its received_uuid says which one); a
        # writable one loses the received_uuid, so it carries the origin marker instead.
        same = present is not None and present.complete and \
            present.received_uuid == backup.received_uuid
        if existing and (same if not writable else restored_from(target) == marker(backup, writable)):
            return result  # this backup was restored there already, in this mode: nothing to do
        if existing:
            if not force:
                raise BackupError("%s already exists; not overwriting it (force renames it aside)"
                                  % target)
            stamp = (now or datetime.datetime.now()).strftime(names.TIMESTAMP_FORMAT)
            aside = "%s.before-restore-%s" % (target, stamp)
            result["moved_aside"] = aside
        staging = posixpath.join(here.path, STAGING_PREFIX + uuid.uuid4().hex[:12])
        # Received and checked first, so that a failed receive leaves an existing target as it is.
        steps = [Receive(origin=origin, backup=backup, endpoint=here, folder=staging)]
        if existing:
            steps.append(Rename(endpoint=here, path=target, new_path=aside))
        steps.append(SnapshotAt(endpoint=here, source_path=posixpath.join(staging, backup.name), path=target,
                                writable=writable))
        executor = Executor(runner, check_mode)
        if check_mode:
            for step in steps:
                executor.carry_out(step)
            result.update(changed=True, plan=executor.plan())
            return result
        try:
            for step in steps:
                _carry_out(executor, step, aside if existing else None)
            if writable:
                _record_origin(target, marker(backup, writable))
                result["stale_files_removed"] = remove_stale_run_files(target)
        finally:
            _remove_staging(here, runner, staging)
        restored = list_folder(here, runner).children.get(posixpath.basename(target))
        result.update(changed=True, plan=executor.plan(), uuid=restored.uuid if restored else None)
        return result


def _carry_out(executor, step, aside):
    """One restore step; when the new target cannot be made, the old one goes back (from `aside`)."""
    try:
        executor.carry_out(step)
    except BackupError as err:
        if isinstance(step, SnapshotAt) and aside is not None:
            raise _put_back(step.endpoint, executor.runner, aside, step.path, err)
        raise


def marker(backup, writable):
    """What a restored subvolume records about its origin, so a rerun can recognise it."""
    return "%s %s %s" % (backup.received_uuid, backup.name, "writable" if writable else "read-only")


def restored_from(target):
    """The origin marker of an earlier restore at `target`, or None."""
    try:
        return os.getxattr(target, ORIGIN_XATTR).decode("utf-8", "replace")
    except OSError:
        return None


def _record_origin(target, value):
    try:
        os.setxattr(target, ORIGIN_XATTR, value.encode("utf-8"))
    except OSError:
        pass  # only idempotence on reruns is lost; the restore itself is complete


def is_stale_run_file(name):
    """Pure: whether a file of a restored snapshot folder is a run's leftover, not data."""
    return name == LOCK_FILE_NAME or name.startswith(RUN_FILE_PREFIX)


def remove_stale_run_files(target):
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


def _put_back(here, runner, aside, target, err):
    """After the new target could not be made: the old one goes back under its name.
    Returns the error to raise, which says where the old target is if that failed too."""
    back = runner.run(here.command(["mv", "-T", "--", aside, target]))
    if back.ok:
        return BackupError("%s; %s is unchanged" % (err, target))
    return BackupError("%s; the earlier %s is kept at %s (moving it back failed: %s)" % (
        err, target, aside, (back.stderr.strip().splitlines() or ["mv failed"])[-1]))


def _exists(endpoint, runner, path):
    return runner.run(endpoint.command(["test", "-e", path])).ok


def _remove_staging(here, runner, staging):
    """Delete whatever the receive left in the staging folder, then the folder itself."""
    try:
        leftovers = list_folder(here, runner, staging).children
    except BackupError:
        return
    if leftovers:
        effects.delete_subvolumes(here, runner, [s.path for s in leftovers.values()], staging)
    effects.run_or_raise(here, runner, ["rmdir", "--", staging], "remove %s" % staging)
