# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure retention: which snapshots or backups may be deleted, and why each survivor is kept."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import collections
import datetime
import re

from .units import format_duration, parse_duration
from .errors import ConfigError

if TYPE_CHECKING:
    from typing import Iterable, Mapping

Decision = collections.namedtuple("Decision", "name keep reasons")

_UNITS = collections.OrderedDict([
    ("h", "hourly"), ("d", "daily"), ("w", "weekly"), ("m", "monthly"), ("y", "yearly"),
])
# Patterns are kept as text: re compiles each at its first use and keeps it, so start-up pays for none.
_TERM_RE = r"^(\d+|\*)([hdwmy])$"


class Policy:
    """Keep the newest `count` (0: no count limit) plus time buckets (btrbk-style, e.g. '24h 7d 4w')."""

    def __init__(self, count=0, buckets=None):
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ConfigError("retention count %r must be a whole number >= 0 (0 keeps all)" % (count,))
        self.count = count
        self.buckets = dict(buckets or {})  # unit -> number of periods, None for all
        for unit, periods in self.buckets.items():
            if unit not in _UNITS:
                raise ConfigError("unknown retention unit %r (use h, d, w, m, y)" % unit)
            if periods is not None and (not isinstance(periods, int) or isinstance(periods, bool)
                                        or periods < 0):
                raise ConfigError("retention %s count %r must be a whole number >= 0" % (
                    _UNITS[unit], periods))

    @property
    def keeps_everything(self) -> bool:
        return self.count == 0 and not self.buckets

    def describe(self) -> str:
        parts = []
        if self.count:
            parts.append("newest %d" % self.count)
        for unit in _UNITS:
            if unit in self.buckets:
                n = self.buckets[unit]
                parts.append("%s %s" % (_UNITS[unit], "all" if n is None else n))
        return ", ".join(parts) or "keep all"


def parse_buckets(text: str) -> dict:
    """Parse '24h 7d 4w 12m *y' into {unit: periods}; '*' keeps every period of that unit."""
    buckets = {}
    for term in (text or "").replace(",", " ").split():
        match = re.match(_TERM_RE, term)
        if not match:
            raise ConfigError(
                "retention term %r is not valid: use <number><unit> or *<unit> with unit "
                "h (hourly), d (daily), w (weekly), m (monthly), y (yearly), e.g. '24h 7d 4w'" % term)
        number, unit = match.groups()
        if unit in buckets:
            raise ConfigError("retention unit %r given twice in %r" % (unit, text))
        buckets[unit] = None if number == "*" else int(number)
    return buckets


def period_of(when: datetime.datetime, unit: str) -> tuple:
    """The period (hour, day, ISO week, month, year) a time falls in, as a sortable tuple."""
    if unit == "h":
        return (when.year, when.month, when.day, when.hour)
    if unit == "d":
        return (when.year, when.month, when.day)
    if unit == "w":
        iso = when.isocalendar()
        return (iso[0], iso[1])
    if unit == "m":
        return (when.year, when.month)
    return (when.year,)


def _period_start(now, unit, back):
    """The period `back` periods before the one `now` is in."""
    if unit == "h":
        return period_of(now - datetime.timedelta(hours=back), unit)
    if unit == "d":
        return period_of(now - datetime.timedelta(days=back), unit)
    if unit == "w":
        return period_of(now - datetime.timedelta(weeks=back), unit)
    if unit == "m":
        month = now.year * 12 + (now.month - 1) - back
        return (month // 12, month % 12 + 1)
    return (now.year - back,)


def parse_min_age(text: str | None, setting: str = "minimum age") -> datetime.timedelta | None:
    """Parse a minimum age such as '36h', '7d' or '2w' into a timedelta ('' or '0' for none).
    It sits beside retention terms, where m means months: a bare m is refused as ambiguous."""
    text = (text or "").strip()
    if text in ("", "0"):
        return None
    return datetime.timedelta(seconds=parse_duration(text, setting, beside_retention=True))


def protect_young(items: Iterable[tuple[str, datetime.datetime]], min_age: datetime.timedelta | None,
                  now: datetime.datetime) -> dict[str, str]:
    """Pure: name -> reason for each (name, datetime) item younger than `min_age` (a window in
    which nothing is deleted, whatever the policy says)."""
    if not min_age:
        return {}
    return {name: "younger than the minimum age (%s)" % format_duration(min_age.total_seconds())
            for name, when in items if now - when < min_age}


def plan_retention(items: Iterable[tuple[str, datetime.datetime]], policy: Policy,
                   protected: Mapping[str, list[str]] | None = None, now: datetime.datetime | None = None,
                   demoted: Iterable[str] = ()) -> list[Decision]:
    """Decide for each item whether it is kept.

    items:     (name, datetime) pairs, any order.
    protected: name -> list of reasons that forbid deletion (locks, chain parents).
    now:       reference time for the time buckets.
    demoted:   names whose time is not to be believed (a server's backup whose name lies): they
               rank below every other item, take a newest-N place only when too few others are
               left, and never a time bucket (rule 12).
    Returns Decisions oldest first. The newest item is always kept.
    """
    protected = protected or {}
    demoted = set(demoted)
    ordered = sorted(items, key=lambda item: (item[0] not in demoted, item[1], item[0]))
    reasons = collections.OrderedDict((name, list(protected.get(name, ()))) for name, _when in ordered)
    if not ordered:
        return []
    if policy.keeps_everything:
        for name in reasons:
            reasons[name].append("retention keeps everything (no policy set)")
    if policy.count:
        for name, _when in ordered[-policy.count:]:
            reasons[name].append("one of the newest %d" % policy.count)
    now = now or datetime.datetime.now()
    for unit, periods in policy.buckets.items():
        oldest_period = None if periods is None else _period_start(now, unit, periods - 1)
        first_in_period = {}
        for name, when in ordered:
            if name not in demoted:
                first_in_period.setdefault(period_of(when, unit), name)
        for period, name in first_in_period.items():
            if periods is None or (periods > 0 and period >= oldest_period):
                reasons[name].append("first of its %s period %s" % (_UNITS[unit], _format_period(period, unit)))
    newest = ordered[-1][0]
    if not reasons[newest]:
        reasons[newest].append("newest")
    return [Decision(name, bool(why), why) for name, why in reasons.items()]


def _format_period(period, unit):
    if unit == "w":
        return "%04d-W%02d" % period
    text = "-".join("%02d" % p for p in period)
    return text + ":00" if unit == "h" else text


def plan_folder(dated, policy, protected, now, min_age=None, demoted=()) -> list:
    """Pure: the Decisions for one folder's items, dated by the caller ((name, datetime) pairs:
    by name, or by when a server received them): `protected` (name -> reasons) stay, so does
    what is younger than `min_age`, and `demoted` names rank below every other."""
    protected = {name: list(reasons) for name, reasons in protected.items()}
    for name, reason in protect_young(dated, min_age, now).items():
        protected[name].append(reason)
    return plan_retention(dated, policy, protected, now, demoted=demoted)
