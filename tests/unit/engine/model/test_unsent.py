"""The ceiling on snapshots kept for a destination that cannot be listed: what waits, when the
ceiling is reached, what the run says, and how the record, the metrics and the verdict show it."""

import pytest

from engine.model import health, metrics
from engine.model.unsent import (RELEASED, STOPPED, at_ceiling, ceiling_message, ceiling_reached, continues_from,
                           release_warning, waiting_for, waiting_warning)

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


@pytest.mark.parametrize("snapshots, newest_backup, parent", [
    (S, S[1], S[1]),  # the last run that reached it saw it hold S[1]: it continues from there
    (S, None, None),  # no run ever reached it
    (S[2:], S[1], None),  # that snapshot is gone from the source: nothing to continue from
    (S, "p20991231-000000", None),
])
def test_what_a_destination_out_of_reach_continues_from(snapshots, newest_backup, parent):
    assert continues_from(snapshots, newest_backup) == parent


AT_CEILING = {
    "its parent known, another answers: the others get their backup (rule 9)": ({"a": S[0]}, True, RELEASED),
    "its parent not known: nothing else bounds the growth": ({"a": None}, True, STOPPED),
    "no other destination answers": ({"a": S[0]}, False, STOPPED),
    "two at the ceiling, one parent not known": ({"a": S[0], "b": None}, True, STOPPED),
    "two at the ceiling, both parents known": ({"a": S[0], "b": S[1]}, True, RELEASED),
}


@pytest.mark.parametrize("name", AT_CEILING)
def test_what_a_run_does_at_the_ceiling(name):
    parents, another_answers, decision = AT_CEILING[name]
    assert at_ceiling(parents, another_answers) == decision


def test_the_release_warning_says_what_it_keeps_and_what_is_missed():
    text = release_warning("ssh://nas/b", 100, None, 100, S[1], "cannot reach ssh host")
    for part in ("100 snapshots are waiting for ssh://nas/b", "at max_unsent_snapshots 100",
                 "source retention keeps %s, the newest it holds" % S[1],
                 "continues incrementally from there", "misses those deleted in between"):
        assert part in text, text


def test_the_message_names_the_destination_since_when_the_setting_and_the_way_out():
    text = ceiling_message("ssh://root@nas/srv/backups/web1", 100, 1767225600.0, 100, "cannot reach ssh host")
    assert text.startswith("100 snapshots are waiting for ssh://root@nas/srv/backups/web1, unreachable since 2026-01-0")
    for part in ("(cannot reach ssh host)", "not taking another (max_unsent_snapshots 100)",
                 "must come back or be removed from the job", "every snapshot is kept"):
        assert part in text
    assert "no recorded run has reached" in ceiling_message("/mnt/usb", 5, None, 5, "missing")
    assert "the newest backup it holds is not known" in ceiling_message("/mnt/usb", 5, None, 5, "missing")
    assert "no other destination can take a snapshot now" in ceiling_message("/mnt/usb", 5, None, 5, "x", True)


def test_the_warning_says_what_happens_at_the_ceiling():
    text = waiting_warning("d", 3, None, 100)
    assert "at 100 (max_unsent_snapshots) source retention may delete those kept only for it" in text
    assert "if that is not known or no destination answers, no new snapshot is taken" in text
    assert "without limit" in waiting_warning("d", 3, None, 0)


def _record(unsent, ceiling):
    return {"status": "failed", "error": "cannot reach", "newest_backup_time": 1000.0, "locks": 0,
            "unsent_snapshots": unsent, "max_unsent_snapshots": ceiling}


@pytest.mark.parametrize("unsent, ceiling, critical", [(3, 100, False), (100, 100, True), (100, 0, False), (None, 100, False)])
def test_the_verdict_at_the_ceiling_is_critical_and_says_why(unsent, ceiling, critical):
    judged = health.assess_destination("ssh://nas/b", _record(unsent, ceiling), now=2000.0, max_age=None)
    said = any("no new snapshot is taken (max_unsent_snapshots" in r for r in judged.reasons)
    assert said is critical and (judged.level == health.CRITICAL) is critical


def test_the_verdict_after_a_release_warns_and_names_the_parent():
    record = dict(_record(100, 100), unsent_ceiling=RELEASED, newest_backup=S[1])
    judged = health.assess_destination("ssh://nas/b", record, now=2000.0, max_age=None)
    assert judged.level == health.WARNING, judged
    assert any("it continues from %s when it is back" % S[1] in r for r in judged.reasons), judged.reasons
    assert not any("no new snapshot is taken" in r for r in judged.reasons), judged.reasons


def test_the_metric_counts_what_waits_per_destination():
    state = {"last_run": None, "destinations": {"ssh://nas/b": _record(7, 100), "/mnt/usb": _record(0, 100)}}
    text = metrics.render("web1", state)
    assert "# TYPE btrfs_backup_unsent_snapshots gauge" in text
    assert 'btrfs_backup_unsent_snapshots{backup_job="web1",destination="ssh://nas/b"} 7' in text
    assert 'btrfs_backup_unsent_snapshots{backup_job="web1",destination="/mnt/usb"} 0' in text
