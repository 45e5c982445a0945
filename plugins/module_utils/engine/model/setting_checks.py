# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the engine's own check of each setting it parses (sizes, durations, retention terms,
compression), by the setting's name, so that a deployment can refuse a value before any run would."""

from __future__ import annotations


from .archives import parse_full_every
from .compression import parse_compress
from .errors import ConfigError
from .hooks import hook_argv
from .name_trust import parse_clock_skew
from .notifications import check_url, redact
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
    "slot_wait": ("a duration", lambda value: parse_duration(value, "slot_wait")),
    "source_snapshots": ("own or snapper:CONFIG", snapper_config),
    "hook_timeout": ("a duration", lambda value: parse_duration(value, "hook_timeout")),
    "before_snapshot": ("a command line", lambda value: hook_argv(value, "before_snapshot")),
    "after_snapshot": ("a command line", lambda value: hook_argv(value, "after_snapshot")),
    "after_run": ("a command line", lambda value: hook_argv(value, "after_run")),
    "ping_url": ("an http(s) URL", lambda value: check_url(value, "ping_url")),
    "ntfy_url": ("an http(s) URL", lambda value: check_url(value, "ntfy_url")),
    "archive_full_every": ("a count of 1 or more", parse_full_every),
}

# Settings whose empty value means "none" (the others always need a value).
OPTIONAL_SETTINGS = frozenset({"limit_rate", "buffer", "preserve_snapshots", "preserve_backups", "min_age", "quota",
                               "ping_url", "ntfy_url"})


# Settings whose value may hold a secret: a message shows it redacted.
SECRET_SETTINGS = frozenset({"ping_url", "ntfy_url"})


def setting_problem(setting: str, value, name: Optional[str] = None) -> Optional[str]:
    """None if the engine takes `value` for `setting` (or does not parse that setting), else
    "NAME 'VALUE' is not WHAT (btrfs-backup: WHY)"; NAME is the setting unless given. A list
    (of hook commands) is checked item by item."""
    if setting not in ENGINE_SETTINGS:
        return None
    if isinstance(value, (list, tuple)):
        return next(filter(None, (setting_problem(setting, item, name) for item in value)), None)
    what, parse = ENGINE_SETTINGS[setting]
    text = "" if value is None else str(value)
    if not text.strip() and setting in OPTIONAL_SETTINGS:
        return None
    try:
        parse(text)
    except ConfigError as err:
        shown = redact(text) if setting in SECRET_SETTINGS else text
        return f"{name or setting} '{shown}' is not {what} (btrfs-backup: {err})"
    return None
