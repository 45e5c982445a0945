# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the snapshots waiting for a destination that a run could not list, and the ceiling on them.

Source retention deletes nothing while a destination cannot be listed (its next incremental parent
is unknown, rule 4), so every run adds a snapshot for it; `max_unsent_snapshots` bounds that growth.
At the ceiling, a destination whose newest backup the last-run state knows lets source retention
release what waits only for it (that backup's snapshot stays: it continues from there when it is
back), so the destinations that answer keep getting backups (rule 9). When that is not known, or no
destination answers, the run takes no snapshot at all.
"""

from __future__ import annotations

import datetime

from . import names

DEFAULT_MAX_UNSENT_SNAPSHOTS = 100

# What a run does for the destinations out of reach at the ceiling (recorded with each of them).
RELEASED = "released"  # the snapshot is taken; source retention may delete what waits only for them
STOPPED = "stopped"  # no snapshot is taken; every snapshot is kept


def waiting_for(snapshot_names, prefix: str, newest_backup: str | None) -> list:
    """The snapshots newer than the destination's newest backup (all of them if it has none known),
    oldest first: what it still has to receive."""
    # Each name parsed once: every run calls this with all the job's snapshots.
    keyed = sorted(key for key in (names.sort_key(prefix, n) for n in snapshot_names) if key[0] != datetime.datetime.min)
    newest = names.sort_key(prefix, newest_backup) if newest_backup is not None else None
    if newest is None or newest[0] == datetime.datetime.min:
        return [key[-1] for key in keyed]
    return [key[-1] for key in keyed if key > newest]


def ceiling_reached(waiting: int, ceiling: int) -> bool:
    """Whether a run must not add another snapshot for a destination (0: no ceiling)."""
    return bool(ceiling) and waiting >= ceiling


def continues_from(snapshot_names, newest_backup: str | None) -> str | None:
    """The snapshot a destination out of reach continues from when it is back: its newest backup as
    the last-run state knows it, while the source still has that snapshot (None: not known)."""
    return newest_backup if newest_backup is not None and newest_backup in set(snapshot_names) else None


def at_ceiling(parents: dict, another_answers: bool) -> str:
    """What a run does when destinations out of reach have reached the ceiling (`parents`: each
    one's id -> the snapshot it continues from, None when not known): RELEASED only when every
    one's parent is known and another destination answers, else STOPPED (nothing else bounds
    the growth safely then)."""
    if another_answers and all(parent is not None for parent in parents.values()):
        return RELEASED
    return STOPPED


def since(last_success: float | None) -> str:
    """How long a destination has been out of reach, for people: since its last success."""
    if last_success is None:
        return "that no recorded run has reached"
    when = datetime.datetime.fromtimestamp(last_success).strftime("%Y-%m-%d %H:%M")
    return f"unreachable since {when}"


def ceiling_message(dest_id: str, waiting: int, last_success: float | None, ceiling: int, error,
                    parent_known: bool = False) -> str:
    """Why a run takes no snapshot: the destination, how long, the setting, why nothing may be
    released for it, and what to do."""
    why = ("no other destination can take a snapshot now" if parent_known
           else "the newest backup it holds is not known, so none of them may be deleted")
    return (f"{waiting} snapshots are waiting for {dest_id}, {since(last_success)} ({error}); not "
            f"taking another (max_unsent_snapshots {ceiling}): {why}; the destination must come back "
            "or be removed from the job; every snapshot is kept")


def release_warning(dest_id: str, waiting: int, last_success: float | None, ceiling: int, parent: str,
                    error) -> str:
    """Why source retention may delete snapshots that a destination out of reach has not received."""
    return (f"{waiting} snapshots are waiting for {dest_id}, {since(last_success)} ({error}); at "
            f"max_unsent_snapshots {ceiling} they are no longer all kept for it: source retention keeps "
            f"{parent}, the newest it holds, and when it is back it continues incrementally from there "
            "with the newest snapshots and misses those deleted in between")


def waiting_warning(dest_id: str, waiting: int, last_success: float | None, ceiling: int) -> str:
    """The warning of each run that keeps snapshots for a destination it could not list."""
    limit = (f"; at {ceiling} (max_unsent_snapshots) source retention may delete those kept only for it "
             "but the newest it holds, or, if that is not known or no destination answers, no new "
             "snapshot is taken" if ceiling
             else "; max_unsent_snapshots is 0: they are kept without limit")
    return (f"{waiting} snapshot(s) are waiting for {dest_id}, {since(last_success)}, and kept for "
            f"it{limit}")
