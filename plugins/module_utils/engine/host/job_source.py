"""Effects: a job's source as this host finds it (a symbolic link to a subvolume is that subvolume) and its identity."""

from __future__ import annotations

import os

from .endpoints.base import Endpoint, check_path
from .endpoints.location import parse_location
from .state_store import state_root
from ..model.job_identity import DEFAULT_SNAPSHOT_FOLDER, JobIdentity, job_identity
from ..model.snapper import snapshot_folder_of
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional, Tuple


def resolved_source(endpoint: Endpoint) -> Endpoint:
    """A local source named through a symbolic link (/srv/link -> /srv/pool/real) is the real
    subvolume: btrfs lists it by that path, and its snapshots and state are the same job's
    whichever path names it."""
    if endpoint.on_this_machine:
        real = os.path.realpath(endpoint.path)
        return endpoint if real == endpoint.path else endpoint.with_path(real)
    return endpoint


def identify_job(source: Endpoint, *, snapshot_folder: Optional[str] = DEFAULT_SNAPSHOT_FOLDER,
                 prefix: str = "", job_name: Optional[str] = None) -> JobIdentity:
    """The identity of the job of a resolved source (see resolved_source), its state on this host."""
    folder = check_path(snapshot_folder or DEFAULT_SNAPSHOT_FOLDER, "snapshot folder")
    return job_identity(source_id=source.id, source_path=source.path, state_root=state_root(),
                        snapshot_folder=folder, prefix=prefix, job_name=job_name)


def job_source(location: str, *, ssh_options=(), ssh_sudo: bool = False,
               snapshot_folder: Optional[str] = DEFAULT_SNAPSHOT_FOLDER, prefix: str = "",
               job_name: Optional[str] = None, source_snapshots: Optional[str] = None) -> Tuple[Endpoint, JobIdentity]:
    """(the resolved source endpoint, the job's identity) of a source location as a user gave it;
    ConfigError for a bad location, snapshot folder, prefix or name (nothing has run yet). A job
    whose snapshots snapper takes (`source_snapshots`) has them in snapper's folder."""
    folder = snapshot_folder_of(source_snapshots, snapshot_folder)
    source = resolved_source(parse_location(location, ssh_options, ssh_sudo, allow_shell=False))
    return source, identify_job(source, snapshot_folder=folder, prefix=prefix, job_name=job_name)
