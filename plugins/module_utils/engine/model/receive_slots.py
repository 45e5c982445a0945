# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: a backup server's receive slots: their files, what serve tells a waiting source, and what the source reads back.

With `serve --receive-slots N`, at most N `btrfs receive`s run at once on the server, whichever
hosts send them; a receive beyond them waits for a slot (a flock on one of N slot files, which
the kernel releases when its holder dies) up to `--slot-wait`. serve says on stderr that it
waits and, once it has a slot, how long it waited: the source logs both and records the wait.
"""

from __future__ import annotations

import re

from .units import format_duration

#: serve's lines on stderr that a source reads back (the prefix of every line serve writes).
_SAID_BY = "btrfs-backup serve: "
WAITING = "waiting for a receive slot"
_WAITED_RE = re.compile(r"^btrfs-backup serve: waited (\d+(?:\.\d+)?) s for a receive slot\b", re.M)
_WAITING_RE = re.compile(r"^btrfs-backup serve: (waiting for a receive slot \(\d+ busy\))", re.M)
#: How a waiting receive looks for a free slot again: first soon, then every LONGEST_RETRY seconds
#: (a slot that frees stays idle until a waiter looks: with 1 s, 16 hosts through 4 slots took 10 %
#: longer than without slots; a look costs a few flock calls).
FIRST_RETRY = 0.1
LONGEST_RETRY = 0.25


def slot_files(count: int) -> list[str]:
    """The names of the slot files of `count` receive slots, in the order they are tried."""
    return ["receive-slot-%d" % number for number in range(count)]


def waiting_line(busy: int) -> str:
    """serve's line when every slot is taken (said once per receive)."""
    return "%s%s (%d busy)" % (_SAID_BY, WAITING, busy)


def waited_line(seconds: float) -> str:
    """serve's line once a receive that had to wait has its slot."""
    return "%swaited %.1f s for a receive slot" % (_SAID_BY, seconds)


def timeout_line(busy: int, wait: float) -> str:
    """serve's error when no slot came free within `wait` seconds."""
    return ("%sno receive slot came free in %s (%d busy: the server is receiving from other hosts); "
            "nothing was received, the next run sends it (or raise the server's receive slots or slot wait)"
            % (_SAID_BY, format_duration(wait), busy))


def gone_line() -> str:
    """serve's line when the source hung up while its receive waited (nobody reads it but the log)."""
    return "%sthe source hung up while its receive waited for a slot; nothing was received" % _SAID_BY


def retry_delay(tries: int) -> float:
    """Seconds before the `tries`-th look for a free slot (1, 2, ...): doubling up to LONGEST_RETRY."""
    return min(LONGEST_RETRY, FIRST_RETRY * (2 ** min(max(tries - 1, 0), 16)))  # an hour's tries never overflow


def slot_wait(stderr: str) -> tuple[str | None, float | None]:
    """(serve's waiting line as the source logs it, seconds waited) found in a receive's stderr;
    (None, None) when the receive did not wait, (line, None) when it waited without getting a slot."""
    waiting = _WAITING_RE.search(stderr or "")
    if waiting is None:
        return None, None
    waited = _WAITED_RE.search(stderr)
    return waiting.group(1), float(waited.group(1)) if waited else None
