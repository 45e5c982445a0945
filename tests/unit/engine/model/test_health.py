"""engine.model.health: the status verdict (OK/WARNING/CRITICAL/UNKNOWN) from tables of states
and timers; engine.host.timers: what systemd says of the role's units."""

import pytest

from engine.model.health import LEVELS, TimerState, assess_job, monitoring_line
from engine.host.timers import parse_timer_states

NOW = 1_800_000_000.0
HOUR = 3600


def dest(age_hours=1.0, status="ok", error=None, locks=0, locked_runs=0, verify=None):
    return {"status": status, "error": error, "locks": locks, "locked_runs": locked_runs,
            "newest_backup": "x", "verify": verify,
            "newest_backup_time": None if age_hours is None else NOW - age_hours * HOUR}


def state(destinations, ok=True, errors=(), max_age=36 * HOUR):
    return {"max_age_seconds": max_age, "destinations": destinations,
            "last_run": {"ok": ok, "errors": list(errors), "start": NOW - HOUR}}


FAILED_VERIFY = {"ok": False, "snapshot": "20260101-000000", "problems": ["differs: a"], "time": NOW}
GOOD_VERIFY = {"ok": True, "snapshot": "20260101-000000", "problems": [], "time": NOW}


def timer(installed=True, active=True, next_run="Tue 2026-12-01 02:00:00 UTC", service=True, running=False):
    return TimerState("btrfs-backup@home.timer", installed, active, next_run, service_installed=service,
                      running=running)


NO_NEXT_RUN = "no next run: the timer btrfs-backup@home.timer is not active"

# (case, state, max_age override, expected level, words the reasons must contain[, timer])
CASES = [
    ("never ran", None, None, "UNKNOWN", ["no run recorded"]),
    ("fresh", state({"/b": dest(2)}), None, "OK", []),
    ("fresh, verified", state({"/b": dest(2, verify=GOOD_VERIFY)}), None, "OK", []),
    ("stale by the job's max age", state({"/b": dest(40)}), None, "CRITICAL", ["1d 16h old", "max 1d 12h"]),
    ("stale by the override", state({"/b": dest(2)}), HOUR, "CRITICAL", ["2h", "max 1h"]),
    ("no max age known: any backup is fresh", state({"/b": dest(400)}, max_age=None), None, "OK", []),
    ("no backup at all", state({"/b": dest(None)}), None, "CRITICAL", ["no backup yet"]),
    ("last run failed, backup still fresh",
     state({"/b": dest(2, status="failed", error="unreachable")}, ok=False, errors=["/b: unreachable"]),
     None, "WARNING", ["unreachable"]),
    ("last run failed and stale", state({"/b": dest(50, status="failed", error="gone")}, ok=False),
     None, "CRITICAL", ["gone", "2d 2h old"]),
    ("one of two destinations stale", state({"/b": dest(2), "ssh://s/b": dest(48)}), None,
     "CRITICAL", ["ssh://s/b"]),
    ("lock outstanding", state({"/b": dest(2, locks=1, locked_runs=2)}), None, "WARNING",
     ["1 outstanding transfer lock", "2 run"]),
    ("verify failed", state({"/b": dest(2, verify=FAILED_VERIFY)}), None, "CRITICAL",
     ["verify", "differs: a"]),
    ("a run error that belongs to no destination", state({"/b": dest(2)}, ok=False,
     errors=["retention at source: busy"]), None, "WARNING", ["retention at source"]),
    ("ran, but without a destination", state({}, ok=True), None, "WARNING", ["no destination"]),
    ("failed before any destination", state({}, ok=False, errors=["source /x does not exist"]),
     None, "CRITICAL", ["does not exist"]),
    ("failed at the source, every destination still fresh",
     state({"/b": dest(2), "/c": dest(3)}, ok=False, errors=["/home/snapshot/.outstanding_transfers is corrupt"]),
     None, "WARNING", [".outstanding_transfers is corrupt"]),
    ("failed without saying why", state({"/b": dest(2)}, ok=False), None, "WARNING", ["last run failed"]),
    # The job's timer: only a job the role installed (its units exist) is expected to have one.
    ("timer active, next run known", state({"/b": dest(2)}), None, "OK", [], timer()),
    ("timer stopped", state({"/b": dest(2)}), None, "WARNING", [NO_NEXT_RUN], timer(active=False, next_run=None)),
    ("timer removed, service still there", state({"/b": dest(2)}), None, "WARNING",
     ["no next run: the timer btrfs-backup@home.timer is not installed"],
     timer(installed=False, active=False, next_run=None)),
    ("timer active without a next elapse", state({"/b": dest(2)}), None, "WARNING", ["has no next elapse"],
     timer(next_run=None)),
    # While the service runs, systemd shows its timer without a next elapse until the run ends.
    ("timer active, its run under way", state({"/b": dest(2)}), None, "OK", [],
     timer(next_run=None, running=True)),
    ("timer stopped, a run under way", state({"/b": dest(2)}), None, "WARNING", [NO_NEXT_RUN],
     timer(active=False, next_run=None, running=True)),
    ("no unit at all: run by hand or by cron", state({"/b": dest(2)}), None, "OK", [],
     timer(installed=False, active=False, next_run=None, service=False)),
    ("no systemd to ask", state({"/b": dest(2)}), None, "OK", [], None),
    ("timer stopped and stale: the worse wins", state({"/b": dest(40)}), None, "CRITICAL",
     ["1d 16h old", NO_NEXT_RUN], timer(active=False, next_run=None)),
    ("never ran, timer stopped", None, None, "UNKNOWN", ["no run recorded", NO_NEXT_RUN],
     timer(active=False, next_run=None)),
]


@pytest.mark.parametrize("case, job_state, max_age, level, words, job_timer",
                         [c if len(c) == 6 else c + (None,) for c in CASES], ids=[c[0] for c in CASES])
def test_verdicts(case, job_state, max_age, level, words, job_timer):
    verdict = assess_job("home", job_state, NOW, max_age, timer=job_timer)
    assert verdict.label == level
    text = " ".join(verdict.reasons)
    for word in words:
        assert word in text
    assert all(r.startswith("home: ") for r in verdict.reasons)
    assert bool(verdict.reasons) == (level != "OK")  # a verdict that is not OK says why
    # One verdict: the job's state is the worst state of its rows (status' table, the info
    # module's destinations, the fleet report), so no row says OK for a job that is not.
    rows = [verdict.row_label(d) for d in sorted((job_state or {}).get("destinations") or {})]
    if rows:
        assert max(rows, key=LEVELS.index) == level
        if verdict.job_level != 0:
            assert "OK" not in rows


SHOWN = """Id=btrfs-backup@home.timer
LoadState=loaded
ActiveState=active
NextElapseUSecRealtime=Tue 2026-12-01 02:00:00 UTC

Id=btrfs-backup@home.service
LoadState=loaded
ActiveState=inactive
NextElapseUSecRealtime=

Id=btrfs-backup@root.timer
LoadState=loaded
ActiveState=inactive
NextElapseUSecRealtime=

Id=btrfs-backup@root.service
LoadState=loaded
ActiveState=inactive

Id=btrfs-backup@busy.timer
LoadState=loaded
ActiveState=active
NextElapseUSecRealtime=

Id=btrfs-backup@busy.service
LoadState=loaded
ActiveState=activating

Id=btrfs-backup@cron.timer
LoadState=not-found
ActiveState=inactive

Id=btrfs-backup@cron.service
LoadState=not-found
ActiveState=inactive
"""


def test_timer_states_from_systemctl_show():
    found = parse_timer_states(["home", "root", "busy", "cron", "absent"], SHOWN)
    assert found["busy"].running and not found["home"].running
    assert assess_job("busy", state({"/b": dest(2)}), NOW, timer=found["busy"]).label == "OK"
    assert found["home"] == TimerState("btrfs-backup@home.timer", True, True, "Tue 2026-12-01 02:00:00 UTC", True)
    assert found["root"] == TimerState("btrfs-backup@root.timer", True, False, None, True)
    assert not found["cron"].managed and not found["absent"].managed
    assert assess_job("root", state({"/b": dest(2)}), NOW, timer=found["root"]).reasons == [
        "root: no next run: the timer btrfs-backup@root.timer is not active"]


def test_plugin_line_is_the_worst_job_with_perfdata():
    jobs = [assess_job("home", state({"/b": dest(2)}), NOW), assess_job("root", state({"/b": dest(40)}), NOW)]
    code, line = monitoring_line(jobs)
    assert code == 2
    assert line.startswith("BTRFS BACKUP CRITICAL - root: newest backup at /b is 1d 16h old")
    assert "home" not in line.split("|")[0]  # only the jobs at the worst level are named
    assert line.split(" | ")[1] == "'home /b age'=7200s 'root /b age'=144000s"


def test_plugin_line_ok_and_unknown():
    assert monitoring_line([assess_job("home", state({"/b": dest(2)}), NOW)]) == (
        0, "BTRFS BACKUP OK - 1 job(s), every destination fresh | 'home /b age'=7200s")
    assert monitoring_line([]) == (3, "BTRFS BACKUP UNKNOWN - no backup job found")
