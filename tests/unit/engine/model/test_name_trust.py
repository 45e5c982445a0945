"""engine.model.name_trust: the check of each backup that arrives at serve, and names that lie about their time."""

import datetime

import pytest

from engine.model.errors import ConfigError
from engine.model.name_trust import arrival_refusal, name_lies, name_time, parse_clock_skew

NOW = datetime.datetime(2026, 12, 4, 12, 0, 0)  # the server's clock
SKEW = 15 * 60
REAL = ["20261201-120000", "20261202-120000", "20261204-110000"]


@pytest.mark.parametrize("arrived, earlier, refused_for", [
    pytest.param(["20261204-115959"], REAL, None, id="a-normal-new-backup"),
    pytest.param(["20261204-120500"], REAL, None, id="a-few-minutes-ahead-within-the-skew"),
    pytest.param(["20261204-121500"], REAL, None, id="exactly-the-skew-ahead"),
    pytest.param(["20261204-121501"], REAL, "lies in the future", id="one-second-beyond-the-skew"),
    pytest.param(["20261204-150000"], REAL, "lies in the future", id="hours-ahead"),
    pytest.param(["20991231-000002"], REAL, "lies in the future", id="the-attack-far-future"),
    pytest.param(["20000101-000000"], REAL, "is not newer than 20261204-110000", id="ancient"),
    pytest.param(["20261203-000000"], REAL, "is not newer than 20261204-110000", id="out-of-order"),
    pytest.param(["20261204-110000"], REAL, "is not newer than 20261204-110000", id="equal-to-the-newest"),
    pytest.param(["20261202-120000"], ["20261204-110000"], "is not newer", id="equal-to-a-pruned-one"),
    pytest.param(["20000101-000000"], [], None, id="first-backup-of-a-folder-any-past-time"),
    pytest.param(["latest"], REAL, "does not end in a timestamp", id="no-timestamp"),
    pytest.param(["x-20261304-000000"], REAL, "does not end in a timestamp", id="no-such-month"),
    pytest.param(["20261204-1159"], REAL, "does not end in a timestamp", id="short-timestamp"),
    pytest.param(["home-20261204-115959"], REAL + ["home-20261204-115000"], None, id="prefix-newer"),
    pytest.param(["home-20261204-100000"], REAL + ["home-20261204-115000"], "is not newer than home-",
                 id="prefix-out-of-order"),
    pytest.param(["home-20261204-100000"], REAL, None, id="other-prefixes-do-not-count"),
    pytest.param(["home-20991231-000000"], REAL, "lies in the future", id="prefix-future"),
    pytest.param(["20261204-115958", "20261204-115959"], REAL, "one receive brings one backup",
                 id="two-subvolumes-in-one-stream"),
    pytest.param([], REAL, None, id="nothing-arrived"),
])
def test_what_arrives_at_serve(arrived, earlier, refused_for):
    refusal = arrival_refusal(arrived, earlier, NOW, SKEW)
    if refused_for is None:
        assert refusal is None
    else:
        assert refusal is not None and refused_for in refusal, refusal
        assert all(name in refusal for name in arrived)


def test_a_future_name_says_the_server_time_and_blames_the_clock():
    refusal = arrival_refusal(["20991231-000002"], REAL, NOW, SKEW)
    assert refusal.startswith("name 20991231-000002 lies in the future (server time 2026-12-04 12:00:00")
    assert "15m of clock skew" in refusal and "clock is wrong" in refusal


@pytest.mark.parametrize("name, received, lies", [
    pytest.param("20261204-120000", NOW, False, id="named-when-received"),
    pytest.param("20261201-000000", NOW, False, id="sent-days-after-it-was-taken"),
    pytest.param("20261204-121000", NOW, False, id="minutes-ahead-within-the-skew"),
    pytest.param("20261204-130000", NOW, True, id="an-hour-ahead"),
    pytest.param("20991231-000002", NOW, True, id="far-future"),
    pytest.param("20000101-000000", NOW, False, id="ancient-names-do-not-lie-about-order"),
    pytest.param("latest", NOW, False, id="no-timestamp"),
    pytest.param("20991231-000002", None, False, id="received-time-unknown"),
])
def test_names_that_lie_about_their_time(name, received, lies):
    seconds = None if received is None else received.timestamp()
    assert name_lies(name, seconds, SKEW) is lies


@pytest.mark.parametrize("name, expected", [
    ("20261204-120000", datetime.datetime(2026, 12, 4, 12, 0, 0)),
    ("home.2-20261204-120000", datetime.datetime(2026, 12, 4, 12, 0, 0)),
    ("20261232-120000", None),
    ("2026120-4120000", None),
    ("", None),
])
def test_the_timestamp_ends_the_name(name, expected):
    assert name_time(name) == expected


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("1h", 3600), ("0", 0), ("90", 90)])
def test_clock_skews(text, seconds):
    assert parse_clock_skew(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "15 minutes"])
def test_bad_clock_skews_are_refused(text):
    with pytest.raises(ConfigError):
        parse_clock_skew(text)


def test_a_snapper_number_after_the_time_is_read_past():
    assert name_time("home-20261204-110000_42") == datetime.datetime(2026, 12, 4, 11, 0, 0)
    assert arrival_refusal(["home-20261204-115959_43"], ["home-20261204-110000_42"], NOW, SKEW) is None
    assert "not newer" in arrival_refusal(["home-20261204-100000_41"], ["home-20261204-110000_42"], NOW, SKEW)
