"""The ceiling on snapshots kept for a destination that cannot be listed: what waits, when the
ceiling is reached, what the run says, and how the record, the metrics and the verdict show it."""

import pytest

from engine import health, metrics
from engine.unsent import ceiling_message, ceiling_reached, waiting_for, waiting_warning

S = ["p20260101-000000", "p20260102-000000", "p20260103-000000", "p20260104-000000"]

WAITING = {
    "nothing known of the destination: all of them": (S, None, S),
    "after its newest backup": (S, S[1], S[2:]),
    "up to date": (S, S[-1], []),
    "its newest backup is gone from the source": (S[2:], S[1], S[2:]),
    "names of another scheme are not ours": (S + ["other", "p2026"], S[2], S[3:]),
    "unordered input": (list(reversed(S)), S[0], S[1:]),
}


@pytest.mark.parametrize("name", WAITING)
def test_what_waits_for_a_destination(name):
    snapshots, newest_backup, expected = WAITING[name]
    assert waiting_for(snapshots, "p", newest_backup) == expected


@pytest.mark.parametrize("waiting, ceiling, reached", [
    (0, 100, False), (99, 100, False), (100, 100, True), (150, 100, True), (1000, 0, False), (1, 1, True),
])
def test_the_ceiling(waiting, ceiling, reached):
    assert ceiling_reached(waiting, ceiling) is reached


def test_the_message_names_the_destination_since_when_the_setting_and_the_way_out():
    text = ceiling_message("ssh://root@nas/srv/backups/web1", 100, 1767225600.0, 100, "cannot reach ssh host")
    assert text.startswith("100 snapshots are waiting for ssh://root@nas/srv/backups/web1, unreachable since 2026-01-0")
    for part in ("(cannot reach ssh host)", "not taking another (max_unsent_snapshots 100)",
                 "must come back or be removed from the job", "every snapshot is kept"):
        assert part in text
    assert "no recorded run has reached" in ceiling_message("/mnt/usb", 5, None, 5, "missing")


def test_the_warning_says_what_happens_at_the_ceiling():
    assert "at 100 (max_unsent_snapshots) no new snapshot is taken" in waiting_warning("d", 3, None, 100)
    assert "without limit" in waiting_warning("d", 3, None, 0)


def _record(unsent, ceiling):
    return {"status": "failed", "error": "cannot reach", "newest_backup_time": 1000.0, "locks": 0,
            "unsent_snapshots": unsent, "max_unsent_snapshots": ceiling}


@pytest.mark.parametrize("unsent, ceiling, critical", [(3, 100, False), (100, 100, True), (100, 0, False), (None, 100, False)])
def test_the_verdict_at_the_ceiling_is_critical_and_says_why(unsent, ceiling, critical):
    judged = health.assess_destination("ssh://nas/b", _record(unsent, ceiling), now=2000.0, max_age=None)
    said = any("no new snapshot is taken (max_unsent_snapshots" in r for r in judged.reasons)
    assert said is critical and (judged.level == health.CRITICAL) is critical


def test_the_metric_counts_what_waits_per_destination():
    state = {"last_run": None, "destinations": {"ssh://nas/b": _record(7, 100), "/mnt/usb": _record(0, 100)}}
    text = metrics.render("web1", state)
    assert "# TYPE btrfs_backup_unsent_snapshots gauge" in text
    assert 'btrfs_backup_unsent_snapshots{backup_job="web1",destination="ssh://nas/b"} 7' in text
    assert 'btrfs_backup_unsent_snapshots{backup_job="web1",destination="/mnt/usb"} 0' in text
