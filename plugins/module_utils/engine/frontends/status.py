"""`btrfs-backup status`: every job's backups at a glance, as a table, JSON or a monitoring-plugin line."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

from ..model import health
from ..model.run_record import archive_chain_text, resumable_text
from ..model.units import format_duration, parse_duration
from ..model.errors import BackupError, ConfigError
from .jobspec import DEFAULT_CONFIG_DIR, job_from_args, jobs_from_config_dir
from ..host.recording import refresh_metrics
from ..run.job_status import job_statuses


def build_status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="btrfs-backup status",
        description="Show, for each backup job on this host, its destinations' newest backup and "
                    "its age, the last run, its last error, outstanding locks and the next timer "
                    "run. The jobs are the role's configs in --config-dir, or the one job given "
                    "as for a backup run (SOURCE DEST..., @ARGFILE). Reads the last-run state "
                    "each run records; contacts no destination.",
        epilog="With --max-age or --plugin: one line OK/WARNING/CRITICAL/UNKNOWN with perfdata "
               "and exit status 0/1/2/3, for Nagios, Icinga or Checkmk. CRITICAL: a destination's "
               "newest backup is older than the maximum age, it has none, or its last verify "
               "failed; WARNING: the last run failed or left a lock, or the job's timer is "
               "installed but stopped or missing (no next run); UNKNOWN: no run recorded. The "
               "table, --json and the plugin line give the same verdict.")
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR",
                        help="Folder of job configs (*.conf). Default %s." % DEFAULT_CONFIG_DIR)
    parser.add_argument("--json", action="store_true", help="Print every job's state and verdict as JSON.")
    parser.add_argument("--max-age", metavar="DURATION",
                        help="Monitoring-plugin mode, with this maximum age (e.g. 36h) for every job.")
    parser.add_argument("--plugin", action="store_true",
                        help="Monitoring-plugin mode with each job's own maximum age.")
    parser.add_argument("--server-root", metavar="DIR",
                        help="On a backup server: each source host's jobs under DIR (DIR/HOST/JOB), "
                             "their newest backup by when this server received it (never by its "
                             "name), its age and whether it is fresh (--max-age), instead of this "
                             "host's own jobs.")
    parser.add_argument("--source-host", metavar="HOST",
                        help="With --server-root: only this source host's folder (DIR/HOST).")
    parser.add_argument("--job-max-age", metavar="JOB=DURATION", action="append", default=[],
                        help="With --server-root: the maximum age of each backup job JOB (repeat it); "
                             "with --source-host, a job given here that has no folder yet counts as "
                             "one without a backup. Else --max-age applies.")
    parser.add_argument("--metrics-file", metavar="FILE",
                        help="With --server-root: write the view as node_exporter textfile metrics "
                             "to FILE (replaced atomically) instead of printing it; exit status 0 "
                             "once written, whatever the backups' freshness.")
    parser.add_argument("--write-metrics", action="store_true",
                        help="Rewrite each job's metrics (its --metrics-dir) from its last-run state "
                             "and its configuration now, without a run: the role does so when a "
                             "job's configuration changed.")
    return parser


def parse_job_max_ages(items) -> dict:
    """Pure: {job: seconds} of --job-max-age JOB=DURATION items; ConfigError names a bad one."""
    ages = {}
    for item in items:
        job, sep, duration = item.partition("=")
        if not sep or not job:
            raise ConfigError("--job-max-age %r must be JOB=DURATION, e.g. home=36h" % item)
        ages[job] = parse_duration(duration, "--job-max-age %s" % job)
    return ages


def server_main(options, max_age, plugin, job_max_ages):
    """`status --server-root DIR`: the server's view of its sources, judged by received times."""
    from ..run import server_view
    now = time.time()
    try:
        jobs = server_view.survey_server_root(options.server_root, host=options.source_host)
    except OSError as err:
        sys.stderr.write("btrfs-backup status: cannot read %s: %s\n" % (options.server_root, err.strerror))
        return health.UNKNOWN if plugin else 1
    if options.source_host:
        jobs = server_view.with_expected_jobs(jobs, options.source_host, job_max_ages)
    if options.metrics_file:
        return write_server_metrics(options.metrics_file, jobs, job_max_ages, max_age)
    verdict = server_view.assess_server(options.server_root, jobs, now, max_age, job_max_ages)
    if options.json:
        json.dump(server_view.server_facts(options.server_root, jobs, verdict, now, max_age),
                  sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    elif plugin:
        level, line = health.monitoring_line([verdict])
        sys.stdout.write(line + "\n")
        return level
    else:
        by_where = {d.destination: d for d in verdict.destinations}
        rows = [[e.host, e.job, e.newest_backup or "-", _timestamp(e.received),
                 format_duration(now - e.received) if e.received else "-", str(e.backups),
                 health.LEVELS[by_where[e.where].level]] for e in jobs]
        headers = ["HOST", "JOB", "NEWEST BACKUP", "RECEIVED", "AGE", "BACKUPS", "STATE"]
        sys.stdout.write((table(rows, headers) if rows else "no host folder with a job in %s"
                          % options.server_root) + "\n")
        for reason in verdict.reasons:
            sys.stdout.write("  %s: %s\n" % (verdict.label, reason))
    return 1 if verdict.level in (health.CRITICAL, health.UNKNOWN) else 0


def write_server_metrics(path, jobs, job_max_ages, max_age):
    """`status --server-root DIR --metrics-file FILE`: the server view's metrics, replaced atomically."""
    from ..model import server_metrics
    from ..host.state_store import write_atomically
    try:
        write_atomically(path, server_metrics.render(jobs, job_max_ages, max_age), durable=False)
    except OSError as err:
        sys.stderr.write("btrfs-backup status: the metrics were not written to %s: %s\n"
                         % (path, err.strerror or err))
        return 1
    return 0


def _timestamp(seconds):
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


def table(rows: list, headers: list[str]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
                     for row in [headers] + rows)


def status_rows(statuses: list, now: float) -> list:
    """Pure: the table's rows from each job's JobStatus."""
    rows = []
    for status in statuses:
        spec, state, verdict = status.spec, status.judged.state, status.judged.verdict
        last = (state or {}).get("last_run") or {}
        last_text = "%s (%s)" % (_timestamp(last.get("start")), "ok" if last.get("ok") else "failed") \
            if last else "never"
        next_run = _next_run(status.judged.timer)
        dests = sorted(((state or {}).get("destinations") or {}).items()) or [("-", {})]
        for dest_id, record in dests:
            error = record.get("error") or ""
            left = resumable_text(record)
            if left:
                error = "%s; %s" % (left, error) if error else left
            verify = record.get("verify")
            if verify and not verify.get("ok"):
                error = error or "verify: %s" % "; ".join(verify.get("problems") or [])
            rows.append([
                spec.identity.name, dest_id,
                record.get("newest_backup") + archive_chain_text(record) if record.get("newest_backup") else "-",
                format_duration(now - record["newest_backup_time"])
                if record.get("newest_backup_time") else "-",
                last_text, (error[:60] + "...") if len(error) > 63 else error or "-",
                str(record.get("locks") or 0), next_run or "-", verdict.row_label(dest_id),
            ])
    return rows


def main(argv: list[str]) -> int:
    parser = build_status_parser()
    options, rest = parser.parse_known_args(argv)
    try:
        max_age = parse_duration(options.max_age, "--max-age") if options.max_age else None
        job_max_ages = parse_job_max_ages(options.job_max_age)
        if rest:
            specs, errors = [job_from_args(rest)], []
        else:
            specs, errors = jobs_from_config_dir(options.config_dir)
    except ConfigError as err:
        parser.error(str(err))
    plugin = options.plugin or max_age is not None
    if options.server_root:
        return server_main(options, max_age, plugin, job_max_ages)
    if options.write_metrics:
        return write_metrics(specs, errors)
    now = time.time()
    statuses, read_errors = job_statuses(specs, now=now, max_age=max_age)
    errors.extend(read_errors)
    verdicts = [status.judged.verdict for status in statuses]
    if plugin:
        level, line = health.monitoring_line(verdicts)
        if errors:
            level, line = health.UNKNOWN, "BTRFS BACKUP UNKNOWN - " + "; ".join(errors)
        sys.stdout.write(line + "\n")
        return level
    if options.json:
        json.dump({"jobs": [{"job": s.spec.identity.name, "source": s.spec.identity.source_id,
                             "snapshot_folder": s.spec.identity.snapshot_folder, "config_file": s.spec.config_file, "status": s.judged.verdict.label,
                             "reasons": s.judged.verdict.reasons, "max_age_seconds": s.judged.max_age,
                             "next_run": _next_run(s.judged.timer), "state": s.judged.state}
                            for s in statuses],
                   "errors": errors}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        headers = ["JOB", "DESTINATION", "NEWEST BACKUP", "AGE", "LAST RUN", "LAST ERROR",
                   "LOCKS", "NEXT RUN", "STATE"]
        if statuses:
            sys.stdout.write(table(status_rows(statuses, now), headers) + "\n")
        else:
            sys.stdout.write("no backup job in %s\n" % options.config_dir)
        for verdict in verdicts:
            for reason in verdict.reasons:
                sys.stdout.write("  %s: %s\n" % (verdict.label, reason))
        for error in errors:
            sys.stderr.write("btrfs-backup status: %s\n" % error)
    worst = max([v.level for v in verdicts], default=health.UNKNOWN)
    return 1 if errors or worst in (health.CRITICAL, health.UNKNOWN) else 0


def _next_run(timer):
    return timer.next_run if timer and timer.active else None


def write_metrics(specs: list, errors: list) -> int:
    """`status --write-metrics`: each job's metrics file, rewritten; exit status 1 on any error."""
    for spec in specs:
        if not spec.metrics_dir:
            continue
        try:
            path = refresh_metrics(identity=spec.identity, metrics_dir=spec.metrics_dir,
                                   max_age=spec.max_age)
        except (BackupError, OSError) as err:
            errors.append("%s: the metrics were not written: %s" % (spec.identity.name, err))
            continue
        sys.stdout.write("%s: wrote %s\n" % (spec.identity.name, path))
    for error in errors:
        sys.stderr.write("btrfs-backup status: %s\n" % error)
    return 1 if errors else 0
