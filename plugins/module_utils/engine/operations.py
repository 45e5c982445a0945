# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Single operations for the Ansible modules: one snapshot, retention of one folder, lock edits.

Each returns a plain dict (changed, plan, and what it found or did); in check mode it only plans.
"""

import datetime
import posixpath
import time

from . import actions, names
from .endpoints import LocalEndpoint, SshConnections, check_path, parse_location
from .errors import BackupError, ConfigError, EndpointError, MissingPathError
from .listing import list_folder
from .locks import LOCK_KINDS, LocalLockStore, RemoteLockStore
from .retention import Policy, parse_buckets, parse_min_age, plan_retention, protect_young
from .runner import CommandRunner


class Location(object):
    """A folder at an endpoint (local path or ssh:// URL) with a multiplexed connection."""

    def __init__(self, spec, ssh_options=(), ssh_sudo=False, runner=None):
        self.runner = runner or CommandRunner()
        self.endpoint = parse_location(spec, ssh_options, ssh_sudo, allow_shell=False)
        self._connections = SshConnections(self.runner)
        self._connections.attach(self.endpoint)

    def close(self):
        self._connections.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def folder_of(self, snapshot_folder):
        """The snapshot folder: absolute, or relative to this location's path."""
        folder = check_path(snapshot_folder or "snapshot", "snapshot folder")
        return folder if folder.startswith("/") else posixpath.join(self.endpoint.path, folder)

    def list(self, folder, extra=()):
        return list_folder(self.endpoint, self.runner, folder, list(extra))

    def lock_store(self, folder):
        if isinstance(self.endpoint, LocalEndpoint):
            return LocalLockStore(folder)
        return RemoteLockStore(self.endpoint, self.runner, folder)


def _snapshot_info(subvolume):
    return {"name": subvolume.name, "path": subvolume.path, "uuid": subvolume.uuid,
            "readonly": subvolume.readonly, "received_uuid": subvolume.received_uuid}


def _check_source(location, folder):
    """List the snapshot folder; a missing folder is fine (None) if the source is a subvolume."""
    source = location.endpoint.path
    try:
        listing = location.list(folder, [source])
    except MissingPathError as err:
        if source in err.paths:
            raise EndpointError("source %s does not exist" % location.endpoint.id)
        probe = location.list(source)
        if not probe.is_subvolume(source):
            raise EndpointError("source %s is not a btrfs subvolume" % location.endpoint.id)
        return None
    if not listing.is_subvolume(source):
        raise EndpointError("source %s is not a btrfs subvolume" % location.endpoint.id)
    return listing


def snapshot_present(source, snapshot_folder="snapshot", prefix="", name=None, check_mode=False,
                     ssh_options=(), ssh_sudo=False, runner=None, now=None):
    """Ensure a read-only snapshot exists: `name`, or a new `<prefix><timestamp>` one."""
    names.validate_prefix(prefix)
    if name is not None:
        names.validate_name(name)
    with Location(source, ssh_options, ssh_sudo, runner) as location:
        folder = location.folder_of(snapshot_folder)
        listing = _check_source(location, folder)
        children = listing.children if listing is not None else {}
        plan = []
        if name is not None and name in children:
            existing = children[name]
            if not existing.readonly:
                raise BackupError("%s exists but is writable, so it is not a snapshot" % existing.path)
            return {"changed": False, "plan": [], "snapshot": _snapshot_info(existing)}
        if name is None:
            ours = sorted((n for n, s in children.items()
                           if s.readonly and names.is_snapshot_name(prefix, n)),
                          key=lambda n: names.sort_key(prefix, n))
            newest = names.parse_time(prefix, ours[-1]) if ours else None
            try:
                when = names.next_snapshot_time(prefix, now or datetime.datetime.now(),
                                                set(children), newest)
            except ValueError as err:
                raise BackupError("not taking a snapshot: %s" % err)
            if now is None and not check_mode:
                wait = (when - datetime.datetime.now()).total_seconds()
                if wait > 0:
                    time.sleep(wait + 0.01)
            name = names.format_name(prefix, when)
        path = posixpath.join(folder, name)
        if listing is None:
            plan.append("create snapshot folder %s" % folder)
        plan.append("create read-only snapshot %s of %s" % (path, location.endpoint.path))
        if check_mode:
            return {"changed": True, "plan": plan,
                    "snapshot": {"name": name, "path": path, "uuid": None, "readonly": True,
                                 "received_uuid": None}}
        if listing is None:
            actions.make_folder(location.endpoint, location.runner, folder, parents=True)
        actions.take_snapshot(location.endpoint, location.runner, location.endpoint.path, path)
        created = location.list(folder).children.get(name)
        if created is None or not created.readonly:
            raise BackupError("snapshot %s was not created read-only" % path)
        return {"changed": True, "plan": plan, "snapshot": _snapshot_info(created)}


def snapshot_absent(source, name, snapshot_folder="snapshot", check_mode=False, ssh_options=(),
                    ssh_sudo=False, convert_rw=False, runner=None):
    """Delete the named snapshot unless a lock says a transfer still needs it."""
    names.validate_name(name)
    with Location(source, ssh_options, ssh_sudo, runner) as location:
        folder = location.folder_of(snapshot_folder)
        listing = _check_source(location, folder)
        found = listing.children.get(name) if listing is not None else None
        if found is None:
            return {"changed": False, "plan": [], "snapshot": None}
        if not found.readonly:
            raise BackupError("%s is writable, so it is not a snapshot; not deleting it" % found.path)
        locks = location.lock_store(folder).read()
        reasons = locks.reasons(name)
        if reasons:
            raise BackupError("not deleting %s: %s (see .outstanding_transfers)" % (
                found.path, "; ".join(reasons)))
        plan = ["delete snapshot %s" % found.path]
        if not check_mode:
            actions.delete_subvolumes(location.endpoint, location.runner, [found.path], folder,
                                      convert_rw=convert_rw)
        return {"changed": True, "plan": plan, "snapshot": _snapshot_info(found)}


def apply_retention(path, prefix="", count=0, preserve="", check_mode=False, ssh_options=(),
                    ssh_sudo=False, convert_rw=False, sync=False, runner=None, now=None,
                    min_age=""):
    """Apply the count and time-bucket policies to the snapshots or backups in one folder.

    A snapshot folder's `.outstanding_transfers` is honoured (locked and parent-locked snapshots
    stay); the newest item always stays, being the next incremental parent; nothing younger
    than `min_age` is deleted.
    """
    names.validate_prefix(prefix)
    policy = Policy(count, parse_buckets(preserve))
    youngest_kept = parse_min_age(min_age)
    now = now or datetime.datetime.now()
    with Location(path, ssh_options, ssh_sudo, runner) as location:
        folder = location.endpoint.path
        listing = location.list(folder)
        items = {n: s for n, s in listing.children.items()
                 if s.readonly and names.is_snapshot_name(prefix, n)}
        locks = location.lock_store(folder).read()
        protected = {n: locks.reasons(n) for n in items}
        dated = [(n, names.parse_time(prefix, n)) for n in items]
        for name, reason in protect_young(dated, youngest_kept, now).items():
            protected[name].append(reason)
        decisions = plan_retention(dated, policy, protected, now)
        kept = [{"name": d.name, "reasons": list(d.reasons)} for d in decisions if d.keep]
        deleted = [{"name": d.name, "reason": "not kept by retention policy (%s)" % policy.describe()}
                   for d in decisions if not d.keep]
        doomed = [items[d["name"]].path for d in deleted]
        plan = ["delete %s (retention)" % p for p in doomed]
        if doomed and not check_mode:
            actions.delete_subvolumes(location.endpoint, location.runner, doomed, folder,
                                      convert_rw=convert_rw, sync=sync)
        return {"changed": bool(doomed), "plan": plan, "policy": policy.describe(),
                "kept": kept, "deleted": deleted,
                "before": sorted(items), "after": [k["name"] for k in kept]}


def manage_locks(source, snapshot_folder="snapshot", state="query", snapshots=None,
                 destinations=None, kind="locks", check_mode=False, ssh_options=(),
                 ssh_sudo=False, runner=None):
    """Query, add (state=present) or remove (state=absent) entries of `.outstanding_transfers`.

    present: lock each of `snapshots` for each of `destinations` (both required).
    absent:  remove the locks of `destinations` (all snapshots, or only `snapshots`), or every
             lock of `snapshots` when no destination is given.
    """
    if state not in ("query", "present", "absent"):
        raise ConfigError("state must be query, present or absent, not %r" % (state,))
    if kind not in LOCK_KINDS:
        raise ConfigError("kind must be one of %s, not %r" % (", ".join(LOCK_KINDS), kind))
    for name in snapshots or ():
        names.validate_name(name)
    dest_ids = [parse_location(d, ssh_options, ssh_sudo).id for d in destinations or ()]
    if state == "present" and not (snapshots and dest_ids):
        raise ConfigError("state=present needs both snapshots and destinations")
    if state == "absent" and not (snapshots or dest_ids):
        raise ConfigError("state=absent needs destinations, snapshots, or both")
    with Location(source, ssh_options, ssh_sudo, runner) as location:
        folder = location.folder_of(snapshot_folder)
        store = location.lock_store(folder)
        table = store.read()
        before = table.as_dict()
        if state == "present":
            existing = _check_source(location, folder)
            missing = [n for n in snapshots if existing is None or n not in existing.children]
            if missing:
                raise BackupError("no such snapshot in %s: %s" % (folder, ", ".join(missing)))
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
        changed = before != after
        if changed and not check_mode:
            store.write(table)
        return {"changed": changed, "before": before, "after": after, "locks": after,
                "plan": ["write %s" % store.path] if changed else []}
