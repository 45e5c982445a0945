"""Pure: a job's last-run state as Prometheus metrics in node_exporter's textfile format."""

from __future__ import annotations

# name: (help, per destination)
METRICS = {
    "btrfs_backup_last_run_start_timestamp_seconds": ("When the job's last run started.", False),
    "btrfs_backup_last_run_duration_seconds": ("How long the job's last run took.", False),
    "btrfs_backup_last_run_success": ("1 if the job's last run had no error, else 0.", False),
    "btrfs_backup_snapshots": ("Snapshots of the job at its source after the last run.", False),
    "btrfs_backup_max_age_seconds": ("Age beyond which the job's newest backup is stale.", False),
    "btrfs_backup_destination_failed": ("1 if the destination failed in the last run that tried it.", True),
    "btrfs_backup_last_success_timestamp_seconds": ("When a run last synced the destination without error.", True),
    "btrfs_backup_newest_backup_timestamp_seconds": ("Snapshot time of the destination's newest backup.", True),
    "btrfs_backup_backups": ("Backups of the job at the destination after the last run.", True),
    "btrfs_backup_last_run_sent_bytes": ("Bytes sent to the destination by the last run.", True),
    "btrfs_backup_outstanding_locks": ("Snapshots locked for the destination (unfinished transfers).", True),
    "btrfs_backup_lock_outstanding_runs": ("Consecutive runs that ended with a lock for the destination.", True),
    "btrfs_backup_resumable_staged_ratio": ("Share of the stream an unfinished resumable transfer to the "
                                            "destination has staged there (0: none).", True),
    "btrfs_backup_unsent_snapshots": ("Snapshots kept at the source that the destination has not received yet.", True),
    "btrfs_backup_archive_chain_archives": ("Archives a restore of the newest backup at an archive destination "
                                            "(borg, restic) replays: its full stream and each incremental after it.",
                                            True),
    "btrfs_backup_last_verify_timestamp_seconds": ("When the destination's newest backup was last verified.", True),
    "btrfs_backup_last_verify_success": ("1 if the last verify found the backup complete and equal, else 0.", True),
}


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def samples(job: str, state: dict) -> list[tuple[str, dict, float]]:
    """[(metric name, labels dict, value)] for every figure the state knows."""
    out = []
    base = {"backup_job": job}

    def add(name, value, **labels):
        if value is not None:
            out.append((name, dict(base, **labels), value))

    last = state.get("last_run") or {}
    if last:
        add("btrfs_backup_last_run_start_timestamp_seconds", last.get("start"))
        add("btrfs_backup_last_run_duration_seconds", last.get("duration"))
        add("btrfs_backup_last_run_success", bool(last.get("ok")))
        add("btrfs_backup_snapshots", last.get("snapshots"))
    add("btrfs_backup_max_age_seconds", state.get("max_age_seconds"))
    for dest_id, record in sorted((state.get("destinations") or {}).items()):
        if record.get("status") is not None:
            add("btrfs_backup_destination_failed", record["status"] == "failed", destination=dest_id)
            add("btrfs_backup_last_run_sent_bytes", record.get("sent_bytes"), destination=dest_id)
            add("btrfs_backup_outstanding_locks", record.get("locks") or 0, destination=dest_id)
            add("btrfs_backup_lock_outstanding_runs", record.get("locked_runs") or 0, destination=dest_id)
            add("btrfs_backup_unsent_snapshots", record.get("unsent_snapshots"), destination=dest_id)
            left = record.get("resumable") or {}
            add("btrfs_backup_resumable_staged_ratio", (left.get("percent") or 0) / 100.0, destination=dest_id)
        add("btrfs_backup_last_success_timestamp_seconds", record.get("last_success"), destination=dest_id)
        add("btrfs_backup_newest_backup_timestamp_seconds", record.get("newest_backup_time"),
            destination=dest_id)
        add("btrfs_backup_backups", record.get("backups"), destination=dest_id)
        add("btrfs_backup_archive_chain_archives", record.get("archive_chain"), destination=dest_id)
        verify = record.get("verify")
        if verify:
            add("btrfs_backup_last_verify_timestamp_seconds", verify.get("time"), destination=dest_id)
            add("btrfs_backup_last_verify_success", bool(verify.get("ok")), destination=dest_id)
    return out


def render(job: str, state: dict) -> str:
    """The textfile: HELP and TYPE once per metric, samples grouped under them."""
    by_name = {}
    for name, labels, value in samples(job, state):
        by_name.setdefault(name, []).append((labels, value))
    lines = []
    for name, (help_text, _per_dest) in METRICS.items():
        if name not in by_name:
            continue
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s gauge" % name)
        for labels, value in by_name[name]:
            text = ",".join('%s="%s"' % (k, _escape(v)) for k, v in sorted(labels.items()))
            lines.append("%s{%s} %s" % (name, text, _number(value)))
    return "\n".join(lines) + "\n" if lines else ""
