"""Pure: one job's verdict from its facts (recorded state, a survey, its timer), for status and the info module."""

from __future__ import annotations

from dataclasses import dataclass

from . import health
from .run_record import with_survey
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Mapping, Optional


@dataclass(frozen=True)
class JobVerdict:
    """What status and the info module show of one job."""
    name: str
    state: Optional[dict]  # the recorded state, as the survey found things now (None: never ran)
    verdict: health.JobHealth
    max_age: Optional[int]  # the maximum age that applied: given, the job's own, or recorded
    timer: Optional[health.TimerState]


def recorded_name(name: str, state: Optional[dict], name_given: bool) -> str:
    """A job given without a name is known by the name its runs recorded."""
    return name if name_given or not state or not state.get("job") else state["job"]


def judge_job(name: str, state: Optional[dict], *, now: float, max_age: Optional[int] = None,
              survey: Optional[dict] = None, timers: Optional[Mapping[str, health.TimerState]] = None
              ) -> JobVerdict:
    """The verdict of the job `name` from its last-run state (None: none), a survey of its snapshot
    folder and destinations (survey_job's report, None: not surveyed), its timer among `timers`;
    `max_age` is the given or configured maximum age (None: the one its runs recorded)."""
    judged = with_survey(state, survey) if survey else state
    timer = (timers or {}).get(name)
    verdict = health.assess_job(name, judged, now, max_age, timer=timer)
    return JobVerdict(name=name, state=judged, verdict=verdict, timer=timer,
                      max_age=max_age or (judged or {}).get("max_age_seconds"))
