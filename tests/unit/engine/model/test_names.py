"""engine.model.names: snapshot prefixes, `<prefix>%Y%m%d-%H%M%S` names and their ordering."""

import datetime

import pytest

from engine.model import names
from engine.model.errors import ConfigError


@pytest.mark.parametrize("prefix", [
    pytest.param("", id="empty-default"),
    pytest.param("home", id="word"),
    pytest.param("root-", id="trailing-dash"),
    pytest.param("web1.data_", id="dot-digit-underscore"),
    pytest.param("host@web+1", id="at-and-plus"),
])
def test_validate_prefix_accepts_safe_prefixes(prefix):
    assert names.validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", [
    pytest.param("../x", id="dot-dot-escape"),
    pytest.param("a/b", id="slash"),
    pytest.param("-x", id="leading-dash-looks-like-option"),
    pytest.param(".x", id="leading-dot-hidden"),
    pytest.param("a b", id="space"),
    pytest.param("a;rm", id="semicolon"),
    pytest.param("$(x)", id="command-substitution"),
    pytest.param("a\nb", id="newline-inside"),
    pytest.param("\n", id="only-newline"),
    pytest.param("a\tb", id="tab"),
    pytest.param("x" * 201, id="too-long"),
    pytest.param("home\n", id="trailing-newline"),
])
def test_validate_prefix_rejects_unsafe_prefixes(prefix):
    with pytest.raises(ConfigError) as err:
        names.validate_prefix(prefix)
    # The message quotes the offending prefix so the user sees what was wrong.
    assert repr(prefix) in str(err.value)
    assert "prefix" in str(err.value)


@pytest.mark.parametrize("name", [
    pytest.param("20261124-181630", id="plain-snapshot"),
    pytest.param("home-20261124-181630", id="prefixed"),
    pytest.param("host:web@1", id="colon-and-at"),
])
def test_validate_name_accepts_one_safe_component(name):
    assert names.validate_name(name) == name


@pytest.mark.parametrize("name", [
    pytest.param("", id="empty"),
    pytest.param("a/b", id="two-components"),
    pytest.param("..", id="dot-dot"),
    pytest.param("-rf", id="option-like"),
    pytest.param("a b", id="space"),
    pytest.param(None, id="not-a-string"),
    pytest.param("x" * 256, id="longer-than-btrfs-allows"),
    pytest.param("x\n", id="trailing-newline"),
])
def test_validate_name_rejects_unsafe_names(name):
    with pytest.raises(ConfigError):
        names.validate_name(name)


@pytest.mark.parametrize("prefix, when, expected", [
    pytest.param("", datetime.datetime(2026, 11, 24, 18, 16, 30), "20261124-181630", id="no-prefix"),
    pytest.param("home-", datetime.datetime(2026, 1, 2, 3, 4, 5), "home-20260102-030405",
                 id="zero-padded"),
    pytest.param("root.", datetime.datetime(1999, 12, 31, 23, 59, 59), "root.19991231-235959",
                 id="end-of-year"),
])
def test_format_name_and_parse_time_round_trip(prefix, when, expected):
    name = names.format_name(prefix, when)
    assert name == expected
    assert names.parse_time(prefix, name) == when
    assert names.is_snapshot_name(prefix, name)


def test_format_name_drops_microseconds():
    # One-second resolution: the parsed time is the formatted time without microseconds.
    when = datetime.datetime(2026, 11, 24, 18, 16, 30, 999999)
    assert names.parse_time("", names.format_name("", when)) == when.replace(microsecond=0)


@pytest.mark.parametrize("prefix, name", [
    pytest.param("", "snapshot", id="the-snapshot-folder-itself"),
    pytest.param("", "20261124-1816", id="seconds-missing"),
    pytest.param("", "2026112a-181630", id="letter-in-date"),
    pytest.param("home-", "web-20261124-181630", id="other-prefix"),
    pytest.param("home-", "20261124-181630", id="prefix-missing"),
    pytest.param("", "home-20261124-181630", id="unexpected-prefix"),
    pytest.param("", "20261324-000000", id="month-13"),
    pytest.param("", "20260230-000000", id="february-30"),
    pytest.param("", "20261124-246000", id="hour-24"),
    pytest.param("", "20261124-181630.partial", id="suffix"),
    pytest.param("", "20261124-181630 ", id="trailing-space"),
    pytest.param("", "20261124-181630\n", id="trailing-newline"),
])
def test_names_that_are_not_snapshots(prefix, name):
    assert names.parse_time(prefix, name) is None
    assert not names.is_snapshot_name(prefix, name)


def test_sort_key_orders_by_time_and_puts_foreign_names_first():
    given = ["home-20261124-181630", "home-20251231-235959", "home-notes",
             "home-20260101-000000", "home-20261124-181629"]
    assert sorted(given, key=lambda n: names.sort_key("home-", n)) == [
        "home-notes",  # not a snapshot name: sorts before every snapshot
        "home-20251231-235959",
        "home-20260101-000000",
        "home-20261124-181629",
        "home-20261124-181630",
    ]


@pytest.mark.parametrize("prefix, name, when, number", [
    ("", "20261205-052104_42", datetime.datetime(2026, 12, 5, 5, 21, 4), 42),
    ("home-", "home-20261205-052104_1", datetime.datetime(2026, 12, 5, 5, 21, 4), 1),
    ("", "20261205-052104", datetime.datetime(2026, 12, 5, 5, 21, 4), None),
    ("", "20261205-052104_", None, None),
    ("", "20261205-052104_x", None, None),
    ("", "20261205-052104-42", None, None),
])
def test_a_snapper_number_may_follow_the_time(prefix, name, when, number):
    assert names.parse_time(prefix, name) == when
    assert names.snapper_number(prefix, name) == number
    if number is not None:
        assert names.format_snapper_name(prefix, when, number) == name
        names.validate_name(name)


def test_snappers_snapshots_of_one_second_sort_by_number():
    shuffled = ["20261205-052104_10", "20261205-052105_3", "20261205-052104_9", "20261205-052104"]
    assert sorted(shuffled, key=lambda n: names.sort_key("", n)) == [
        "20261205-052104", "20261205-052104_9", "20261205-052104_10", "20261205-052105_3"]
