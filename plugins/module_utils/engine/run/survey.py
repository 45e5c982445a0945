"""Effects: what a job's snapshots and backups are right now, listed at the source and every destination."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

from ..model import names
from ..host.endpoints.location import parse_location
from ..host.endpoints.ssh import SshConnections
from ..model.errors import BackupError
from ..host.listing import list_folder
from ..host.locks import lock_store
from ..model.planning import counterpart
from ..model.run_record import snapshot_timestamp
from ..model.snapper import snapper_config
from ..host.job_source import resolved_source
from ..host.runner import CommandRunner
from .source_side import SnapperSourceSide

if TYPE_CHECKING:
    from typing import Iterable


def _item(prefix, name):
    return {"name": name, "time": snapshot_timestamp(prefix, name)}


def our_backups(prefix: str, snapshots: Iterable, children: Iterable) -> list[str]:
    """Pure: complete backups named by the scheme; one carrying a snapshot's name must be its
    counterpart by UUID (invariant 1), otherwise it is somebody else's."""
    by_name = {s.name: s for s in snapshots}
    found = []
    for name, sub in children.items():
        if not (sub.complete and names.is_snapshot_name(prefix, name)):
            continue
        if name in by_name and counterpart(by_name[name], [sub]) is None:
            continue
        found.append(name)
    return sorted(found, key=lambda n: names.sort_key(prefix, n))


def survey_job(spec: object, runner: CommandRunner | None = None) -> dict:
    """{snapshots, locks, destinations: {id: {backups | error}}} for a JobSpec; read-only."""
    runner = runner or CommandRunner()
    connections = SshConnections(runner)
    source = connections.attach(parse_location(spec.source, spec.ssh_options, spec.ssh_sudo,
                                               allow_shell=False))
    folder, prefix = spec.identity.snapshot_folder, spec.identity.prefix
    report = {"snapshots": None, "source_error": None, "locks": {}, "destinations": {}}
    try:
        snapshots = []
        try:
            snapper = snapper_config(getattr(spec, "source_snapshots", None))
            if snapper:
                side = SnapperSourceSide(resolved_source(source), runner, spec.identity, snapper)
                snapshots = side.snapshots(side.list())[0]
            else:
                listing = list_folder(source, runner, folder)
                snapshots = sorted((s for s in listing.children.values()
                                    if s.readonly and names.is_snapshot_name(prefix, s.name)),
                                   key=lambda s: names.sort_key(prefix, s.name))
            report["snapshots"] = [_item(prefix, s.name) for s in snapshots]
            report["locks"] = lock_store(source, runner, folder).read().as_dict()
        except BackupError as err:
            report["source_error"] = str(err)
        for location in spec.destinations:
            try:
                dest = parse_location(location, spec.ssh_options, spec.ssh_sudo)
            except BackupError as err:
                report["destinations"][location] = {"backups": None, "error": str(err)}
                continue
            if not dest.can_list:
                report["destinations"][dest.id] = {"backups": None, "error": f"{dest.what} cannot be listed"}
                continue
            connections.attach(dest)
            try:
                children = list_folder(dest, runner).children
                backups = our_backups(prefix, snapshots, children)
                report["destinations"][dest.id] = {"backups": [_item(prefix, n) for n in backups],
                                                   "error": None}
            except BackupError as err:
                report["destinations"][dest.id] = {"backups": None, "error": str(err)}
    finally:
        connections.close()
    return report
