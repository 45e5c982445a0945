# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Single operations for the Ansible modules: one snapshot, retention of one folder, lock edits.

Each returns a plain dict (changed, plan, and what it found or did); in check mode it only plans.
They share the job's source side, connections, steps and executor.
"""

from __future__ import annotations

import datetime

from ..model import names
from ..host.endpoints.location import parse_location
from ..host.endpoints.ssh import SshConnections
from ..model.errors import BackupError, ConfigError
from .executor import EffectOptions, Executor
from ..host.listing import list_folder
from ..host.locks import LOCK_KINDS, lock_store
from ..model.retention import Policy, parse_buckets, parse_min_age, plan_folder
from .retention_phase import retain
from ..host.runner import CommandRunner
from .source_side import SourceSide, snapshot_info
from ..model.steps import Delete, WriteLocks


def _source_side(source, snapshot_folder, prefix, ssh_options, ssh_sudo, runner):
    return SourceSide.of(source, runner or CommandRunner(), snapshot_folder=snapshot_folder, prefix=prefix,
                         ssh_options=ssh_options, ssh_sudo=ssh_sudo)


def snapshot_present(source, snapshot_folder="snapshot", prefix="", name=None, check_mode=False,
                     ssh_options=(), ssh_sudo=False, runner=None, now=None) -> dict:
    """Ensure a read-only snapshot exists: `name`, or a new `<prefix><timestamp>` one."""
    if name is not None:
        names.validate_name(name)
    side = _source_side(source, snapshot_folder, prefix, ssh_options, ssh_sudo, runner)
    executor = Executor(side.runner, check_mode)
    with SshConnections(side.runner, [side.endpoint]):
        listing = side.list()
        existing = listing.children.get(name) if listing is not None and name is not None else None
        if existing is not None:
            if not existing.readonly:
                raise BackupError(f"{existing.path} exists but is writable, so it is not a snapshot")
            return {"changed": False, "plan": [], "snapshot": snapshot_info(existing)}
        when = None  # a chosen name is taken now; a new one not before its second
        if name is None:
            name, when = side.next_snapshot(listing, now)
        if listing is None:
            executor.carry_out(side.create_folder_step())
        # The module's documentation calls it read-only, and so does its plan.
        created = side.take_snapshot(executor, name, label="read-only snapshot",
                                     not_before=when if now is None else None)
        return {"changed": True, "plan": executor.plan(), "snapshot": snapshot_info(created)}


def snapshot_absent(source, name, snapshot_folder="snapshot", check_mode=False, ssh_options=(),
                    ssh_sudo=False, convert_rw=False, runner=None) -> dict:
    """Delete the named snapshot unless a lock says a transfer still needs it."""
    names.validate_name(name)
    side = _source_side(source, snapshot_folder, "", ssh_options, ssh_sudo, runner)
    executor = Executor(side.runner, check_mode, EffectOptions(convert_rw=convert_rw))
    with SshConnections(side.runner, [side.endpoint]):
        listing = side.list()
        found = listing.children.get(name) if listing is not None else None
        if found is None:
            return {"changed": False, "plan": [], "snapshot": None}
        if not found.readonly:
            raise BackupError(f"{found.path} is writable, so it is not a snapshot; not deleting it")
        reasons = side.lock_store().read().reasons(name)
        if reasons:  # rule 4
            raise BackupError(f"not deleting {found.path}: {'; '.join(reasons)} (see .outstanding_transfers)")
        executor.carry_out(Delete(endpoint=side.endpoint, paths=(found.path,), folder=side.folder,
                                  what="snapshot ", where=None, reason=None))
        return {"changed": True, "plan": executor.plan(), "snapshot": snapshot_info(found)}


def apply_retention(path, prefix="", count=0, preserve="", check_mode=False, ssh_options=(),
                    ssh_sudo=False, convert_rw=False, sync=False, runner=None, now=None,
                    min_age="") -> dict:
    """Apply the count and time-bucket policies to the snapshots or backups in one folder.

    A snapshot folder's `.outstanding_transfers` is honoured (locked and parent-locked snapshots
    stay, rule 4); the newest item always stays, being the next incremental parent; nothing
    younger than `min_age` is deleted (rule 10: the server's window).
    """
    names.validate_prefix(prefix)
    policy = Policy(count, parse_buckets(preserve))
    youngest_kept = parse_min_age(min_age)
    now = now or datetime.datetime.now()
    runner = runner or CommandRunner()
    endpoint = parse_location(path, ssh_options, ssh_sudo, allow_shell=False)
    executor = Executor(runner, check_mode, EffectOptions(convert_rw=convert_rw, sync=sync))
    with SshConnections(runner, [endpoint]):
        folder = endpoint.path
        items = {n: s for n, s in list_folder(endpoint, runner, folder).children.items()
                 if s.readonly and names.is_snapshot_name(prefix, n)}
        locks = lock_store(endpoint, runner, folder).read()
        # Dated by name: the time the source's snapshot was taken.
        decisions = plan_folder([(n, names.parse_time(prefix, n)) for n in items], policy,
                                {n: locks.reasons(n) for n in items}, now, youngest_kept)
        return retain(executor, endpoint, items, decisions, where=path, policy=policy)


def manage_locks(source, snapshot_folder="snapshot", state="query", snapshots=None,
                 destinations=None, kind="locks", check_mode=False, ssh_options=(),
                 ssh_sudo=False, runner=None) -> dict:
    """Query, add (state=present) or remove (state=absent) entries of `.outstanding_transfers`.

    present: lock each of `snapshots` for each of `destinations` (both required).
    absent:  remove the locks of `destinations` (all snapshots, or only `snapshots`), or every
             lock of `snapshots` when no destination is given.
    """
    if state not in ("query", "present", "absent"):
        raise ConfigError(f"state must be query, present or absent, not {state!r}")
    if kind not in LOCK_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(LOCK_KINDS)}, not {kind!r}")
    for name in snapshots or ():
        names.validate_name(name)
    dest_ids = [parse_location(d, ssh_options, ssh_sudo).id for d in destinations or ()]
    if state == "present" and not (snapshots and dest_ids):
        raise ConfigError("state=present needs both snapshots and destinations")
    if state == "absent" and not (snapshots or dest_ids):
        raise ConfigError("state=absent needs destinations, snapshots, or both")
    side = _source_side(source, snapshot_folder, "", ssh_options, ssh_sudo, runner)
    executor = Executor(side.runner, check_mode)
    with SshConnections(side.runner, [side.endpoint]):
        store = side.lock_store()
        table = store.read()
        before = table.as_dict()
        if state == "present":
            existing = side.list()
            missing = [n for n in snapshots if existing is None or n not in existing.children]
            if missing:
                raise BackupError(f"no such snapshot in {side.folder}: {', '.join(missing)}")
            for name in snapshots:
                for dest_id in dest_ids:
                    table.add(name, dest_id, kind)
        elif state == "absent":
            targets = snapshots or list(table.locks)
            for name in targets:
                for each in LOCK_KINDS:
                    held = table.locks.get(name, {}).get(each, set())
                    table.discard(name, dest_ids or set(held), each)
        after = table.as_dict()
        if before != after:
            executor.carry_out(WriteLocks(store=store, table=table))
        return {"changed": executor.changed, "before": before, "after": after, "locks": after,
                "plan": executor.plan()}
