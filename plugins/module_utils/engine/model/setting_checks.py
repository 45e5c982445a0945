# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the engine's own check of each setting it parses (sizes, durations, retention terms,
compression), by the setting's name, so that a deployment can refuse a value before any run would."""

from __future__ import annotations


from .compression import parse_compress
from .errors import ConfigError
from .name_trust import parse_clock_skew
from .retention import parse_buckets, parse_min_age
from .snapper import snapper_config
from .units import parse_duration, parse_size
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Callable, Optional

# setting -> (what a valid value is, the parser that the engine runs on it)
ENGINE_SETTINGS: dict[str, tuple[str, Callable]] = {
    "compress": ("a compression setting", parse_compress),
    "limit_rate": ("a size", lambda value: parse_size(value, "limit_rate")),
    "buffer": ("a size", lambda value: parse_size(value, "buffer")),
    "resumable_chunk_size": ("a size", lambda value: parse_size(value, "resumable_chunk_size")),
    "max_age": ("a duration", parse_duration),
    "preserve_snapshots": ("a retention policy", parse_buckets),
    "preserve_backups": ("a retention policy", parse_buckets),
    "min_age": ("a minimum age", parse_min_age),
    "quota": ("a quota", lambda value: parse_size(value, "quota")),
    "clock_skew": ("a clock skew", parse_clock_skew),
    "source_snapshots": ("own or snapper:CONFIG", snapper_config),
}

# Settings whose empty value means "none" (the others always need a value).
OPTIONAL_SETTINGS = frozenset({"limit_rate", "buffer", "preserve_snapshots", "preserve_backups", "min_age", "quota"})


def setting_problem(setting: str, value, name: Optional[str] = None) -> Optional[str]:
    """None if the engine takes `value` for `setting` (or does not parse that setting), else
    "NAME 'VALUE' is not WHAT (btrfs-backup: WHY)"; NAME is the setting unless given."""
    if setting not in ENGINE_SETTINGS:
        return None
    what, parse = ENGINE_SETTINGS[setting]
    text = "" if value is None else str(value)
    if not text.strip() and setting in OPTIONAL_SETTINGS:
        return None
    try:
        parse(text)
    except ConfigError as err:
        return f"{name or setting} '{text}' is not {what} (btrfs-backup: {err})"
    return None
