# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: a backup server's view of its sources (server_view) as Prometheus metrics in node_exporter's
textfile format, by when the server received each backup, never by names (rule 12)."""

from __future__ import annotations


from .metrics import _escape as escape_label, _number as format_number
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional

# name: help
METRICS = {
    "btrfs_backup_server_newest_backup_received_timestamp_seconds":
        "When this server received the source host's newest believed backup of the job.",
    "btrfs_backup_server_max_age_seconds":
        "Age beyond which the job's newest backup, as this server received it, is stale.",
    "btrfs_backup_server_backups": "Complete backups of the job on this server.",
    "btrfs_backup_server_untrusted_names":
        "Backups of the job whose names claim a time later than when this server received them.",
}


def samples(jobs: list, job_max_ages: dict, max_age: Optional[float] = None) -> list:
    """[(metric name, labels, value)] for each ServerJob; a job that cannot be listed gets only its
    max age (its figures are unknown, and an absent received time is no proof of anything)."""
    out = []
    for entry in jobs:
        labels = {"source_host": entry.host, "backup_job": entry.job}
        limit = job_max_ages.get(entry.job, max_age)
        if limit is not None:
            out.append(("btrfs_backup_server_max_age_seconds", labels, limit))
        if entry.error:
            continue
        if entry.received is not None:
            out.append(("btrfs_backup_server_newest_backup_received_timestamp_seconds", labels, entry.received))
        out.append(("btrfs_backup_server_backups", labels, entry.backups))
        out.append(("btrfs_backup_server_untrusted_names", labels, len(entry.lying_names)))
    return out


def render(jobs: list, job_max_ages: dict, max_age: Optional[float] = None) -> str:
    """The textfile: HELP and TYPE once per metric, samples grouped under them."""
    by_name: dict = {}
    for name, labels, value in samples(jobs, job_max_ages, max_age):
        by_name.setdefault(name, []).append((labels, value))
    lines = []
    for name, help_text in METRICS.items():
        if name not in by_name:
            continue
        lines += ["# HELP %s %s" % (name, help_text), "# TYPE %s gauge" % name]
        for labels, value in by_name[name]:
            text = ",".join('%s="%s"' % (k, escape_label(v)) for k, v in sorted(labels.items()))
            lines.append("%s{%s} %s" % (name, text, format_number(value)))
    return "\n".join(lines) + "\n" if lines else ""
