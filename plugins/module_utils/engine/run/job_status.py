"""Every job's verdict from its state file, its timer and a survey if asked: one loop for status and the info module."""

from __future__ import annotations

from dataclasses import dataclass

from ..host.endpoints.location import parse_location
from ..host.locks import staged_here
from ..host.state_store import current_state_path, read_state
from ..host.timers import read_timer_states
from ..model.errors import BackupError
from ..model.job_verdict import JobVerdict, judge_job, recorded_name
from ..model.run_record import with_staged
from .survey import survey_job
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import List, Optional, Tuple


@dataclass(frozen=True)
class JobStatus:
    """One job: its spec (under the name its runs recorded when it was given none), its verdict,
    and its survey (None when not surveyed)."""
    spec: object
    judged: JobVerdict
    survey: Optional[dict] = None


def job_statuses(specs, *, now: float, max_age: Optional[int] = None, survey: bool = False,
                 runner=None) -> Tuple[List[JobStatus], List[str]]:
    """([JobStatus], [error]) for JobSpecs: each job's last-run state and timer read, its snapshot
    folder and destinations listed when `survey`; `max_age` overrides each job's own."""
    timers = read_timer_states([s.identity.name for s in specs if s.config_file], runner)
    statuses, errors = [], []
    for spec in specs:
        try:
            state = read_state(current_state_path(spec.identity))
            spec = spec.named(recorded_name(spec.identity.name, state, spec.name_given))
        except BackupError as err:
            errors.append(str(err))
            state = None
        state = with_staged(state, *_staged_beside_locks(spec))
        found = survey_job(spec, runner) if survey else None
        judged = judge_job(spec.identity.name, state, now=now, max_age=max_age or spec.max_age, survey=found,
                           timers=timers)
        statuses.append(JobStatus(spec=spec, judged=judged, survey=found))
    return statuses, errors


def _staged_beside_locks(spec) -> tuple:
    """(staged shares, locks) beside the lock file of a job whose snapshots are on this machine
    (a run killed outright left its figure there); ({}, {}) otherwise: status contacts no host."""
    try:
        source = parse_location(spec.source, allow_shell=False)
    except BackupError:
        return {}, {}
    if not source.on_this_machine:
        return {}, {}
    return staged_here(spec.identity.snapshot_folder)
