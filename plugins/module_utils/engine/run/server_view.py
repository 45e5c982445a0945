# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A backup server's view of its sources (rule 12): each host's jobs under the server root, their
newest complete backup by when this server received it, and whether it is fresh."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..model import health
from ..model.units import format_duration
from ..model.errors import BackupError
from ..host.listing import list_folder_here
from ..model.name_trust import DEFAULT_CLOCK_SKEW, name_lies
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import List, Optional


@dataclass
class ServerJob:
    """One source host's job folder on the server: `<root>/<host>/<job>`."""
    host: str
    job: str
    backups: int = 0
    newest_backup: Optional[str] = None
    received: Optional[float] = None  # when this server received the newest, epoch seconds
    lying_names: List[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def where(self) -> str:
        return f"{self.host}/{self.job}"


def _folders(path: str) -> list:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))


def survey_server_root(root: str, clock_skew: float = DEFAULT_CLOCK_SKEW, host: Optional[str] = None) -> list:
    """Every `<host>/<job>` folder under `root` (only `host`'s, if given) with its complete backups'
    received times (one ioctl per backup, no process); a backup whose name lies (name_trust) never
    counts as newest."""
    found = []
    hosts = _folders(root) if host is None else [host] if os.path.isdir(os.path.join(root, host)) else []
    for host in hosts:
        for job in _folders(os.path.join(root, host)):
            entry = ServerJob(host=host, job=job)
            try:
                children = list_folder_here(os.path.join(root, host, job)).children.values()
            except (OSError, BackupError) as err:
                entry.error = str(err)
                found.append(entry)
                continue
            complete = [s for s in children if s.complete]  # a partial receive is no backup
            entry.lying_names = sorted(s.name for s in complete if name_lies(s.name, s.received_time, clock_skew))
            believed = [s for s in complete if s.name not in entry.lying_names and s.received_time]
            entry.backups = len(complete)
            if believed:
                newest = max(believed, key=lambda s: (s.received_time, s.name))
                entry.newest_backup, entry.received = newest.name, newest.received_time
            found.append(entry)
    return found


def with_expected_jobs(jobs: list, host: str, job_names) -> list:
    """Pure: `jobs` and an empty entry for each of `host`'s `job_names` that has no folder yet (a
    job the source is configured with, whose first backup has not arrived)."""
    present = {(e.host, e.job) for e in jobs}
    missing = [ServerJob(host=host, job=name) for name in sorted(job_names) if (host, name) not in present]
    return sorted(jobs + missing, key=lambda e: (e.host, e.job))


def assess_server(root: str, jobs: list, now: float, max_age: Optional[float],
                  job_max_ages: Optional[dict] = None) -> health.JobHealth:
    """Pure: the server's verdict (one JobHealth, a DestinationHealth per host/job): CRITICAL for a
    job with no backup or whose newest was received longer ago than its max age (`job_max_ages`
    by job name, else `max_age`)."""
    judged = []
    for entry in jobs:
        limit = (job_max_ages or {}).get(entry.job, max_age)
        age = None if entry.received is None else now - entry.received
        level, reasons = health.OK, []
        if entry.error:
            level = health.UNKNOWN
            reasons.append(f"{entry.where}: cannot list it: {entry.error}")
        elif entry.received is None:
            level = health.CRITICAL
            reasons.append(f"{entry.where} holds no backup")
        elif limit is not None and age > limit:
            level = health.CRITICAL
            reasons.append(f"{entry.where}: newest backup {entry.newest_backup} was received "
                           f"{format_duration(age)} ago (max {format_duration(limit)})")
        if entry.lying_names:
            level = max(level, health.WARNING)
            reasons.append(f"{entry.where}: {len(entry.lying_names)} backup(s) named later than "
                           f"received ({', '.join(entry.lying_names[:3])}): not counted")
        judged.append(health.DestinationHealth(entry.where, level, age, reasons))
    if not judged:
        return health.JobHealth(f"server {root}", health.UNKNOWN, [f"no host folder with a job in {root}"], [])
    return health.JobHealth(f"server {root}", max(d.level for d in judged),
                            [r for d in judged for r in d.reasons], judged)


def server_facts(root: str, jobs: list, verdict: health.JobHealth, now: float, max_age) -> dict:
    """The server view as the info module and `status --json` return it."""
    by_where = {d.destination: d for d in verdict.destinations}
    return {
        "root": root, "status": verdict.label, "fresh": verdict.level == health.OK,
        "reasons": verdict.reasons, "max_age_seconds": max_age,
        "jobs": [{"host": e.host, "job": e.job, "backups": e.backups, "newest_backup": e.newest_backup,
                  "newest_backup_received": e.received,
                  "newest_backup_age": None if e.received is None else now - e.received,
                  "untrusted_names": e.lying_names, "error": e.error,
                  "status": health.LEVELS[by_where[e.where].level],
                  "fresh": by_where[e.where].level == health.OK} for e in jobs],
    }
