# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Snapshot names: `<prefix>%Y%m%d-%H%M%S`, the btrfs-backup 0.3 scheme (`_N` after it: snapper's
snapshot number N), and the safe-name rules."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import datetime
import re

from .errors import ConfigError

if TYPE_CHECKING:
    from typing import Iterable

TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
_TIMESTAMP_RE = re.compile(r"^([0-9]{8}-[0-9]{6})(?:_([0-9]{1,10}))?\Z")
# Prefixes end up in paths and remote command lines: keep them to a fixed alphabet.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@-]*\Z")
# Any subvolume name the engine creates or deletes must match this.
_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@:-]*\Z")


def validate_prefix(prefix: str) -> str:
    """Return the prefix if it is safe to use in a subvolume name, else raise ConfigError."""
    if prefix == "":
        return prefix
    if len(prefix) > 200 or not _PREFIX_RE.match(prefix):
        raise ConfigError(
            "snapshot prefix %r is not allowed: use letters, digits and . _ + @ - "
            "(not starting with . or -)" % (prefix,)
        )
    return prefix


def validate_name(name: str) -> str:
    """Return a subvolume name if it is safe (one path component from the fixed alphabet)."""
    if not isinstance(name, str) or len(name) > 255 or not _SAFE_NAME_RE.match(name):
        raise ConfigError(
            "snapshot name %r is not allowed: use letters, digits and . _ + @ : - "
            "(one path component, not starting with . or -)" % (name,)
        )
    return name


def format_name(prefix: str, when: datetime.datetime) -> str:
    """The snapshot name for a prefix and a datetime."""
    return prefix + when.strftime(TIMESTAMP_FORMAT)


def format_snapper_name(prefix: str, when: datetime.datetime, number: int) -> str:
    """The name of snapper's snapshot `number`, taken at `when`: `<prefix><timestamp>_<number>`
    (snapper takes several snapshots in one second: its number keeps their names apart)."""
    return "%s_%d" % (format_name(prefix, when), number)


_PARSED: dict = {}  # (prefix, name) -> _parse's answer: a run asks of each name several times


def _parse(prefix: str, name: str) -> tuple[datetime.datetime, int | None] | None:
    """(time, snapper number or None) of `<prefix><timestamp>[_<snapper number>]`, else None: one
    match for every question a run asks of its hundreds of names."""
    key = (prefix, name)
    try:
        return _PARSED[key]
    except KeyError:
        parsed = _PARSED[key] = _parse_anew(prefix, name)
        return parsed


def _parse_anew(prefix: str, name: str) -> tuple[datetime.datetime, int | None] | None:
    if not name.startswith(prefix):
        return None
    match = _TIMESTAMP_RE.match(name[len(prefix):])
    if not match:
        return None
    stamp = match.group(1)
    try:
        # Slicing instead of strptime: runs see hundreds of names, strptime is slow.
        when = datetime.datetime(int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]),
                                 int(stamp[9:11]), int(stamp[11:13]), int(stamp[13:15]))
    except ValueError:
        return None
    return when, int(match.group(2)) if match.group(2) else None


def snapper_number(prefix: str, name: str) -> int | None:
    """The snapper number that ends a snapshot name of `prefix`, else None."""
    parsed = _parse(prefix, name)
    return parsed[1] if parsed else None


def parse_time(prefix: str, name: str) -> datetime.datetime | None:
    """The datetime encoded in `name` if it is `<prefix><timestamp>[_<snapper number>]`, else None."""
    parsed = _parse(prefix, name)
    return parsed[0] if parsed else None


def is_snapshot_name(prefix: str, name: str) -> bool:
    """True when `name` follows the naming scheme for `prefix`."""
    return parse_time(prefix, name) is not None


def sort_key(prefix: str, name: str) -> tuple[datetime.datetime, int, str]:
    """Order snapshot names by their timestamp (names from one prefix sort by time), then by
    snapper's number (several in one second)."""
    when, number = _parse(prefix, name) or (None, None)
    return (when or datetime.datetime.min, -1 if number is None else number, name)


def next_snapshot_time(prefix: str, now: datetime.datetime, taken: Iterable[str],
                       newest: datetime.datetime | None = None, max_skew_seconds: float = 2) -> datetime.datetime:
    """The time to name a new snapshot after: `now` (whole seconds), or the first later second
    whose name is free and sorts after `newest`. A newest snapshot further in the future than
    `max_skew_seconds` means the clock went back: a ValueError, since an out-of-order snapshot
    would never be sent."""
    when = now.replace(microsecond=0)
    if newest is not None and newest > when + datetime.timedelta(seconds=max_skew_seconds):
        raise ValueError("the newest snapshot is from %s, later than the clock (%s): "
                         "check the system time" % (newest, when))
    while format_name(prefix, when) in taken or (newest is not None and when <= newest):
        when += datetime.timedelta(seconds=1)
    return when
