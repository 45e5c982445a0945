"""Every job's verdict from its state file, its timer and a survey if asked: one loop for status and the info module."""

from __future__ import annotations

from dataclasses import dataclass

from ..host.state_store import current_state_path, read_state
from ..host.timers import read_timer_states
from ..model.errors import BackupError
from ..model.job_verdict import JobVerdict, judge_job, recorded_name
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
        found = survey_job(spec, runner) if survey else None
        judged = judge_job(spec.identity.name, state, now=now, max_age=max_age or spec.max_age, survey=found,
                           timers=timers)
        statuses.append(JobStatus(spec=spec, judged=judged, survey=found))
    return statuses, errors
