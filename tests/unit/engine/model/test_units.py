"""engine.model.units: the one grammar of sizes, durations and counts, and the one way each size
and duration is shown."""

import pytest

from engine.model.errors import ConfigError
from engine.model.units import format_duration, format_size, parse_count, parse_duration, parse_size

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40
HOUR, DAY = 3600, 86400

# -- sizes: what --limit-rate and --buffer took, and what --quota took, all still work ----------

SIZES = [
    ("4096", 4096), ("1048576", M), ("20M", 20 * M), ("512k", 512 * K), ("64K", 64 * K),
    ("50G", 50 * G), ("50g", 50 * G), ("2T", 2 * T), (" 1G ", G), (" 2m ", 2 * M),
    ("20MiB", 20 * M), ("20MB", 20 * M), ("50GiB", 50 * G), ("500B", 500), ("1 KiB", K),
    ("50 G", 50 * G),                                            # refused by --quota before
    ("1.5G", int(1.5 * G)), ("0.5M", 512 * K), (".5k", 512),  # decimals: --quota refused them before
    (8 * M, 8 * M),                                              # a number, as YAML gives it
]


@pytest.mark.parametrize("value, size", SIZES)
def test_sizes(value, size):
    assert parse_size(value, "buffer") == size


@pytest.mark.parametrize("value", [
    "", None, "M", "G", "fast", "ten", "-5M", "-1G", "0", "0k", "0G", "0.0001k", "nan", "inf", "1e400",
    "5X", "50P", "20 MB/s", "1,5G", "1.5.2G",
])
def test_bad_sizes_name_the_setting_and_show_how_to_write_one(value):
    with pytest.raises(ConfigError) as err:
        parse_size(value, "--quota")
    assert str(err.value) == ("--quota must be a positive size such as 20M, 512K or 1.5G "
                              "(K, M, G, T: powers of 1024), not %r" % (value,))


@pytest.mark.parametrize("size, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (50 * M, "50.0 MiB"),
    (50 * G, "50.0 GiB"), (3 * T, "3.0 TiB"), (2048 * T, "2048.0 TiB"), (5.4 * M, "5.4 MiB"),
])
def test_sizes_read_as_people_write_them(size, text):
    assert format_size(size) == text


@pytest.mark.parametrize("size", [1, 512, K, 1536, 50 * M, 50 * G, 3 * T])
def test_a_shown_size_reads_back(size):
    assert parse_size(format_size(size)) == size


# -- durations ----------------------------------------------------------------------------------

DURATIONS = [
    ("600", 600), ("45s", 45), ("90min", 5400), ("15min", 900), ("36h", 36 * HOUR), ("7d", 7 * DAY),
    ("2w", 14 * DAY), ("1d 12h", 36 * HOUR), ("7d 12h", 7 * DAY + 12 * HOUR), ("7d,12h", 7 * DAY + 12 * HOUR),
    ("1.5h", 5400), ("0.5d", 12 * HOUR), (" 36h ", 36 * HOUR), (3600, HOUR),
    # m has always meant minutes in a duration (--max-age 90m, --clock-skew 15m): it still does.
    ("90m", 5400), ("15m", 900), ("1h 30m", 5400),
]


@pytest.mark.parametrize("value, seconds", DURATIONS)
def test_durations(value, seconds):
    assert parse_duration(value, "--max-age") == seconds


@pytest.mark.parametrize("value, message", [
    ("", "--max-age '' is not a duration: write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w)"),
    ("soon", "--max-age 'soon' is not a duration: write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w), "
             "or a number of seconds"),
    ("36 hours", "--max-age '36 hours' is not a duration: write"),
    ("h", "--max-age 'h' is not a duration: write"),
    ("3x", "--max-age '3x' is not a duration: write"),
    ("-1h", "--max-age '-1h' is not a duration: write"),
    ("36H", "--max-age '36H' is not a duration: write"),
    ("1d2h", "--max-age '1d2h' is not a duration: write"),
    ("0", "--max-age '0' is not a duration: it must be longer than 0 seconds"),
    ("0h", "--max-age '0h' is not a duration: it must be longer than 0 seconds"),
    ("0.2s", "--max-age '0.2s' is not a duration: it must be longer than 0 seconds"),
    ("3mo", "--max-age '3mo' is not a duration: months and years have no fixed length, write days or weeks"),
    ("1y", "--max-age '1y' is not a duration: months and years have no fixed length"),
    ("2 months", "--max-age '2 months' is not a duration: write"),  # '2' has no unit
])
def test_bad_durations_say_how_to_write_one(value, message):
    with pytest.raises(ConfigError) as err:
        parse_duration(value, "--max-age")
    assert str(err.value).startswith(message), str(err.value)


def test_without_a_setting_the_value_starts_the_message():
    with pytest.raises(ConfigError, match=r"^'soon' is not a duration: write"):
        parse_duration("soon")


# Beside retention terms (--min-age next to --preserve-backups '12m', twelve months), a bare m
# could mean either, and a number without a unit is no age anyone means.
@pytest.mark.parametrize("value, seconds", [("7d", 7 * DAY), ("90min", 5400), ("36h", 36 * HOUR), ("1.5d", 36 * HOUR)])
def test_durations_beside_retention_terms(value, seconds):
    assert parse_duration(value, "--min-age", beside_retention=True) == seconds


@pytest.mark.parametrize("value, message", [
    ("6m", "--min-age '6m' is ambiguous: write 'min' for minutes (e.g. 90min); months are not a duration, "
           "write days or weeks (e.g. 30d, 26w). Only in retention terms such as '12m' does m mean months"),
    ("1d 6m", "--min-age '1d 6m' is ambiguous: write 'min' for minutes"),
    ("6mo", "--min-age '6mo' is not a duration: months and years have no fixed length"),
    ("7", "--min-age '7' is not a duration: write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w)"),
])
def test_a_bare_m_beside_retention_terms_is_refused(value, message):
    with pytest.raises(ConfigError) as err:
        parse_duration(value, "--min-age", beside_retention=True)
    assert str(err.value).startswith(message), str(err.value)
    assert "number of seconds" not in str(err.value)


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (-3, "0s"), (0, "0s"), (5, "5s"), (59.9, "59s"), (125, "2m"), (3 * HOUR, "3h"),
    (3 * HOUR + 120, "3h 2m"), (2 * DAY + 4 * HOUR, "2d 4h"), (2 * DAY + 59 * 60, "2d"),
])
def test_durations_read_at_a_glance(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [5, 60, 120, 3 * HOUR, 3 * HOUR + 120, 2 * DAY + 4 * HOUR, 14 * DAY])
def test_a_shown_duration_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


# -- counts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, count", [("0", 0), ("3", 3), (" 3 ", 3), ("+3", 3), (7, 7), (0, 0)])
def test_counts(value, count):
    assert parse_count(value, "num_backups") == count


@pytest.mark.parametrize("value, message", [
    ("abc", "num_backups 'abc' is not a whole number (0, 1, 2, ...)"),
    ("1.5", "num_backups '1.5' is not a whole number"),
    (2.0, "num_backups 2.0 is not a whole number"),
    ("", "num_backups '' is not a whole number"),
    (None, "num_backups None is not a whole number"),
    (True, "num_backups True is not a whole number"),
    ("-1", "num_backups '-1' must not be negative (a whole number >= 0)"),
    (-2, "num_backups -2 must not be negative"),
])
def test_bad_counts(value, message):
    with pytest.raises(ConfigError) as err:
        parse_count(value, "num_backups")
    assert str(err.value).startswith(message), str(err.value)
