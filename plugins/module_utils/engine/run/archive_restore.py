# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Restore and verify from an archive store (borg, restic): a snapshot's chain of archives replayed
into btrfs receive; the store's own check and the newest stream parsed without a btrfs target."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import datetime
import os
import posixpath
import uuid

from ..host import btrfs, effects
from ..host.endpoints.archive import ArchiveSettings, archive_subvolume
from ..host.endpoints.base import check_path
from ..host.endpoints.local import LocalEndpoint
from ..host.endpoints.location import parse_location
from ..host.listing import list_folder
from ..host.pipeline import Stage, run_pipeline
from ..host.restore_target import remove_staging
from ..host.runner import CommandRunner
from ..model import archives, names
from ..model.errors import BackupError, ConfigError, EndpointError, MissingPathError
from .restore import STAGING_PREFIX, choose_backup
from ..model.log import LOG

if TYPE_CHECKING:
    from typing import Iterable


def open_store(location: str, *, key_file: str, env_file: str = "", job: str | None = None,
               host: str | None = None, ssh_options: Iterable[str] = (), runner=None):
    """(the store's endpoint, its archives of the job by uuid, the job's archives by snapshot name).
    Without `job`: the one job whose archives the repository holds (ConfigError if several). Of a
    job whose archives several hosts stored: `host`'s, else this host's (model/archives.py restore_host)."""
    settings = ArchiveSettings(job=job or "", key_file=key_file, env_file=env_file)
    store = parse_location(location, ssh_options, archive=settings)
    if not store.holds_archives:
        raise ConfigError(f"{location!r} is no archive store")
    settings.require_files(store.id)
    records = store.records(runner)
    jobs = sorted({r.label.job for r in records})
    if not job:
        if len(jobs) > 1:
            raise ConfigError(f"{store.id} holds the archives of several jobs ({', '.join(jobs)}): give --job-name")
        settings.job = jobs[0] if jobs else ""
    elif job not in jobs:
        raise BackupError(f"{store.id} holds no archive of job {job} (it holds: {', '.join(jobs) or 'none'})")
    try:
        settings.host = archives.restore_host(archives.job_hosts(records, settings.job), os.uname().nodename, host)
    except ConfigError as err:
        raise ConfigError(f"{store.id}: {err}")
    by_name = archives.job_archives(records, settings.job, settings.host)
    by_uuid = {r.label.uuid: r for r in by_name.values()}
    return store, by_uuid, by_name


def restore_archive(location: str, target: str, *, key_file: str, env_file: str = "", job: str | None = None,
                    host: str | None = None, name: str | None = None, prefix: str = "", writable: bool = False, force: bool = False,
                    check_mode: bool = False, ssh_options: Iterable[str] = (), runner: CommandRunner | None = None,
                    now: datetime.datetime | None = None) -> dict:
    """Replay the archives a snapshot needs (the full stream, then each incremental) into btrfs
    receive beside `target`; only the verified last one becomes `target` (read-only as received,
    or writable). Nothing is left behind when a stream fails."""
    runner = runner or CommandRunner()
    names.validate_prefix(prefix)
    target = check_path(target, "restore target")
    if not target.startswith("/"):
        raise ConfigError(f"restore target {target!r} must be an absolute path")
    store, by_uuid, by_name = open_store(location, key_file=key_file, env_file=env_file, job=job, host=host,
                                         ssh_options=ssh_options, runner=runner)
    listed = {n: archive_subvolume(r) for n, r in by_name.items()}
    backup = choose_backup(listed, prefix, name)
    chain = archives.restore_chain(by_uuid, backup.received_uuid)
    here = LocalEndpoint(posixpath.dirname(target))
    try:
        at_target = list_folder(here, runner)
    except MissingPathError:
        raise EndpointError(f"the folder {here.path} for the restore target does not exist")
    result = {"changed": False, "backup": backup.path, "source": store.id, "snapshot": backup.name,
              "target": target, "writable": writable, "moved_aside": None,
              "archives": [r.ref for r in chain], "plan": []}
    present = at_target.children.get(posixpath.basename(target))
    if present is not None and not writable and present.complete and present.received_uuid == backup.received_uuid:
        return result  # restored there already
    exists = here.run(runner, ["test", "-e", target]).ok
    if exists and not force:
        raise BackupError(f"{target} already exists; not overwriting it (force renames it aside)")
    result["plan"] = [f"replay {r.ref} ({'incremental' if r.label.parent else 'full'}) from {store.id}"
                      for r in chain] + [f"{'snapshot (writable)' if writable else 'snapshot'} at {target}"]
    result["changed"] = True
    if check_mode:
        return result
    stamp = uuid.uuid4().hex[:12]
    stagings = [posixpath.join(here.path, f"{STAGING_PREFIX}{stamp}-{i}") for i in range(len(chain))]
    try:
        received = None
        for record, staging in zip(chain, stagings):
            effects.make_folder(here, runner, staging)
            LOG.info("replaying %s from %s", record.ref, store.id)
            run_pipeline(runner, [Stage(f"{store.tool} at {store.id}", store.extract_argv(record)),
                                  Stage("btrfs receive", btrfs.receive_argv(staging))])
            found = list(list_folder(here, runner, staging).children.values())
            if len(found) != 1 or not found[0].complete or found[0].received_uuid != record.label.uuid:
                raise BackupError(f"the stream of {record.ref} did not give back the snapshot {record.label.snapshot} "
                                  f"(received_uuid {record.label.uuid})")
            received = found[0]
        if exists:
            stamp_time = (now or datetime.datetime.now()).strftime(names.TIMESTAMP_FORMAT)
            result["moved_aside"] = aside = f"{target}.before-restore-{stamp_time}"
            effects.rename(here, runner, target, aside)
        effects.snapshot_at(here, runner, received.path, target, writable)
    finally:
        for staging in stagings[::-1]:
            try:
                remove_staging(here, runner, staging)
            except BackupError as err:
                LOG.warning("could not remove the restore's staging folder %s: %s", staging, err)
    restored = list_folder(here, runner).children.get(posixpath.basename(target))
    result["uuid"] = restored.uuid if restored else None
    return result


def verify_archive(location: str, *, key_file: str, env_file: str = "", job: str | None = None,
                   host: str | None = None, name: str | None = None, prefix: str = "", read_data_subset: str = "5%",
                   ssh_options: Iterable[str] = (), runner: CommandRunner | None = None) -> dict:
    """The store's own check (restic reads `read_data_subset` of the data), the snapshot's chain of
    archives complete, and its stream parsed whole by `btrfs receive --dump` (no btrfs target)."""
    runner = runner or CommandRunner()
    store, by_uuid, by_name = open_store(location, key_file=key_file, env_file=env_file, job=job, host=host,
                                         ssh_options=ssh_options, runner=runner)
    listed = {n: archive_subvolume(r) for n, r in by_name.items()}
    backup = choose_backup(listed, prefix, name)
    record = by_name[backup.name]
    problems = []
    report = {"snapshot": backup.name, "snapshot_uuid": backup.received_uuid, "destination": store.id,
              "backup": record.ref, "received_uuid": backup.received_uuid, "problems": problems}
    parent = by_uuid.get(record.label.parent) if record.label.parent else None
    report["incremental_parent"] = parent.label.snapshot if parent else None
    try:
        report["archive_chain"] = [r.ref for r in archives.restore_chain(by_uuid, backup.received_uuid)]
    except ConfigError as err:
        problems.append(str(err))
    check = runner.run(store.check_argv(read_data_subset))
    report["store_check"] = "ok" if check.ok else store.failure_text(check)
    if not check.ok:
        problems.append(f"{store.tool} check failed: {store.failure_text(check)}")
    try:
        run_pipeline(runner, [Stage(f"{store.tool} at {store.id}", store.extract_argv(record)),
                              Stage("btrfs receive --dump", [btrfs.BTRFS, "receive", "--dump"], capture_stderr=True)])
        report["stream_parsed"] = True
    except BackupError as err:
        report["stream_parsed"] = False
        problems.append(f"the stream of {record.ref} does not parse: {err}")
    report["ok"] = not problems
    return report
