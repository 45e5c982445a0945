# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Rebuild a lost source from its backups, so that the job's next run continues incrementally.

The newest backup (and, if wanted, older ones) is received into a staging folder beside the
source, the source is made as a writable snapshot of the newest, and each received backup gets a
read-only snapshot in the job's snapshot folder. A read-only snapshot of a received subvolume
keeps its received_uuid, which is its original snapshot's uuid: every destination that holds that
backup finds it as its counterpart (rule 1, planning.present_backups), and a stream sent from it
names that uuid as its parent, so `btrfs receive` finds the backup there by its received_uuid.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os
import posixpath
import time
import uuid

from ..model import names
from ..host import recording, restore_target
from ..host.endpoints.local import LocalEndpoint
from ..host.endpoints.location import parse_location
from ..host.endpoints.ssh import SshConnections
from ..host.job_source import job_source
from ..host.joblock import JobLock
from ..host.listing import list_folder
from ..host.runner import CommandRunner
from ..host.subvol_info import is_subvolume_root
from ..host.state_store import job_lock_path
from ..model.errors import BackupError, ConfigError, EndpointError, MissingPathError
from ..model.job_identity import DEFAULT_SNAPSHOT_FOLDER
from ..model.steps import CreateFolder, Receive, RemoveRunFiles, SnapshotAt
from .executor import Executor
from .restore import STAGING_PREFIX, choose_backup

if TYPE_CHECKING:
    from typing import Iterable, Mapping


def choose_backups(children: Mapping, prefix: str = "", name: str | None = None, count: int = 1) -> list:
    """Pure: the backups to bring back, oldest first: `name` (default: the newest complete one of
    the job's naming scheme) and up to `count` - 1 complete ones of the scheme before it. A backup
    named outside the scheme is refused: the job's runs would not take it for one of its snapshots."""
    if count < 1:
        raise ConfigError("the number of backups to bring back must be at least 1, not %d" % count)
    newest = choose_backup(children, prefix, name)
    if not names.is_snapshot_name(prefix, newest.name):
        raise ConfigError("%s is not a snapshot name of this job (prefix %r): its runs would not use it "
                          "as a parent; choose a backup named <prefix><timestamp>" % (newest.name, prefix))
    newest_key = names.sort_key(prefix, newest.name)
    older = sorted((s for n, s in children.items()
                    if s.complete and names.is_snapshot_name(prefix, n) and names.sort_key(prefix, n) < newest_key),
                   key=lambda s: names.sort_key(prefix, s.name))
    return older[len(older) - (count - 1):] + [newest] if count > 1 else [newest]


def rebuild_source(backups: str, source: str, *, snapshot_folder: str = DEFAULT_SNAPSHOT_FOLDER, prefix: str = "",
                   name: str | None = None, count: int = 1, job_name: str | None = None,
                   check_mode: bool = False, ssh_options: Iterable[str] = (), ssh_sudo: bool = False,
                   runner: CommandRunner | None = None) -> dict:
    """Make the lost source `source` (a local path that must not exist) anew from the backup
    folder `backups` (path or ssh:// URL) of the job with this snapshot folder and prefix."""
    runner = runner or CommandRunner()
    origin = parse_location(backups, ssh_options, ssh_sudo, allow_shell=False)
    if not isinstance(source, str) or not source.startswith("/"):
        raise ConfigError("the source to rebuild %r must be an absolute path" % (source,))
    endpoint, identity = job_source(source, snapshot_folder=snapshot_folder, prefix=prefix, job_name=job_name)
    source, folder = endpoint.path, identity.snapshot_folder
    exists = os.path.lexists(source)
    if exists and not is_subvolume_root(source):
        raise _exists_error(source)
    here = LocalEndpoint(posixpath.dirname(source))
    try:
        list_folder(here, runner)  # the source's folder exists, on btrfs (else a clear error, nothing made)
    except MissingPathError:
        raise EndpointError("the folder %s for the source does not exist (mount the new filesystem there "
                            "first)" % here.path)
    if not exists:
        _check_snapshot_folder(here, runner, source, folder, identity.prefix)
    with SshConnections(runner, [origin]):
        try:
            held = list_folder(origin, runner).children
        except MissingPathError:
            raise EndpointError("the backup folder %s does not exist" % origin.id)
        chosen = choose_backups(held, identity.prefix, name, count)
        if exists:  # a rerun: nothing to do where the source holds that backup's snapshot already
            if not holds_snapshot_of(_snapshots_at(endpoint, runner, folder), chosen[-1]):
                raise _exists_error(source)
            return _result(False, origin, chosen[-1:], source, folder, [])
        staging = posixpath.join(here.path, STAGING_PREFIX + uuid.uuid4().hex[:12])
        executor = Executor(runner, check_mode)
        with executor.holding(JobLock(job_lock_path(identity))):  # rule 5: no run meanwhile
            with executor.staging(here, staging):
                placed = _rebuild_steps(executor, origin, chosen, here, staging, source, folder)
    result = _result(True, origin, chosen, source, folder, executor.plan())
    if not check_mode:
        result["placed"] = placed
        try:
            result["state"] = recording.record_rebuild(
                identity=identity, origin=origin.id, snapshots=[b.name for b in chosen], when=time.time())
        except (BackupError, OSError) as err:  # the source is rebuilt; only the record is missing
            result["warnings"] = ["the rebuild's record was not written: %s" % err]
    return result


def _result(changed, origin, chosen, source, folder, plan) -> dict:
    """What a rebuild reports, in restore's terms: `source` is the backup folder, `target` the
    rebuilt source; `snapshots` the backups brought back (none when there was nothing to do)."""
    return {"changed": changed, "snapshot": chosen[-1].name, "backup": chosen[-1].path, "source": origin.id,
            "target": source, "snapshot_folder": folder, "snapshots": [b.name for b in chosen] if changed else [],
            "received_uuid": chosen[-1].received_uuid, "plan": plan, "state": None}


def holds_snapshot_of(snapshots: Iterable, backup: object) -> bool:
    """Pure: whether a source's snapshots hold the one `backup` stands for: the snapshot it was
    made of (its uuid is the backup's received_uuid), or one a rebuild placed (received from it)."""
    return any(backup.received_uuid in (s.uuid, s.received_uuid) for s in snapshots if s.readonly)


def _snapshots_at(endpoint, runner, folder) -> list:
    try:
        return list(list_folder(endpoint, runner, folder).children.values())
    except MissingPathError:
        return []


def _exists_error(source):
    return BackupError("%s already exists and holds no snapshot of that backup: a rebuild makes the lost "
                       "source anew and never replaces one (move it aside, or restore into another path "
                       "with 'btrfs-backup restore')" % source)


def _check_snapshot_folder(here, runner, source, folder, prefix):
    """A snapshot folder outside the source (an absolute -f) may exist already: it must hold no
    snapshot of the job, which the rebuilt ones would have to be placed beside."""
    if folder == source or folder.startswith(source + "/"):
        return
    try:
        found = list_folder(LocalEndpoint(folder), runner).children
    except MissingPathError:
        return
    taken = sorted(n for n in found if names.is_snapshot_name(prefix, n))
    if taken:
        raise BackupError("the snapshot folder %s already holds snapshots of this job (%s): a rebuild "
                          "needs it without them" % (folder, ", ".join(taken)))


def _rebuild_steps(executor, origin, chosen, here, staging, source, folder) -> list:
    """Received (each from the one before), the source made from the newest, its run files left
    from the lost source removed, then each backup's read-only snapshot in the snapshot folder;
    when a step after the receive fails, what it made is deleted again (a rerun starts afresh).
    Returns the snapshots placed, as listed there (none in check mode)."""
    parent = None
    for backup in chosen:
        executor.carry_out(Receive(origin=origin, backup=backup, parent=parent, endpoint=here, folder=staging))
        parent = backup
    staged = {b.name: posixpath.join(staging, b.name) for b in chosen}
    executor.carry_out(SnapshotAt(endpoint=here, source_path=staged[chosen[-1].name], path=source, writable=True))
    try:
        return _place_snapshots(executor, chosen, here, staged, source, folder)
    except BaseException:
        if not executor.check_mode:
            restore_target.remove_rebuilt(here, executor.runner, source, folder, [b.name for b in chosen])
        raise


def _place_snapshots(executor, chosen, here, staged, source, folder) -> list:
    """The rebuilt source's run files removed, each backup's read-only snapshot placed."""
    executor.carry_out(RemoveRunFiles(path=source))
    if folder.startswith(source + "/") and posixpath.dirname(folder) != source:
        executor.carry_out(RemoveRunFiles(path=folder))  # a deeper snapshot folder's lock file
    executor.carry_out(CreateFolder(endpoint=here, path=folder, parents=True, what="snapshot folder", shown=folder))
    for backup in chosen:
        path = posixpath.join(folder, backup.name)
        if os.path.lexists(path):  # a snapshot made at an existing folder would land inside it
            raise BackupError("%s exists in the rebuilt source's data: no snapshot is placed there" % path)
        executor.carry_out(SnapshotAt(endpoint=here, source_path=staged[backup.name], path=path, writable=False))
    if executor.check_mode:
        return []
    listed = list_folder(here, executor.runner, folder).children
    placed = []
    for backup in chosen:
        found = listed.get(backup.name)
        if found is None or not found.complete or found.received_uuid != backup.received_uuid:
            raise BackupError("the snapshot %s did not keep the backup's received_uuid %s: the next run "
                              "would send it in full" % (posixpath.join(folder, backup.name), backup.received_uuid))
        placed.append({"name": found.name, "path": found.path, "uuid": found.uuid,
                       "received_uuid": found.received_uuid})
    return placed
