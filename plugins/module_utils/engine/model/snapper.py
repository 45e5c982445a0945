# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: a job whose snapshots snapper takes (source_snapshots snapper:CONFIG): the setting, snapper's
list of snapshots, and where each one is."""

from __future__ import annotations

import collections
import datetime
import posixpath
import re

from .errors import ConfigError, EndpointError

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional

OWN = "own"
SNAPPER = "snapper:"
#: Where snapper keeps a configuration's snapshots: SUBVOLUME/.snapshots/N/snapshot.
SNAPSHOTS_FOLDER = ".snapshots"
# snapper's configuration names are file names in /etc/snapper/configs.
# Patterns are kept as text: re compiles each at its first use and keeps it, so start-up pays for none.
_CONFIG_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,99}\Z"


def snapper_config(value: Optional[str]) -> Optional[str]:
    """The snapper configuration of a source_snapshots value (None: the job takes its own);
    ConfigError for anything but `own` or `snapper:CONFIG`."""
    text = (value or OWN).strip()
    if text == OWN:
        return None
    config = text[len(SNAPPER):] if text.startswith(SNAPPER) else None
    if not config or not re.match(_CONFIG_RE, config):
        raise ConfigError("source_snapshots %r is not 'own' or 'snapper:CONFIG' (CONFIG: the name of a "
                          "snapper configuration, as 'snapper list-configs' shows it)" % (value,))
    return config


def snapshot_folder_of(source_snapshots: Optional[str], snapshot_folder: Optional[str]) -> Optional[str]:
    """The job's snapshot folder: snapper's `.snapshots` for a snapper job (which gives no other
    folder: ConfigError), else the one given."""
    if snapper_config(source_snapshots) is None:
        return snapshot_folder
    if posixpath.normpath(snapshot_folder or "snapshot") not in ("snapshot", SNAPSHOTS_FOLDER):
        raise ConfigError(f"a job with source_snapshots {source_snapshots} has snapper's snapshots in "
                          f"SOURCE/{SNAPSHOTS_FOLDER}: snapshot_folder {snapshot_folder!r} does not apply")
    return SNAPSHOTS_FOLDER


class SnapperSnapshot(collections.namedtuple("SnapperSnapshot", "number date type")):
    """One of snapper's snapshots: its number, when it was taken (a datetime, as snapper shows it),
    its type (single, pre, post)."""

    __slots__ = ()

    def path(self, source_path: str) -> str:
        return posixpath.join(source_path, SNAPSHOTS_FOLDER, str(self.number), "snapshot")


def list_argv(config: str) -> list:
    """`snapper list` of a configuration as JSON; --no-dbus: it reads the snapshots itself, so a host
    without snapperd (or a timer before D-Bus is up) answers too."""
    return ["snapper", "--no-dbus", "--jsonout", "-c", config, "list", "--disable-used-space"]


def parse_list(text: str, config: str, source_path: str) -> list:
    """snapper's JSON list of `config` -> its snapshots (SnapperSnapshot), oldest first, without
    number 0 (the live subvolume); EndpointError if the configuration is of another subvolume."""
    import json  # only here: every run of the command pays for its imports
    try:
        entries = json.loads(text)[config]
        snapshots = []
        for entry in entries:
            if entry["subvolume"].rstrip("/") != source_path.rstrip("/"):
                raise EndpointError(
                    f"snapper configuration {config} is of {entry['subvolume']}, not of the job's "
                    f"source {source_path}")
            if int(entry["number"]) == 0:
                continue
            when = datetime.datetime.strptime(entry["date"], "%Y-%m-%d %H:%M:%S")
            snapshots.append(SnapperSnapshot(int(entry["number"]), when, entry.get("type") or ""))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise EndpointError(f"cannot read snapper's list of configuration {config}: {err!r}")
    return sorted(snapshots)
