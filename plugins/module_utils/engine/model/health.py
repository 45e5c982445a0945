"""Pure health decisions: each destination's freshness, a job's timer, and the one OK/WARNING/CRITICAL/UNKNOWN
verdict that status, the info module and the fleet report all show."""

from __future__ import annotations

from dataclasses import dataclass, field

from .units import format_duration
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import List, Optional

# The monitoring-plugins convention: the exit status is the level's index.
LEVELS = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
OK, WARNING, CRITICAL, UNKNOWN = range(4)


@dataclass
class DestinationHealth:
    """One destination's verdict and the reasons for it."""
    destination: str
    level: int
    age: Optional[float]
    reasons: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class TimerState:
    """What systemd says of the role's units for a job: `installed` and `active` are the timer's,
    `next_run` its next elapse (None: none); `service_installed` tells a job the role runs, and
    `running` that its service runs now (systemd then shows the timer without a next elapse)."""
    unit: str
    installed: bool
    active: bool
    next_run: Optional[str]
    service_installed: bool = True
    running: bool = False

    @property
    def managed(self) -> bool:
        """The role installed the job's units: its timer is meant to run it."""
        return self.installed or self.service_installed


@dataclass
class JobHealth:
    """One job's verdict: the worst of its destinations and of what concerns the whole job (its
    last run, its timer); `job_level` is the latter, which every destination's row shares."""
    job: str
    level: int
    reasons: List[str]
    destinations: List[DestinationHealth]
    job_level: int = OK

    @property
    def label(self) -> str:
        return LEVELS[self.level]

    def row_label(self, dest_id: str) -> str:
        """The state of one destination's row: its own verdict or the job's, whichever is worse,
        so that the job's verdict is always the worst of its rows."""
        own = [d.level for d in self.destinations if d.destination == dest_id]
        return LEVELS[max(own + [self.job_level])] if own else self.label


def assess_destination(dest_id: str, record: dict, now: float, max_age: float | None) -> DestinationHealth:
    """Freshness of one destination from its state record (see run_record)."""
    newest = record.get("newest_backup_time")
    age = None if newest is None else now - newest
    reasons, level = [], OK
    if newest is None:
        level = CRITICAL
        reasons.append("%s holds no backup yet" % dest_id)
    elif max_age is not None and age > max_age:
        level = CRITICAL
        reasons.append("newest backup at %s is %s old (max %s)" % (dest_id, format_duration(age), format_duration(max_age)))
    if record.get("survey_error"):
        level = max(level, WARNING)
        reasons.append("cannot list %s now: %s" % (dest_id, record["survey_error"]))
    if record.get("status") == "failed":
        level = max(level, WARNING)
        reasons.append("last run failed at %s: %s" % (dest_id, record.get("error") or "unknown error"))
    if record.get("locks"):
        level = max(level, WARNING)
        reasons.append("%d outstanding transfer lock(s) for %s since %d run(s)" % (
            record["locks"], dest_id, record.get("locked_runs") or 1))
    unsent, ceiling = record.get("unsent_snapshots"), record.get("max_unsent_snapshots")
    if record.get("unsent_ceiling") == "released":
        level = max(level, WARNING)  # the others still get their backups; this one misses some
        reasons.append("%s is out of reach at max_unsent_snapshots %d: snapshots kept only for it are "
                       "deleted by source retention; it continues from %s when it is back" % (
                           dest_id, ceiling or 0, record.get("newest_backup")))
    elif unsent and ceiling and unsent >= ceiling:
        level = max(level, CRITICAL)  # no snapshot is taken until it is back or removed from the job
        reasons.append("%d snapshots wait for %s: no new snapshot is taken (max_unsent_snapshots %d)" % (
            unsent, dest_id, ceiling))
    verify = record.get("verify")
    if verify is not None and not verify.get("ok"):
        level = max(level, CRITICAL)
        reasons.append("last verify of %s at %s failed: %s" % (
            verify.get("snapshot"), dest_id, "; ".join(verify.get("problems") or ["unknown problem"])))
    return DestinationHealth(dest_id, level, age, reasons)


def assess_timer(timer: TimerState | None) -> tuple[int, list[str]]:
    """(level, reasons) of a job's schedule: a job the role installed whose timer is missing or
    stopped has no next run. None (no systemd, a job run by hand or by cron) is no problem."""
    if timer is None or not timer.managed:
        return OK, []
    if not timer.installed:
        why = "the timer %s is not installed" % timer.unit
    elif not timer.active:
        why = "the timer %s is not active" % timer.unit
    elif not timer.next_run and not timer.running:
        why = "the timer %s has no next elapse" % timer.unit
    else:
        return OK, []
    return WARNING, ["no next run: %s" % why]


def assess_job(job: str, state: dict | None, now: float, max_age: float | None = None,
               timer: TimerState | None = None) -> JobHealth:
    """The verdict for one job from its last-run state (None: never ran) and its timer (a
    TimerState, None when no timer runs it); `max_age` overrides the one the job recorded."""
    timer_level, timer_reasons = assess_timer(timer)
    if state is None:
        reasons = ["no run recorded yet"] + timer_reasons
        return JobHealth(job, UNKNOWN, ["%s: %s" % (job, r) for r in reasons], [], job_level=UNKNOWN)
    if max_age is None:
        max_age = state.get("max_age_seconds")
    destinations = [assess_destination(d, r, now, max_age)
                    for d, r in sorted((state.get("destinations") or {}).items())]
    reasons = [r for d in destinations for r in d.reasons]
    job_level = timer_level
    last = state.get("last_run") or {}
    if not destinations:
        job_level = max(job_level, WARNING if last.get("ok") else CRITICAL)
        reasons.append("no destination recorded")
    run_errors = [e for e in last.get("errors") or []
                  if not any(e.startswith(d.destination + ":") for d in destinations)]
    if run_errors:
        job_level = max(job_level, WARNING)
        reasons.extend(run_errors)
    if last and not last.get("ok") and not run_errors and not any(
            d.level > OK for d in destinations):
        job_level = max(job_level, WARNING)  # failed, yet no error names why: still not OK
        reasons.append("the last run failed")
    reasons.extend(timer_reasons)
    level = max([d.level for d in destinations] + [job_level])
    return JobHealth(job, level, ["%s: %s" % (job, r) for r in reasons], destinations, job_level=job_level)


def monitoring_line(jobs: list[JobHealth]) -> tuple[int, str]:
    """(exit status, one line with perfdata) for Nagios/Icinga/Checkmk from several JobHealth."""
    if not jobs:
        return UNKNOWN, "BTRFS BACKUP UNKNOWN - no backup job found"
    level = max(j.level for j in jobs)
    troubled = [r for j in jobs if j.level == level for r in j.reasons] if level != OK else []
    text = "; ".join(troubled) or "%d job(s), every destination fresh" % len(jobs)
    perf = []
    for job in jobs:
        for dest in job.destinations:
            if dest.age is not None:
                perf.append("'%s %s age'=%ds" % (job.job, dest.destination, int(dest.age)))
    return level, "BTRFS BACKUP %s - %s%s" % (LEVELS[level], text.replace("|", "/"),
                                              " | " + " ".join(perf) if perf else "")
