"""engine.model.job_verdict: the one verdict of a job that status and the info module show, from tables of facts."""

import pytest

from engine.model.health import TimerState
from engine.model.job_verdict import judge_job, recorded_name

NOW = 1_800_000_000.0
HOUR = 3600


def state(age_hours, ok=True, max_age=None, job="home"):
    return {"job": job, "max_age_seconds": max_age,
            "last_run": {"start": NOW - age_hours * HOUR, "ok": ok, "errors": [], "snapshot": "s"},
            "destinations": {"/b": {"status": "ok", "error": None, "locks": 0, "newest_backup": "s",
                                    "newest_backup_time": NOW - age_hours * HOUR}}}


@pytest.mark.parametrize("name, recorded, given, expected", [
    ("home", state(1, job="nightly"), True, "home"),  # a name given (or its config file's) stays
    ("home", state(1, job="nightly"), False, "nightly"),  # ad hoc: the name its runs recorded
    ("home", None, False, "home"),  # never ran: the name made from its source
    ("home", {"destinations": {}}, False, "home"),  # a state without a name
])
def test_a_job_given_without_a_name_is_known_by_the_name_its_runs_recorded(name, recorded, given, expected):
    assert recorded_name(name, recorded, given) == expected


# (recorded state, max age given, label, max age applied)
CASES = [
    (None, None, "UNKNOWN", None),
    (state(1), None, "OK", None),
    (state(40), None, "OK", None),  # no maximum age anywhere: fresh while it has a backup
    (state(40, max_age=36 * HOUR), None, "CRITICAL", 36 * HOUR),  # the one its runs recorded
    (state(40, max_age=48 * HOUR), 36 * HOUR, "CRITICAL", 36 * HOUR),  # the given one wins
    (state(40, max_age=36 * HOUR), 48 * HOUR, "OK", 48 * HOUR),
    (state(1, ok=False), None, "WARNING", None),
]


@pytest.mark.parametrize("recorded, max_age, label, applied", CASES)
def test_the_verdict_and_the_maximum_age_that_applied(recorded, max_age, label, applied):
    judged = judge_job("home", recorded, now=NOW, max_age=max_age)
    assert (judged.verdict.label, judged.max_age) == (label, applied)
    assert judged.state == recorded and judged.timer is None


def test_the_jobs_timer_is_found_by_its_name():
    stopped = TimerState(unit="btrfs-backup@home.timer", installed=True, active=False, next_run=None)
    timers = {"home": stopped, "other": TimerState(unit="x", installed=True, active=True, next_run="soon")}
    judged = judge_job("home", state(1), now=NOW, timers=timers)
    assert judged.timer is stopped and judged.verdict.label == "WARNING"
    assert judge_job("nightly", state(1), now=NOW, timers=timers).timer is None


def test_a_survey_judges_what_the_destinations_hold_now():
    survey = {"snapshots": [], "source_error": None, "locks": {},
              "destinations": {"/b": {"error": None, "backups": []}}}  # the backups are gone
    judged = judge_job("home", state(1), now=NOW, survey=survey)
    assert judged.state["destinations"]["/b"]["newest_backup"] is None
    assert judged.verdict.label == "CRITICAL"
    # a job that never ran, surveyed: judged by what the survey found
    assert judge_job("home", None, now=NOW, survey=survey).verdict.label == "CRITICAL"
