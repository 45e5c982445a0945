# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""`btrfs-backup prune`: a backup server's own retention, by when the server received each
backup, never by the name a source gave it (rule 12)."""

from __future__ import annotations

import datetime
import time

from ..model import names
from ..host.endpoints.local import LocalEndpoint
from ..host.endpoints.location import parse_location
from ..model.errors import ConfigError
from .executor import Executor
from .retention_phase import retain
from ..host.listing import list_folder_here
from ..host.staging import remove_stale_here
from ..model.name_trust import DEFAULT_CLOCK_SKEW, name_lies, name_time, received_datetime
from ..model.retention import Policy, parse_buckets, parse_min_age, plan_folder
from ..host.runner import CommandRunner
from ..model.log import LOG


def local_folder(path: str) -> str:
    """The folder prune works on: a path on this machine, where the kernel knows when each
    backup arrived; a remote folder is refused (its received times are known only on its server)."""
    endpoint = parse_location(path, allow_shell=False)
    if not endpoint.on_this_machine:
        raise ConfigError(f"prune works on a folder of this machine, not {path}: it decides by when "
                          "this server received each backup, which only the server knows; run "
                          "'btrfs-backup prune' on the backup server")
    return endpoint.path


def dated_backups(backups: dict, clock_skew: float) -> tuple:
    """Pure: ((name, received datetime) pairs, names that lie) of complete backups (name ->
    Subvolume with received_time); a name that lies claims a time after the server received it."""
    dated, lying = [], []
    for name, backup in sorted(backups.items()):
        if backup.received_time is None:  # the kernel always knows; a stand-in in tests may not
            dated.append((name, name_time(name)))
            continue
        dated.append((name, received_datetime(backup.received_time)))
        if name_lies(name, backup.received_time, clock_skew):
            lying.append(name)
    return dated, lying


def plan_prune(backups: dict, policy, *, now, min_age=None, clock_skew=DEFAULT_CLOCK_SKEW) -> tuple:
    """Pure: (retention Decisions, names that lie) for a folder's complete backups."""
    dated, lying = dated_backups(backups, clock_skew)
    return plan_folder(dated, policy, {name: [] for name in backups}, now, min_age, demoted=lying), lying


def prune_backups(path: str, prefix: str = "", count: int = 0, preserve: str = "", min_age: str = "",
                  clock_skew: float = DEFAULT_CLOCK_SKEW, check_mode: bool = False, runner=None,
                  now: datetime.datetime | None = None) -> dict:
    """Apply the count and time-bucket policies to the complete backups of the naming scheme in
    one local folder, by received time: the newest received always stays, nothing received less
    than `min_age` ago is deleted, and a backup whose name lies ranks below every other. Stale
    stagings of resumable transfers there go too (`stale_staging` in the result, with reasons)."""
    names.validate_prefix(prefix)
    policy = Policy(count, parse_buckets(preserve))
    youngest_kept = parse_min_age(min_age)
    folder = local_folder(path)
    now = now or datetime.datetime.now()
    backups = {n: s for n, s in list_folder_here(folder).children.items()
               if s.complete and names.is_snapshot_name(prefix, n)}
    decisions, lying = plan_prune(backups, policy, now=now, min_age=youngest_kept, clock_skew=clock_skew)
    untrusted = [{"name": n, "received": backups[n].received_time,
                  "reason": "its name is later than when this server received it: it ranks below "
                            "every other backup"} for n in lying]
    for item in untrusted:
        LOG.warning("%s: %s was received at %s but its name claims a later time: it ranks below every "
                    "other backup", folder, item["name"],
                    received_datetime(item["received"]).strftime("%Y-%m-%d %H:%M:%S"))
    done = retain(Executor(runner or CommandRunner(), check_mode), LocalEndpoint(folder), backups, decisions,
                  where=path, policy=policy)
    done.update(untrusted_names=untrusted, received={n: backups[n].received_time for n in sorted(backups)})
    done["stale_staging"] = _prune_staging(folder, backups, check_mode)
    done["changed"] = done["changed"] or bool(done["stale_staging"])
    return done


def _prune_staging(folder: str, backups: dict, check_mode: bool) -> list[dict]:
    """Remove the folder's stale stagings (by when this server received its newest backup and
    when each staging's last chunk landed), saying why for each."""
    received = [b.received_time for b in backups.values() if b.received_time is not None]
    newest_age = time.time() - max(received) if received else None
    stale = remove_stale_here(folder, newest_age, check_mode)
    for item in stale:
        LOG.info("%s: %s stale staging %s: %s", folder, "would remove" if check_mode else "removed",
                 item["key"], item["reason"])
    return stale
