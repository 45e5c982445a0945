# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the snapshots waiting for a destination that a run could not list, and the ceiling on them.

Source retention deletes nothing while a destination cannot be listed (its next incremental parent
is unknown, rule 4), so every run adds a snapshot for it; `max_unsent_snapshots` bounds that growth.
"""

from __future__ import annotations

import datetime

from . import names

DEFAULT_MAX_UNSENT_SNAPSHOTS = 100


def waiting_for(snapshot_names, prefix: str, newest_backup: str | None) -> list:
    """The snapshots newer than the destination's newest backup (all of them if it has none known),
    oldest first: what it still has to receive."""
    ordered = sorted((n for n in snapshot_names if names.is_snapshot_name(prefix, n)),
                     key=lambda n: names.sort_key(prefix, n))
    if newest_backup is None or not names.is_snapshot_name(prefix, newest_backup):
        return ordered
    newest = names.sort_key(prefix, newest_backup)
    return [n for n in ordered if names.sort_key(prefix, n) > newest]


def ceiling_reached(waiting: int, ceiling: int) -> bool:
    """Whether a run must not add another snapshot for a destination (0: no ceiling)."""
    return bool(ceiling) and waiting >= ceiling


def since(last_success: float | None) -> str:
    """How long a destination has been out of reach, for people: since its last success."""
    if last_success is None:
        return "that no recorded run has reached"
    when = datetime.datetime.fromtimestamp(last_success).strftime("%Y-%m-%d %H:%M")
    return f"unreachable since {when}"


def ceiling_message(dest_id: str, waiting: int, last_success: float | None, ceiling: int, error) -> str:
    """Why a run takes no snapshot: the destination, how long, the setting, and what to do."""
    return (f"{waiting} snapshots are waiting for {dest_id}, {since(last_success)} ({error}); not "
            f"taking another (max_unsent_snapshots {ceiling}): the destination must come back or be "
            "removed from the job; every snapshot is kept")


def waiting_warning(dest_id: str, waiting: int, last_success: float | None, ceiling: int) -> str:
    """The warning of each run that keeps snapshots for a destination it could not list."""
    limit = (f"; at {ceiling} (max_unsent_snapshots) no new snapshot is taken" if ceiling
             else "; max_unsent_snapshots is 0: they are kept without limit")
    return (f"{waiting} snapshot(s) are waiting for {dest_id}, {since(last_success)}, and kept for "
            f"it{limit}")
