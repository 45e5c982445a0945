"""engine.model.retention: count and time-bucket policies, protected items, and why each survivor stays."""

import datetime

import pytest

from engine.model.errors import ConfigError
from engine.model.retention import Policy, parse_buckets, parse_min_age, plan_retention, protect_young

T0 = datetime.datetime(2026, 3, 1, 8, 0)


def daily(n):
    """n items one day apart, named d1..dn, oldest first."""
    return [("d%d" % (i + 1), T0 + datetime.timedelta(days=i)) for i in range(n)]


def kept(decisions):
    return [d.name for d in decisions if d.keep]


# -- count policy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n, count, expected", [
    pytest.param(5, 2, ["d4", "d5"], id="keep-newest-2-of-5"),
    pytest.param(5, 1, ["d5"], id="keep-newest-1"),
    pytest.param(3, 5, ["d1", "d2", "d3"], id="count-larger-than-items"),
    pytest.param(1, 1, ["d1"], id="single-item"),
])
def test_count_policy(n, count, expected):
    assert kept(plan_retention(daily(n), Policy(count=count))) == expected


def test_items_in_any_order_come_back_oldest_first():
    items = list(reversed(daily(4)))
    decisions = plan_retention(items, Policy(count=2))
    assert [d.name for d in decisions] == ["d1", "d2", "d3", "d4"]
    assert [d.keep for d in decisions] == [False, False, True, True]


def test_empty_input():
    assert plan_retention([], Policy(count=1)) == []


def test_protected_items_are_never_deleted_and_keep_their_reasons():
    protected = {
        "d1": ["transfer to /backup is unfinished (locked)"],
        "d3": ["newest snapshot that ssh://nas/b holds (its next incremental parent)"],
    }
    decisions = {d.name: d for d in plan_retention(daily(6), Policy(count=2), protected)}
    assert [n for n, d in sorted(decisions.items()) if d.keep] == ["d1", "d3", "d5", "d6"]
    assert decisions["d1"].reasons == ["transfer to /backup is unfinished (locked)"]
    assert decisions["d3"].reasons == [
        "newest snapshot that ssh://nas/b holds (its next incremental parent)"]
    assert decisions["d6"].reasons == ["one of the newest 2"]
    assert decisions["d2"].reasons == [] and not decisions["d2"].keep


def test_every_kept_item_says_why():
    for decision in plan_retention(daily(10), Policy(count=3, buckets=parse_buckets("2d"))):
        assert decision.keep == bool(decision.reasons)


def test_newest_is_always_kept():
    # A bucket policy whose periods are all long past keeps nothing but the newest item.
    far_future = T0 + datetime.timedelta(days=400)
    decisions = plan_retention(daily(3), Policy(buckets={"d": 1}), now=far_future)
    assert kept(decisions) == ["d3"]
    assert decisions[-1].reasons == ["newest"]


def test_no_policy_keeps_everything():
    policy = Policy()
    assert policy.keeps_everything
    assert policy.describe() == "keep all"
    decisions = plan_retention(daily(4), policy)
    assert kept(decisions) == ["d1", "d2", "d3", "d4"]
    assert all("retention keeps everything (no policy set)" in d.reasons for d in decisions)


@pytest.mark.parametrize("count", [
    pytest.param(-1, id="negative"),
    pytest.param(True, id="bool"),
    pytest.param(1.5, id="float"),
    pytest.param("3", id="string"),
    pytest.param(None, id="none"),
])
def test_policy_rejects_bad_counts(count):
    with pytest.raises(ConfigError) as err:
        Policy(count=count)
    assert "retention count" in str(err.value)


@pytest.mark.parametrize("buckets", [
    pytest.param({"x": 3}, id="unknown-unit"),
    pytest.param({"d": -1}, id="negative-periods"),
    pytest.param({"d": "7"}, id="string-periods"),
    pytest.param({"d": True}, id="bool-periods"),
])
def test_policy_rejects_bad_buckets(buckets):
    with pytest.raises(ConfigError):
        Policy(buckets=buckets)


# -- bucket policy -----------------------------------------------------------------------------------

def test_parse_buckets_full_example():
    assert parse_buckets("24h 7d 4w 12m *y") == {"h": 24, "d": 7, "w": 4, "m": 12, "y": None}
    assert parse_buckets("7d,4w") == {"d": 7, "w": 4}
    assert parse_buckets("") == {}


@pytest.mark.parametrize("text, words", [
    pytest.param("7x", ["'7x' is not valid"], id="unknown-unit"),
    pytest.param("-1d", ["'-1d' is not valid"], id="negative"),
    pytest.param("d", ["'d' is not valid"], id="number-missing"),
    pytest.param("7d 3d", ["'d' given twice"], id="unit-twice"),
    pytest.param("7 d", ["'7' is not valid"], id="space-inside-term"),
])
def test_parse_buckets_rejects(text, words):
    with pytest.raises(ConfigError) as err:
        parse_buckets(text)
    for word in words:
        assert word in str(err.value)


def test_bucket_policy_small_series_by_hand():
    items = [
        ("a", datetime.datetime(2026, 3, 1, 8, 0)),
        ("b", datetime.datetime(2026, 3, 1, 20, 0)),
        ("c", datetime.datetime(2026, 3, 2, 9, 0)),   # first of 2 March
        ("d", datetime.datetime(2026, 3, 2, 10, 0)),
        ("e", datetime.datetime(2026, 3, 3, 7, 0)),   # first of 3 March, and the newest
    ]
    now = datetime.datetime(2026, 3, 3, 12, 0)
    decisions = plan_retention(items, Policy(buckets=parse_buckets("2d")), now=now)
    assert kept(decisions) == ["c", "e"]
    by_name = {d.name: d for d in decisions}
    assert by_name["c"].reasons == ["first of its daily period 2026-03-02"]


def test_bucket_policy_all_years():
    items = [("y24a", datetime.datetime(2024, 5, 1)), ("y24b", datetime.datetime(2024, 6, 1)),
             ("y25", datetime.datetime(2025, 2, 1)), ("y26a", datetime.datetime(2026, 1, 1)),
             ("y26b", datetime.datetime(2026, 1, 2))]
    decisions = plan_retention(items, Policy(buckets=parse_buckets("*y")),
                               now=datetime.datetime(2026, 6, 1))
    assert kept(decisions) == ["y24a", "y25", "y26a", "y26b"]


def test_bucket_policy_hourly_series_over_five_weeks():
    # Hourly snapshots from Thursday 1 January 2026 00:00 to Wednesday 4 February 2026 13:00.
    start = datetime.datetime(2026, 1, 1, 0, 0)
    now = datetime.datetime(2026, 2, 4, 13, 0)
    items = []
    when = start
    while when <= now:
        items.append((when.strftime("%Y%m%d-%H%M%S"), when))
        when += datetime.timedelta(hours=1)

    def name(*args):
        return datetime.datetime(*args).strftime("%Y%m%d-%H%M%S")

    # Worked out by hand from a calendar:
    # 24h: the 24 hours 3 Feb 14:00 .. 4 Feb 13:00.
    hourly = {name(2026, 2, 3, h) for h in range(14, 24)} | {name(2026, 2, 4, h) for h in range(14)}
    assert len(hourly) == 24
    # 7d: midnight of 29, 30, 31 January and 1, 2, 3, 4 February.
    days = {name(2026, 1, d) for d in (29, 30, 31)} | {name(2026, 2, d) for d in (1, 2, 3, 4)}
    # 4w: ISO weeks 2026-W03..W06 start on Mondays 12, 19, 26 January and 2 February.
    weeks = {name(2026, 1, 12), name(2026, 1, 19), name(2026, 1, 26), name(2026, 2, 2)}
    # 2m: the first item of January (1 Jan 00:00) and of February (1 Feb 00:00).
    months = {name(2026, 1, 1), name(2026, 2, 1)}

    decisions = plan_retention(items, Policy(buckets=parse_buckets("24h 7d 4w 2m")), now=now)
    assert set(kept(decisions)) == hourly | days | weeks | months
    # Overlaps: 1 Feb 00:00 (day, month), 2 Feb 00:00 (day, week), 4 Feb 00:00 (day, hour).
    assert len(kept(decisions)) == 24 + 7 + 4 + 2 - 3
    reasons = {d.name: d.reasons for d in decisions}
    assert reasons[name(2026, 1, 12)] == ["first of its weekly period 2026-W03"]
    assert reasons[name(2026, 2, 1)] == ["first of its daily period 2026-02-01",
                                         "first of its monthly period 2026-02"]
    assert "first of its hourly period 2026-02-04-13:00" in reasons[name(2026, 2, 4, 13)]


def test_count_and_buckets_combine():
    items = daily(10)  # 1..10 March 2026, 08:00
    now = items[-1][1]
    decisions = plan_retention(items, Policy(count=2, buckets=parse_buckets("3d")), now=now)
    # newest 2 are d9, d10; last 3 days add d8.
    assert kept(decisions) == ["d8", "d9", "d10"]


def test_describe():
    assert Policy(count=3, buckets=parse_buckets("7d *y")).describe() == "newest 3, daily 7, yearly all"


# -- the minimum age of the server's own retention (invariant 10) ---------------------------------

@pytest.mark.parametrize("text, expected", [
    ("", None), ("0", None), (" 7d ", datetime.timedelta(days=7)), ("36h", datetime.timedelta(hours=36)),
    ("2w", datetime.timedelta(weeks=2)), ("1.5d", datetime.timedelta(hours=36)),
    ("90min", datetime.timedelta(minutes=90)), ("7d 12h", datetime.timedelta(days=7, hours=12)),
])
def test_minimum_ages(text, expected):
    assert parse_min_age(text) == expected


@pytest.mark.parametrize("text", ["7", "d", "-1d", "7m", "7 d", "1y", "1d2h", "6mo"])
def test_bad_minimum_ages_are_refused(text):
    with pytest.raises(ConfigError, match="minimum age"):
        parse_min_age(text)


def test_a_bare_m_beside_retention_terms_names_both_readings():
    # In '--preserve-backups 12m' m means months; in '--min-age 6m' it could be read either way.
    with pytest.raises(ConfigError, match=r"minimum age '6m' is ambiguous: write 'min' for minutes .* "
                                          r"write days or weeks \(e.g. 30d, 26w\)"):
        parse_min_age("6m")


NOW = datetime.datetime(2026, 11, 30, 12, 0, 0)


@pytest.mark.parametrize("ages_in_hours, min_age, young", [
    ([1, 30, 200], "", []),
    ([1, 30, 200], "1d", ["a1"]),
    ([1, 30, 200], "36h", ["a1", "a30"]),
    ([1, 30, 167, 168, 169], "1w", ["a1", "a167", "a30"]),
])
def test_nothing_younger_than_the_minimum_age_may_go(ages_in_hours, min_age, young):
    items = [("a%d" % h, NOW - datetime.timedelta(hours=h)) for h in ages_in_hours]
    protected = protect_young(items, parse_min_age(min_age), NOW)
    assert sorted(protected) == young
    decisions = plan_retention(items, Policy(count=1), {n: [r] for n, r in protected.items()}, NOW)
    kept = sorted(d.name for d in decisions if d.keep)
    assert kept == sorted(set(young) | {"a1"})
