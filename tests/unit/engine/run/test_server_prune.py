"""engine.run.server_prune: a backup server's retention by when it received each backup, never by names (rule 12)."""

import datetime

import pytest

from engine.model.errors import ConfigError
from engine.host.listing import Subvolume
from engine.model.retention import Policy, parse_buckets
from engine.run.server_prune import local_folder, plan_prune

NOW = datetime.datetime(2026, 12, 4, 12, 0, 0)
DAY = datetime.timedelta(days=1)


def at(text):
    return datetime.datetime.strptime(text, "%Y%m%d-%H%M%S")


def backups(*arrivals):
    """Complete backups from (name, received at) pairs; None: received when its name says."""
    found = {}
    for name, received in arrivals:
        when = at(name) if received is None else received
        found[name] = Subvolume(name, "/srv/backups/h1/root/" + name, 300, "u-" + name, None,
                                "r-" + name, True, when.timestamp())
    return found


# Six real backups, one a day at 02:00 (names as received), before the attack.
REAL = [("202611%02d-020000" % d if d <= 30 else "202612%02d-020000" % (d - 30), None)
        for d in range(28, 34)]
REAL_NAMES = [n for n, _r in REAL]
# The attack: five future names and one ancient, all received this morning.
FUTURE = [("20991231-00000%d" % i, NOW - datetime.timedelta(hours=2, minutes=-i)) for i in range(2, 7)]
ANCIENT = [("20000101-000000", NOW - datetime.timedelta(hours=1))]


def kept(decisions):
    return sorted(d.name for d in decisions if d.keep)


@pytest.mark.parametrize("arrivals, count, preserve, min_age, expect_kept, expect_lying", [
    pytest.param(REAL, 5, "7d 4w", None, REAL_NAMES, [], id="no-attack"),
    pytest.param(REAL + FUTURE + ANCIENT, 5, "7d 4w", None, sorted(REAL_NAMES + ["20000101-000000"]),
                 [n for n, _r in FUTURE], id="the-attack-costs-no-real-backup"),
    pytest.param(REAL + FUTURE, 3, "", None, REAL_NAMES[-3:], [n for n, _r in FUTURE],
                 id="count-only-future-names-rank-below-real"),
    pytest.param(REAL + FUTURE, 0, "7d", None, REAL_NAMES, [n for n, _r in FUTURE],
                 id="buckets-only-future-names-take-no-bucket"),
    pytest.param(REAL + FUTURE, 3, "", 1 * DAY, sorted(REAL_NAMES[-3:] + [n for n, _r in FUTURE]),
                 [n for n, _r in FUTURE], id="min-age-keeps-young-lies-for-now"),
    pytest.param(FUTURE, 2, "", None, ["20991231-000005", "20991231-000006"], [n for n, _r in FUTURE],
                 id="only-lies-the-newest-received-stay"),
    pytest.param([("20261202-000000", at("20261202-060000")), ("20261201-000000", NOW - DAY)], 1, "", None,
                 ["20261201-000000"], [], id="order-is-received-order-not-name-order"),
    pytest.param(REAL + [("20261204-121000", NOW)], 1, "", None, ["20261204-121000"], [],
                 id="a-clock-minutes-ahead-is-believed"),
    pytest.param(REAL + [("20261204-150000", NOW)], 1, "", None, [REAL_NAMES[-1]], ["20261204-150000"],
                 id="a-clock-hours-ahead-is-not"),
    pytest.param([("20000101-000000", NOW - 10 * DAY)] + REAL, 0, "4w", None,
                 ["20000101-000000", "20261130-020000", REAL_NAMES[-1]], [],
                 id="weekly-buckets-by-received-week-not-name-year"),
])
def test_prune_decides_by_received_time(arrivals, count, preserve, min_age, expect_kept, expect_lying):
    decisions, lying = plan_prune(backups(*arrivals), Policy(count, parse_buckets(preserve)),
                                  now=NOW, min_age=min_age)
    assert kept(decisions) == sorted(expect_kept), [(d.name, d.reasons) for d in decisions]
    assert sorted(lying) == sorted(expect_lying)


def test_a_lying_name_is_never_the_newest_nor_first_of_a_period():
    decisions, _lying = plan_prune(backups(*(REAL + FUTURE)), Policy(1, parse_buckets("7d")), now=NOW)
    reasons = {d.name: d.reasons for d in decisions}
    assert reasons[REAL_NAMES[-1]] == ["one of the newest 1", "first of its daily period 2026-12-03"]
    assert all(reasons[n] == [] for n, _r in FUTURE)


@pytest.mark.parametrize("folder", ["ssh://backup@nas/srv/backups/h1/root", "shell://cat"])
def test_prune_refuses_folders_of_other_machines(folder):
    with pytest.raises(ConfigError, match="only the server knows|shell://"):
        local_folder(folder)
