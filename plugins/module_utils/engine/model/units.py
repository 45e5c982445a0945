# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the one grammar of sizes, durations and counts as people write them, and the one way
each size and duration is shown (docs/docsite/rst/cli.rst, "Sizes, durations and counts").

- A size is a number of bytes, or a number (decimals allowed: 1.5G) and K, M, G or T, powers of
  1024 as pv and mbuffer read them; any case, optionally followed by B or iB (20M = 20MB = 20MiB).
- A duration is a number of seconds, or terms of a number and a unit: s, min (or m), h, d, w
  (90min, 36h, 7d 12h, 1.5h). In a duration m has always meant minutes; months and years have
  no fixed length and are refused. Beside retention terms (--min-age), where 12m means twelve
  monthly buckets, a bare m is refused as ambiguous and every term needs a unit.
- A count is a whole number >= 0.
"""

from __future__ import annotations

import re

from .errors import ConfigError
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional

SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# Patterns are kept as text: re compiles each at its first use and keeps it, so start-up pays for none.
_SIZE_RE = r"(?i)^(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?$"
SIZE_EXAMPLES = "20M, 512K or 1.5G (K, M, G, T: powers of 1024)"

DURATION_UNITS = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SECONDS_RE = r"^%s$" % _NUMBER
_TERM_RE = r"^%s([a-z]*)$" % _NUMBER
_NO_FIXED_LENGTH = ("mo", "mon", "month", "months", "y", "yr", "year", "years")
DURATION_EXAMPLES = "90min, 36h, 7d 12h or 2w (units s, min, h, d, w)"


def _subject(value, setting: Optional[str]) -> str:
    return f"{setting} {value!r}" if setting else repr(value)


def parse_size(value, setting: Optional[str] = None) -> int:
    """Bytes in '20M', '512k', '1.5G', '50GiB' or a plain number; ConfigError unless >= 1 byte."""
    match = re.match(_SIZE_RE, str("" if value is None else value).strip())
    size = int(float(match.group(1)) * SIZE_FACTORS[match.group(2).lower()]) if match else 0
    if size < 1:
        raise ConfigError(f"{setting or 'a size'} must be a positive size such as {SIZE_EXAMPLES}, "
                          f"not {value!r}")
    return size


def format_size(size: float) -> str:
    """'512 B', '1.5 KiB', '50.0 GiB': a size a person reads (and parse_size reads back)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024.0
    return f"{size:.1f} TiB"


def parse_duration(value, setting: Optional[str] = None, *, beside_retention: bool = False) -> int:
    """Seconds (> 0) in '90min', '90m', '36h', '7d 12h', '1.5h' or a plain number of seconds.

    `beside_retention`: the value sits beside retention terms (where m means months), so a bare
    m is refused as ambiguous and a plain number (no unit) too. ConfigError names `setting`."""
    text = str("" if value is None else value).strip()
    subject = _subject(value, setting)
    if re.match(_SECONDS_RE, text) and not beside_retention:
        return _positive(float(text), subject)
    terms = text.replace(",", " ").split()
    if not terms:
        raise ConfigError(f"{subject} is not a duration: write {DURATION_EXAMPLES}")
    total = 0.0
    for term in terms:
        match = re.match(_TERM_RE, term)
        unit = match.group(2) if match else None
        if unit == "m" and beside_retention:
            raise ConfigError(f"{subject} is ambiguous: write 'min' for minutes (e.g. 90min); "
                              f"months are not a duration, write days or weeks (e.g. 30d, 26w). "
                              f"Only in retention terms such as '12m' does m mean months")
        if unit in _NO_FIXED_LENGTH:
            raise ConfigError(f"{subject} is not a duration: months and years have no fixed length, "
                              f"write days or weeks (e.g. 30d, 52w)")
        if unit not in DURATION_UNITS:
            raise ConfigError(f"{subject} is not a duration: write {DURATION_EXAMPLES}"
                              + ("" if beside_retention else ", or a number of seconds"))
        total += float(match.group(1)) * DURATION_UNITS[unit]
    return _positive(total, subject)


def _positive(seconds: float, subject: str) -> int:
    if not seconds < float("inf") or int(round(seconds)) <= 0:
        raise ConfigError(f"{subject} is not a duration: it must be longer than 0 seconds")
    return int(round(seconds))


def format_duration(seconds: Optional[float]) -> str:
    """'3d 4h', '5h 2m', '42s' ('-' for None): the two largest units, rounded down, as a person
    reads an age or a time left at a glance (and parse_duration reads back)."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return f"{seconds // size}{unit} {rest}{sub}" if rest else f"{seconds // size}{unit}"
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


def parse_count(value, setting: Optional[str] = None) -> int:
    """A whole number >= 0 from an int or its digits ('3', '+3'); ConfigError names `setting`."""
    subject = _subject(value, setting)
    if isinstance(value, bool):
        raise ConfigError(f"{subject} is not a whole number (0, 1, 2, ...)")
    if isinstance(value, int):
        number = value
    else:
        text = str("" if value is None else value).strip()
        if not re.match(r"^[+-]?\d+$", text):
            raise ConfigError(f"{subject} is not a whole number (0, 1, 2, ...)")
        number = int(text)
    if number < 0:
        raise ConfigError(f"{subject} must not be negative (a whole number >= 0)")
    return number
