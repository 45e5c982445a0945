# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: resumable transfers (rule 13): when a stream is staged, what its staging folder is called,
what its manifest says, whether a staging found at the destination can be resumed, and which are stale.

A staged transfer lands at the destination as numbered chunk files in a hidden folder inside the
destination folder (STAGING_FOLDER), one folder per (snapshot, parent). Its manifest names the
snapshot, its UUID, the parent's UUID, the chunk size and the stream's expected size; a second
file (CHUNK_HASHES, sha256sum's format) gets one line per chunk that landed and was verified.
"""

from __future__ import annotations

import collections
import json
import re

from .errors import ConfigError
from .units import parse_size

MODES = ("auto", "always", "never")
# `auto` stages a stream whose estimated size is at least this: below it, a cut costs little.
AUTO_THRESHOLD = 1 << 30
# What a full send carries beyond its files' bytes, at most: each write command (up to 48 KiB of
# data) repeats the file's path, a tenth more at the longest paths; and each file, folder or link
# brings a few commands of its own (its making, name, owner, mode, times, extended attributes),
# bounded here by 64 KiB each.
WRITE_OVERHEAD_DIVISOR = 10
ENTRY_METADATA_BOUND = 64 << 10
# A chunk between 1 MiB and 4 GiB: smaller costs a verification per MiB, larger a long resend.
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 1 << 20, 4 << 30
# Hidden, and starting with a dot: no snapshot name can be it (names.validate_name).
STAGING_FOLDER = ".btrfs-backup-staging"
MANIFEST = "manifest.json"
CHUNK_HASHES = "chunks.sha256"
COMPLETE = "complete"
# The command a source sends to a backup server's `serve` for its staging (frontends/serve_staging.py).
SERVE_COMMAND = "btrfs-backup-stage"
# The message of a regenerated stream whose prefix is not the staged one (the sender's program
# prints it; the run recognises it).
DIFFERS = "regenerated stream differs from the staged one at chunk"
# A staging whose last chunk landed longer ago than this is stale: a transfer not continued for a
# week is abandoned (its snapshot gone, the job moved or removed), and its chunks take room.
STALE_AGE = 7 * 24 * 3600

# Patterns are kept as text: re compiles each at its first use and keeps it, so start-up pays for none.
_KEY_RE = r"^(?P<snapshot>[A-Za-z0-9_][A-Za-z0-9._+@:-]*)\.(?P<parent>full|[0-9a-f-]{36})\Z"
_HASH_LINE_RE = r"^(?P<hash>[0-9a-f]{64})  (?P<index>[0-9]{8})\.chunk\Z"

Manifest = collections.namedtuple("Manifest", "snapshot uuid parent_uuid chunk_size stream_size")


def parse_mode(value) -> str:
    """The `resumable` setting: auto, always or never (ConfigError otherwise)."""
    if value not in MODES:
        raise ConfigError(f"resumable must be auto, always or never, not {value!r}")
    return value


def parse_chunk_size(value) -> int:
    """The `resumable_chunk_size` setting in bytes, within MIN_CHUNK_SIZE and MAX_CHUNK_SIZE."""
    size = parse_size(value, "resumable_chunk_size")
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
        raise ConfigError(f"resumable_chunk_size must be between 1M and 4G, not {value!r}")
    return size


def stages(mode: str, estimate: int | None, can_stage: bool) -> bool:
    """Whether a transfer to a destination is staged: never where it cannot be (a local
    destination: a cut there is a crash of the whole machine), always with `always`, and with
    `auto` when the stream's estimated size is at least AUTO_THRESHOLD (unknown: not staged)."""
    if not can_stage or mode == "never":
        return False
    return mode == "always" or (estimate is not None and estimate >= AUTO_THRESHOLD)


def full_stream_bound(file_bytes: int, entries: int) -> int:
    """Pure: the most a full send of a subvolume whose files hold `file_bytes` (apparent sizes: a
    hole, a shared extent or a second hard link only make the stream smaller) among `entries`
    entries can carry."""
    return file_bytes + file_bytes // WRITE_OVERHEAD_DIVISOR + entries * ENTRY_METADATA_BOUND


def estimate_needed(mode: str, bound: int | None) -> bool:
    """Pure: whether a stream that a destination could stage must have its size estimated (a
    `--no-data` pass before its first byte) to decide: `always` keeps the size in its manifest,
    and `auto` needs it unless the stream's `bound` (None: unknown) is below AUTO_THRESHOLD."""
    if mode == "never":
        return False
    return mode == "always" or bound is None or bound >= AUTO_THRESHOLD


def staging_key(snapshot_name: str, parent_uuid: str | None) -> str:
    """The folder of one (snapshot, parent)'s staging: `NAME.PARENT-UUID`, or `NAME.full`."""
    return f"{snapshot_name}.{parent_uuid or 'full'}"


def parse_staging_key(key: str) -> tuple[str, str | None] | None:
    """(snapshot name, parent UUID or None) of a staging folder's name; None for any other name."""
    match = re.match(_KEY_RE, key)
    if not match:
        return None
    parent = match.group("parent")
    return match.group("snapshot"), None if parent == "full" else parent


def manifest_text(manifest: Manifest) -> str:
    return json.dumps(manifest._asdict(), sort_keys=True) + "\n"


def parse_manifest(text: str) -> Manifest:
    """The manifest of a staging; ValueError if it is not one."""
    try:
        fields = json.loads(text)
    except ValueError as err:
        raise ValueError(f"the manifest is not JSON ({err})")
    if not isinstance(fields, dict) or set(fields) != set(Manifest._fields):
        raise ValueError("the manifest does not have the fields " + ", ".join(Manifest._fields))
    manifest = Manifest(**fields)
    if not isinstance(manifest.chunk_size, int) or manifest.chunk_size < 1 \
            or not (manifest.stream_size is None or isinstance(manifest.stream_size, int)):
        raise ValueError("the manifest's chunk size or stream size is not a number")
    return manifest


def parse_chunk_hashes(text: str) -> list[str]:
    """The sha256 of each landed chunk, in order from chunk 0 (sha256sum's lines); ValueError for
    a line of another shape or a chunk out of order. A line cut by a crash ends the list."""
    hashes = []
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if not line:
            continue
        match = re.match(_HASH_LINE_RE, line)
        if not match:
            if number == len(lines) - 1:
                break  # the last line, cut while it was written: that chunk is sent again
            raise ValueError(f"line {number + 1} of {CHUNK_HASHES} is not a chunk's sha256")
        if int(match.group("index")) != len(hashes):
            raise ValueError(f"{CHUNK_HASHES} names chunk {int(match.group('index'))} where chunk "
                             f"{len(hashes)} was expected")
        hashes.append(match.group("hash"))
    return hashes


def hash_line(index: int, digest: str) -> str:
    """One line of CHUNK_HASHES (sha256sum's format, so `sha256sum -c` checks the chunks)."""
    return f"{digest}  {chunk_name(index)}\n"


def chunk_name(index: int) -> str:
    return "%08d.chunk" % index


class Resume(collections.namedtuple("Resume", "chunks complete reason")):
    """What to do with what a destination has staged: `chunks` landed chunks to prove and skip
    (0: send from the start), `complete` the whole stream is staged (only the receive is left),
    `reason` why a staging found there is not used (None: there was none, or it is used)."""

    __slots__ = ()


def resume_from(found: Manifest | None, hashes: list[str], complete: bool, wanted: Manifest) -> Resume:
    """How a transfer described by `wanted` continues from what is staged (`found`: the manifest
    there, None when there is no staging; `hashes` the landed chunks; `complete` the stream ended
    there). Another snapshot, UUID, parent or chunk size: start over, saying why."""
    if found is None:
        return Resume(0, False, None)
    for field, what in (("snapshot", "snapshot"), ("uuid", "snapshot UUID"),
                        ("parent_uuid", "parent"), ("chunk_size", "chunk size")):
        if getattr(found, field) != getattr(wanted, field):
            return Resume(0, False, f"the staged stream has another {what} "
                                    f"({getattr(found, field)}, now {getattr(wanted, field)}): starting over")
    if complete:
        return Resume(len(hashes), True, None)
    if found.stream_size is not None and len(hashes) * found.chunk_size > found.stream_size + found.chunk_size:
        return Resume(0, False, "the staging holds more chunks than its stream has: starting over")
    return Resume(len(hashes), False, None)


def stale_stagings(keys: list[str], current: str, ages: dict | None = None) -> list[str]:
    """The staging folders to remove before the transfer of `current` (a staging key): those of the
    same snapshot from another parent, of older snapshots (the chain has gone past them: they are
    not wanted any more), any folder that is not a staging's, and any whose last chunk landed more
    than STALE_AGE ago (`ages`: seconds since, by key). Newer snapshots' fresh ones are kept: this
    run may still send them."""
    snapshot, _parent = parse_staging_key(current)
    ages = ages or {}
    stale = []
    for key in keys:
        parsed = parse_staging_key(key)
        if key != current and (parsed is None or parsed[0] <= snapshot or ages.get(key, 0) > STALE_AGE):
            stale.append(key)
    return sorted(stale)


def stale_on_server(ages: dict, newest_backup_age: float | None) -> dict:
    """Pure: the stagings a backup server's prune removes, with the reason ({key: reason}), from
    what the server observed (rule 12): `ages` seconds since each staging's last chunk landed,
    `newest_backup_age` seconds since the newest complete backup there was received (None: none).
    Stale: its last chunk landed more than STALE_AGE ago, or a backup arrived after it (a host
    resumes a cut transfer before it sends anything newer: one that went on no longer has or wants
    that snapshot). Folders that are not a staging's are not serve's, so not prune's either."""
    stale = {}
    for key, age in sorted(ages.items()):
        if parse_staging_key(key) is None:
            continue
        if age > STALE_AGE:
            stale[key] = "its last chunk landed %d days ago (stale after %d days)" % (
                age // 86400, STALE_AGE // 86400)
        elif newest_backup_age is not None and newest_backup_age < age:
            stale[key] = "a backup arrived after its last chunk landed: the host went on without it"
    return stale


def staged_percent(staged_bytes: int, stream_size: int | None) -> int | None:
    """How much of the stream has landed, in whole percent (None when its size is unknown)."""
    if not stream_size:
        return None
    return min(100, 100 * staged_bytes // stream_size)
