# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: what a backup server believes of a name that a source chose (rule 12): the check of each
backup that arrives, and whether a backup's name agrees with the time the server received it."""

from __future__ import annotations

import datetime
import re

from .units import format_duration, parse_duration
from .names import parse_time
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Iterable, Optional

#: How far a name may lie ahead of the server's clock: hosts' clocks differ by a few minutes.
DEFAULT_CLOCK_SKEW = 15 * 60  # seconds
_STAMP_LENGTH = len("YYYYMMDD-HHMMSS")
_SNAPPER_NUMBER = re.compile(r"_[0-9]{1,10}\Z")  # after the stamp: snapper's number (names.format_snapper_name)


def parse_clock_skew(text, setting: Optional[str] = None) -> int:
    """Seconds in a --clock-skew value ('15min', '15m', '1h'; '0' allows none); ConfigError else."""
    return 0 if str(text).strip() == "0" else parse_duration(text, setting)


def name_time(name: str) -> Optional[datetime.datetime]:
    """The time in the `YYYYMMDD-HHMMSS` that ends `name` (after any prefix; before any snapper
    number), else None."""
    if len(name) < _STAMP_LENGTH:
        return None
    return parse_time(name_prefix(name), name)


def name_prefix(name: str) -> str:
    return _SNAPPER_NUMBER.sub("", name)[:-_STAMP_LENGTH]


def _shown(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def arrival_refusal(new_names: Iterable[str], earlier_names: Iterable[str], now: datetime.datetime,
                    clock_skew: float = DEFAULT_CLOCK_SKEW) -> Optional[str]:
    """Why the subvolumes that one receive just made (`new_names`) may not stay, or None.

    `earlier_names`: the complete backups that were in the folder before; `now`: the server's
    local time (names carry the sending host's local time). The engine sends one snapshot per
    receive, named by the time it was taken, and only snapshots newer than the newest backup the
    destination holds (planning.plan_destination): anything else is not a backup it made.
    """
    new_names = sorted(new_names)
    if len(new_names) > 1:
        return ("one receive brings one backup, but this stream made %d subvolumes (%s)"
                % (len(new_names), ", ".join(new_names)))
    for name in new_names:
        when = name_time(name)
        if when is None:
            return ("name %s does not end in a timestamp %s, so it is not a backup that "
                    "btrfs-backup sends" % (name, "YYYYMMDD-HHMMSS"))
        if when - now > datetime.timedelta(seconds=clock_skew):
            return ("name %s lies in the future (server time %s, %s of clock skew allowed): "
                    "a backup is named by the time its snapshot was taken, so the sending "
                    "host's clock is wrong (or its time zone differs from the server's)"
                    % (name, _shown(now), format_duration(clock_skew)))
        prefix = name_prefix(name)
        older = [(name_time(n), n) for n in earlier_names
                 if name_prefix(n) == prefix and name_time(n) is not None]
        newest = max(older, default=None)
        if newest is not None and newest[0] >= when:
            return ("name %s is not newer than %s, the newest backup already here: a source only "
                    "sends backups newer than the newest one the server holds" % (name, newest[1]))
    return None


def name_lies(name: str, received: Optional[float], clock_skew: float = DEFAULT_CLOCK_SKEW) -> bool:
    """Whether `name` claims a time later than when the server received the backup (epoch
    seconds) plus the skew: no snapshot is sent before it is taken, so such a name is false."""
    when = name_time(name)
    if when is None or received is None:
        return False
    return when - datetime.datetime.fromtimestamp(received) > datetime.timedelta(seconds=clock_skew)


def received_datetime(received: float) -> datetime.datetime:
    """The server's local time of a received time (as names and retention buckets count)."""
    return datetime.datetime.fromtimestamp(received)
