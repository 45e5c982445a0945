"""Effects: every run and verify leaves its record, the last-run state and its metrics (invariant 11)."""

import logging
import os

from ..model import metrics, run_record

from . import state_store
from ..model.errors import BackupError, ConfigError

LOG = logging.getLogger("btrfs_backup")


def add_options(parser):
    """The options that say where a run's record goes, for the backup run and for verify."""
    group = parser.add_argument_group("Run record (last-run state and metrics)")
    group.add_argument("--job-name", metavar="NAME",
                       help="The job's name in the state and metrics (default: from the source).")
    group.add_argument("--max-age", metavar="DURATION",
                       help="Recorded with the run: the age (e.g. 36h, 7d) beyond which the "
                            "newest backup is stale, for 'status' and the alert rules.")
    group.add_argument("--metrics-dir", metavar="DIR",
                       help="Also write the job's metrics for node_exporter's textfile "
                            "collector into DIR (e.g. /var/lib/prometheus/node-exporter).")


def check_options(options, source_id):
    """Validate before anything runs (bad input changes nothing): (job name, max age seconds)."""
    from ..model.units import parse_duration
    job = state_store.validate_job_name(options.job_name) if options.job_name else \
        state_store.default_job_name(source_id)
    max_age = parse_duration(options.max_age, "--max-age") if options.max_age else None
    if options.metrics_dir and not os.path.isdir(options.metrics_dir):
        raise ConfigError("metrics directory %s does not exist" % options.metrics_dir)
    return job, max_age


def _save(job, source_id, folder, state, metrics_dir):
    state_store.save_state(source_id, folder, state)
    if metrics_dir:
        state_store.save_metrics(metrics_dir, job, metrics.render(job, state))


def record_run(result, *, job, prefix, started, duration, max_age=None, metrics_dir=None):
    """Record a finished run (`result` is JobResult.as_dict()); an error message or None."""
    if result.get("check_mode") or not result.get("source") or not result.get("snapshot_folder"):
        return None
    source_id, folder = result["source"], result["snapshot_folder"]
    try:
        previous = state_store.load_state(source_id, folder)
        state = run_record.state_after_run(previous, result, job=job, prefix=prefix, started=started,
                                           duration=duration, max_age=max_age)
        _save(job, source_id, folder, state, metrics_dir)
    except (BackupError, OSError) as err:
        return "the run's record was not written: %s" % err
    return None


def record_verify(report, *, job, prefix, when, source_id, folder, metrics_dir=None):
    """Record a verify's outcome beside the job's last run; an error message or None."""
    try:
        previous = state_store.load_state(source_id, folder)
        state = run_record.record_verify(previous, report, job=job, prefix=prefix, when=when,
                                         source=source_id, snapshot_folder=folder)
        _save(state.get("job") or job, source_id, folder, state, metrics_dir)
    except (BackupError, OSError) as err:
        return "the verify's record was not written: %s" % err
    return None


def refresh_metrics(*, job, state_path, metrics_dir, max_age=None):
    """Rewrite a job's metrics from its recorded state and its current configuration, without a
    run (after the job's configuration changed). A run that records meanwhile writes its own
    metrics after its state: a state that changed while these were written is read again."""
    if not os.path.isdir(metrics_dir):
        raise ConfigError("metrics directory %s does not exist" % metrics_dir)
    state = state_store.read_state(state_path)
    for _attempt in range(5):
        text = metrics.render(job, run_record.with_configuration(state, max_age=max_age))
        state_store.save_metrics(metrics_dir, job, text)
        now = state_store.read_state(state_path)
        if now == state:
            break
        state = now
    return state_store.metrics_path(metrics_dir, job)
