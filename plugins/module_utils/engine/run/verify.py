# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Verify: a backup against its source snapshot, by UUID chain and by content manifests."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

from ..model import names
from ..host.endpoints.location import parse_location
from ..host.endpoints.ssh import SshConnections
from ..model.errors import BackupError, ConfigError
from ..host.listing import list_folder
from ..model.planning import counterpart, stream_uuid
from ..host.runner import CommandRunner
from .source_side import SourceSide

if TYPE_CHECKING:
    from typing import Iterable

# One record per entry: path, type, mode, owner, size, link target; NUL-separated for any name.
_FIND_FORMAT = "%P\\0%y\\0%m\\0%U:%G\\0%s\\0%l\\0"
_FIELDS = 6


def manifest_commands(root: str) -> list[list[str]]:
    """Two commands whose output describes every entry under `root` and every file's sha256."""
    return [
        # Inode 2 marks where a nested subvolume sat in a snapshot: btrfs send leaves it out.
        (["find", root, "-xdev", "-mindepth", "1", "(", "-inum", "2", "-prune", ")", "-o",
          "-printf", _FIND_FORMAT], True),
        (["sh", "-c", 'cd "$1" && find . -xdev -type f -print0 | xargs -0r sha256sum -z --', "sh",
          root], True),
    ]


def parse_manifest(find_output: str, sums_output: str) -> dict[str, str]:
    """Pure: {relative path: description} from the two commands' output."""
    entries = {}
    fields = find_output.split("\0")
    if fields[-1] != "" or (len(fields) - 1) % _FIELDS:
        raise ValueError("unexpected find output: %r" % find_output[-200:])
    for start in range(0, len(fields) - 1, _FIELDS):
        path, kind, mode, owner, size, link = fields[start:start + _FIELDS]
        description = "%s mode=%s owner=%s" % (kind, mode, owner)
        if kind == "f":
            description += " size=%s" % size
        elif kind == "l":
            description += " -> %s" % link
        entries[path] = description
    for item in sums_output.split("\0"):
        if not item:
            continue
        digest, _blank, path = item.partition("  ")
        path = path[2:] if path.startswith("./") else path
        if path in entries:
            entries[path] += " sha256=%s" % digest
    return entries


def compare_manifests(expected: dict[str, str], actual: dict[str, str], limit: int = 50) -> list[str]:
    """Pure: human-readable differences, at most `limit` of them."""
    differences = []
    for path in sorted(set(expected) | set(actual)):
        if path not in actual:
            differences.append("missing in backup: %s" % path)
        elif path not in expected:
            differences.append("only in backup: %s" % path)
        elif expected[path] != actual[path]:
            differences.append("differs: %s (%s vs %s)" % (path, expected[path], actual[path]))
        if len(differences) >= limit:
            differences.append("... (stopped after %d differences)" % limit)
            break
    return differences


def _manifest(endpoint, runner, root):
    find, sums = endpoint.run_batch(runner, manifest_commands(root))
    for result in (find, sums):
        if not result.ok:
            raise BackupError("cannot read %s at %s: %s" % (root, endpoint.id, result.stderr.strip()))
    try:
        return parse_manifest(find.stdout, sums.stdout)
    except ValueError as err:
        raise BackupError("cannot read %s at %s: %s" % (root, endpoint.id, err))


def verify(source: str, backups: str, snapshot_folder: str = "snapshot", prefix: str = "", name: str | None = None,
           content: bool = True, ssh_options: Iterable[str] = (), ssh_sudo: bool = False,
           runner: CommandRunner | None = None) -> dict:
    """Check one backup (`name`, default: the newest the destination holds) against its snapshot."""
    runner = runner or CommandRunner()
    side = SourceSide.of(source, runner, snapshot_folder=snapshot_folder, prefix=prefix,
                         ssh_options=ssh_options, ssh_sudo=ssh_sudo)
    origin = side.endpoint
    dest = parse_location(backups, ssh_options, ssh_sudo, allow_shell=False)
    folder = side.folder
    with SshConnections(runner, [origin, dest]):
        snapshots = side.snapshots(list_folder(origin, runner, folder))[0]
        held = list_folder(dest, runner).children
        pairs = [(s, counterpart(s, held.values())) for s in snapshots]
        if name is not None:
            names.validate_name(name)
            if name not in {s.name for s in snapshots}:
                raise ConfigError("no snapshot named %s in %s" % (name, folder))
            pairs = [p for p in pairs if p[0].name == name]
        else:
            pairs = [p for p in pairs if p[1] is not None][-1:]
            if not pairs:
                raise BackupError("%s holds no backup of any snapshot in %s" % (dest.id, folder))
        snapshot, backup = pairs[0]
        problems = []
        report = {"snapshot": snapshot.name, "snapshot_uuid": snapshot.uuid, "destination": dest.id,
                  "backup": backup.path if backup else None, "problems": problems}
        if backup is None:
            same_name = held.get(snapshot.name)
            problems.append("no complete backup with received_uuid %s at %s%s" % (
                stream_uuid(snapshot), dest.id, " (a subvolume named %s exists but is not it)" % snapshot.name
                if same_name else ""))
        else:
            report["received_uuid"] = backup.received_uuid
            parent = [b for b in held.values() if b.uuid == backup.parent_uuid]
            report["incremental_parent"] = parent[0].name if parent else None
            if backup.name != snapshot.name:
                problems.append("the backup is named %s, the snapshot %s" % (backup.name, snapshot.name))
            if content:
                differences = compare_manifests(_manifest(origin, runner, snapshot.path),
                                                _manifest(dest, runner, backup.path))
                report["content_differences"] = differences
                problems.extend(differences)
        report["ok"] = not problems
        return report
