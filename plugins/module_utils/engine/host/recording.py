"""Effects: every run and verify leaves its record, the last-run state and its metrics (invariant 11)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os

from ..model import metrics, run_record

from . import state_store
from ..model.errors import BackupError, ConfigError
from ..model.job_identity import default_job_name, validate_job_name

if TYPE_CHECKING:
    import argparse
    from ..model.job_identity import JobIdentity


def add_options(parser: argparse.ArgumentParser) -> None:
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


def check_options(options: argparse.Namespace) -> tuple:
    """Validate before anything runs (bad input changes nothing): (job name given or None, max age
    seconds)."""
    from ..model.units import parse_duration
    job = validate_job_name(options.job_name) if options.job_name else None
    max_age = parse_duration(options.max_age, "--max-age") if options.max_age else None
    if options.metrics_dir and not os.path.isdir(options.metrics_dir):
        raise ConfigError("metrics directory %s does not exist" % options.metrics_dir)
    return job, max_age


def _save(identity, state, metrics_dir):
    state_store.save_state(identity, state)
    if metrics_dir:
        state_store.save_metrics(metrics_dir, identity, metrics.render(identity.name, state))


def record_run(result: dict, *, identity: JobIdentity, started: float, duration: float, max_age: float | None = None,
               metrics_dir: str | None = None) -> str | None:
    """Record a finished run (`result` is JobResult.as_dict(), `identity` the job's identity that
    the run used, under the name given); an error message or None."""
    if result.get("check_mode") or identity is None:
        return None
    try:
        previous = state_store.load_state(identity)
        state = run_record.state_after_run(previous, result, job=identity.name, prefix=identity.prefix,
                                           started=started, duration=duration, max_age=max_age)
        _save(identity, state, metrics_dir)
    except (BackupError, OSError) as err:
        return "the run's record was not written: %s" % err
    return None


def record_verify(report: dict | None, *, identity: JobIdentity, when: float,
                  metrics_dir: str | None = None) -> str | None:
    """Record a verify's outcome beside the job's last run (under the name its runs recorded);
    an error message or None."""
    try:
        previous = state_store.load_state(identity)
        state = run_record.record_verify(previous, report, job=identity.name, prefix=identity.prefix,
                                         when=when, source=identity.source_id,
                                         snapshot_folder=identity.snapshot_folder)
        _save(identity.named(state.get("job")), state, metrics_dir)
    except (BackupError, OSError) as err:
        return "the verify's record was not written: %s" % err
    return None


def refresh_metrics(*, identity: JobIdentity, metrics_dir: str, max_age: float | None = None) -> str:
    """Rewrite a job's metrics from its recorded state and its current configuration, without a
    run (after the job's configuration changed). A run that records meanwhile writes its own
    metrics after its state: a state that changed while these were written is read again."""
    if not os.path.isdir(metrics_dir):
        raise ConfigError("metrics directory %s does not exist" % metrics_dir)
    state_path = state_store.current_state_path(identity)
    state = state_store.read_state(state_path)
    for _attempt in range(5):
        text = metrics.render(identity.name, run_record.with_configuration(state, max_age=max_age))
        state_store.save_metrics(metrics_dir, identity, text)
        now = state_store.read_state(state_path)
        if now == state:
            break
        state = now
    return state_store.metrics_path(metrics_dir, identity)


def record_rebuild(*, identity: JobIdentity, origin: str, snapshots: list, when: float) -> str:
    """Record a rebuilt source in the job's state (run_record.record_rebuild), under the name its
    runs recorded unless one was given: the state file's path."""
    previous = state_store.load_state(identity)
    job = identity.name if identity.name != default_job_name(identity.source_id) else \
        (previous or {}).get("job") or identity.name
    state = run_record.record_rebuild(previous, job=job, prefix=identity.prefix, source=identity.source_id,
                                      snapshot_folder=identity.snapshot_folder, origin=origin,
                                      snapshots=snapshots, when=when)
    return state_store.save_state(identity, state)
