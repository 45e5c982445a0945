# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Learn every subvolume in a folder with one listing round per endpoint (never a process per snapshot)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import collections
import os
import posixpath

from . import btrfs
from ..model.errors import EndpointError, MissingPathError, NotBtrfsError
from .subvol_info import folder_subvolume_facts, is_subvolume_root, subvolume_facts

if TYPE_CHECKING:
    from typing import Iterable
    from .endpoints.base import Endpoint
    from .runner import CommandResult, CommandRunner


class Subvolume(collections.namedtuple(
        "Subvolume", "name path id uuid parent_uuid received_uuid readonly received_time",
        defaults=(None,))):
    """A subvolume directly inside a listed folder; `received_time` (epoch seconds) is when this
    machine received it, known only for a folder listed here (subvol_info), else None."""

    __slots__ = ()

    @property
    def complete(self) -> bool:
        """A finished receive: read-only with received_uuid set (rule 2)."""
        return bool(self.readonly and self.received_uuid)


class FolderListing:
    """The subvolumes directly inside `folder`, plus facts about the extra paths asked for, and
    which filesystem it is on: its mount's source, and (from `btrfs subvolume list -a`) the UUIDs
    of every subvolume on it, or None where only the folder's own subvolumes were read."""

    def __init__(self, folder, children, subvolume_paths, filesystem=None, uuids=None):
        self.folder = folder
        self.children = children  # name -> Subvolume
        self._subvolume_paths = subvolume_paths
        self.filesystem = filesystem
        self.uuids = uuids

    def is_subvolume(self, resolved_path: str) -> bool:
        return resolved_path in self._subvolume_paths


def listing_commands(folder: str, extra_paths: Iterable[str] = (), listed: str | None = None) -> list[tuple[list[str], bool]]:
    """The commands that one listing round runs, as (argv, needs_privileges) pairs. `listed`: the
    path whose filesystem btrfs lists (every subvolume of it), when not the folder's: one that
    exists even where the folder does not (a snapshot folder's source)."""
    resolves = [(["readlink", "-e", "--", path], False) for path in [folder] + list(extra_paths)]
    return resolves + [
        (["cat", "/proc/self/mountinfo"], False),
        (btrfs.list_argv(listed or folder), True),
        (btrfs.list_argv(listed or folder, readonly_only=True), True),
    ]


def build_listing(folder: str, extra_paths: Iterable[str], results: list[CommandResult]) -> FolderListing:
    """Pure: turn the listing round's results into a FolderListing, or raise EndpointError."""
    wanted = [folder] + list(extra_paths)
    resolves, (mountinfo, all_list, ro_list) = results[:len(wanted)], results[len(wanted):]
    missing = [path for path, result in zip(wanted, resolves) if not result.ok]
    if missing:
        raise MissingPathError(missing)
    resolved = [result.stdout.strip("\n") for result in resolves]
    mounts = btrfs.parse_mountinfo(mountinfo.stdout)
    locations = []
    for original, real in zip(wanted, resolved):
        mount = btrfs.mount_of(mounts, real)
        if mount is None or mount.fstype != "btrfs":
            raise NotBtrfsError(original, mount.fstype if mount else None)
        locations.append((mount, btrfs.path_in_filesystem(mount, real)))
    if len({mount.source for mount, _rel in locations}) > 1:
        raise EndpointError("%s must be on the same btrfs filesystem" % " and ".join(wanted))
    for result in (all_list, ro_list):
        if not result.ok:
            raise EndpointError("cannot list subvolumes of %s: %s" % (
                folder, (result.stderr.strip().splitlines() or ["btrfs failed"])[-1]))
    try:
        entries = btrfs.parse_subvolume_list(all_list.stdout)
        readonly_ids = {e.id for e in btrfs.parse_subvolume_list(ro_list.stdout)}
    except ValueError as err:
        raise EndpointError(str(err))
    folder_rel = locations[0][1]
    children = {}
    for entry in entries:
        parent, name = posixpath.split(entry.path)
        if parent == folder_rel:
            children[name] = Subvolume(
                name=name,
                path=posixpath.join(folder, name),
                id=entry.id,
                uuid=entry.uuid,
                parent_uuid=entry.parent_uuid,
                received_uuid=entry.received_uuid,
                readonly=entry.id in readonly_ids,
            )
    subvolume_rel_paths = {e.path for e in entries} | {""}
    subvolume_paths = {
        original for original, (_mount, rel) in zip(wanted, locations) if rel in subvolume_rel_paths
    }
    return FolderListing(folder, children, subvolume_paths, filesystem=locations[0][0].source,
                         uuids=frozenset(e.uuid for e in entries))


def list_folder(endpoint: Endpoint, runner: CommandRunner, folder: str | None = None,
                extra_paths: Iterable[str] = ()) -> FolderListing:
    """Run one listing round at `endpoint` for `folder` (default: the endpoint's path)."""
    folder = folder or endpoint.path
    if _kernel_can_answer(endpoint, runner):
        try:
            return list_folder_here(folder, extra_paths)
        except OSError:
            pass  # the kernel cannot answer (older than 4.18): ask btrfs, as for remote hosts
    results = endpoint.run_batch(runner, listing_commands(folder, extra_paths))
    return build_listing(folder, extra_paths, results)


def find_subvolume(endpoint: Endpoint, runner: CommandRunner, folder: str, name: str) -> Subvolume | None:
    """The subvolume `name` directly inside `folder`, or None. Locally that is one ioctl, not a
    listing of the whole folder (which may hold hundreds of snapshots); elsewhere one listing round."""
    if _kernel_can_answer(endpoint, runner):
        path = posixpath.join(folder, name)
        if not is_subvolume_root(path):
            return None  # missing, or a plain folder or file
        try:
            sub_id, sub_uuid, parent_uuid, received_uuid, readonly, received = subvolume_facts(path)
            return Subvolume(name=name, path=path, id=sub_id, uuid=sub_uuid, parent_uuid=parent_uuid,
                             received_uuid=received_uuid, readonly=readonly, received_time=received)
        except OSError:
            pass  # the kernel cannot answer: list the folder as below
    return list_folder(endpoint, runner, folder).children.get(name)


def _kernel_can_answer(endpoint, runner):
    """Local facts may come straight from this machine's kernel, unless the runner is a fake."""
    return endpoint.kernel_answers(runner)


def list_folder_here(folder: str, extra_paths: Iterable[str] = ()) -> FolderListing:
    """The same listing on this machine from the kernel: no process at all (see subvol_info)."""
    wanted = [folder] + list(extra_paths)
    missing = [path for path in wanted if not os.path.exists(path)]
    if missing:
        raise MissingPathError(missing)
    with open("/proc/self/mountinfo") as handle:
        mounts = btrfs.parse_mountinfo(handle.read())
    sources = []
    for path in wanted:
        mount = btrfs.mount_of(mounts, os.path.realpath(path))
        if mount is None or mount.fstype != "btrfs":
            raise NotBtrfsError(path, mount.fstype if mount else None)
        sources.append(mount.source)
    if len(set(sources)) > 1:
        raise EndpointError("%s must be on the same btrfs filesystem" % " and ".join(wanted))
    children = {}
    for name, (sub_id, sub_uuid, parent_uuid, received_uuid, readonly, received) in _facts_in(folder).items():
        children[name] = Subvolume(name=name, path=posixpath.join(folder, name), id=sub_id, uuid=sub_uuid,
                                   parent_uuid=parent_uuid, received_uuid=received_uuid, readonly=readonly,
                                   received_time=received)
    subvolume_paths = {path for path in wanted if is_subvolume_root(path)}
    return FolderListing(folder, children, subvolume_paths, filesystem=sources[0])


def _facts_in(folder: str) -> dict:
    """{name: subvolume facts} of the subvolumes directly inside `folder`: a few tree searches as
    root; otherwise (or where the kernel cannot search) an ioctl per subvolume."""
    try:
        return folder_subvolume_facts(folder)
    except OSError:
        pass
    facts = {}
    for entry in os.scandir(folder):
        path = posixpath.join(folder, entry.name)
        if entry.is_dir(follow_symlinks=False) and is_subvolume_root(path):
            facts[entry.name] = subvolume_facts(path)
    return facts
