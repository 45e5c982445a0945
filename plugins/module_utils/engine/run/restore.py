# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Restore: bring a backup back onto a btrfs filesystem, read-only as received or writable.

The stream goes `btrfs send` at the backup's endpoint -> `btrfs receive` in a staging folder
beside the target; only a verified receive becomes the target, so a failed restore leaves
nothing behind, and an existing target is never overwritten (with `force`, it is renamed aside).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import datetime
import posixpath
import uuid

from ..model import names
from ..host.endpoints.base import check_path
from ..host.endpoints.local import LocalEndpoint
from ..host.endpoints.location import parse_location
from ..host.endpoints.ssh import SshConnections
from ..model.errors import BackupError, ConfigError, EndpointError, MissingPathError
from ..host.listing import list_folder
from ..host.restore_target import restored_from
from .executor import Executor
from ..host.runner import CommandRunner
from ..model.steps import MarkOrigin, Receive, RemoveRunFiles, Rename, SnapshotAt

if TYPE_CHECKING:
    from typing import Iterable

STAGING_PREFIX = ".btrfs-backup-restore-"


def choose_backup(children: Iterable, prefix: str = "", name: str | None = None):
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


def restore(backups: str, target: str, name: str | None = None, prefix: str = "", writable: bool = False,
            force: bool = False, check_mode: bool = False, ssh_options: Iterable[str] = (), ssh_sudo: bool = False,
            runner: CommandRunner | None = None, now: datetime.datetime | None = None) -> dict:
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
        executor = Executor(runner, check_mode)
        with executor.staging(here, staging):
            done = _restore_steps(executor, origin, backup, here, staging, target, writable,
                                  aside if existing else None)
        result.update(changed=True, plan=executor.plan(), **done)
        return result


def _restore_steps(executor, origin, backup, here, staging, target, writable, aside) -> dict:
    """Received and checked first, so that a failed receive leaves an existing target as it is;
    then the target moved aside (`aside`), the new one made, and a writable one marked and cleaned.
    Returns what a real run adds to the result: the restored uuid, the run files removed."""
    executor.carry_out(Receive(origin=origin, backup=backup, parent=None, endpoint=here, folder=staging))
    if aside is not None:
        executor.carry_out(Rename(endpoint=here, path=target, new_path=aside))
    made = _carry_out(executor, SnapshotAt(endpoint=here, source_path=posixpath.join(staging, backup.name),
                                           path=target, writable=writable), aside)
    removed = None
    if writable:
        executor.carry_out(MarkOrigin(path=target, origin=marker(backup, writable)))
        removed = executor.carry_out(RemoveRunFiles(path=target))
    if made is None:  # check mode: nothing was made
        return {}
    restored = list_folder(here, executor.runner).children.get(posixpath.basename(target))
    done = {"uuid": restored.uuid if restored else None}
    if writable:
        done["stale_files_removed"] = removed
    return done


def _carry_out(executor, step, aside):
    """One restore step; when the new target cannot be made, the old one goes back (from `aside`)."""
    try:
        return executor.carry_out(step)
    except BackupError as err:
        if isinstance(step, SnapshotAt) and aside is not None:
            raise _put_back(step.endpoint, executor.runner, aside, step.path, err)
        raise


def marker(backup: object, writable: bool) -> str:
    """What a restored subvolume records about its origin, so a rerun can recognise it."""
    return "%s %s %s" % (backup.received_uuid, backup.name, "writable" if writable else "read-only")


def _put_back(here, runner, aside, target, err):
    """After the new target could not be made: the old one goes back under its name.
    Returns the error to raise, which says where the old target is if that failed too."""
    back = here.run(runner, ["mv", "-T", "--", aside, target])
    if back.ok:
        return BackupError("%s; %s is unchanged" % (err, target))
    return BackupError("%s; the earlier %s is kept at %s (moving it back failed: %s)" % (
        err, target, aside, (back.stderr.strip().splitlines() or ["mv failed"])[-1]))


def _exists(endpoint, runner, path):
    return endpoint.run(runner, ["test", "-e", path]).ok
