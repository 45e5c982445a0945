# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The receive's own answer about what arrived at another host, read by a pure function.

Once `btrfs receive` has exited with success, the receive's remote command (a plain host: a
`btrfs subvolume show` after it on the same command line) or `btrfs-backup serve` (by itself)
prints a marker line and the arrived subvolume's facts, as `btrfs subvolume show` words them. So
rule 2's check of what arrived needs no remote command of its own. No answer, or one that
cannot be read, is never a success: the check is then asked for separately, as before."""

from __future__ import annotations

import posixpath

from ..model.folder_forecast import is_filesystem_id, is_uuid
from .listing import Subvolume

#: The line before the facts (the last one counts: a receive's own output comes before it).
ARRIVAL_MARKER = "btrfs-backup-arrived"
#: Before the marker, a plain host's receive command prints this word and its folder's filesystem
#: id (`stat -f -c %i`): the next run's receive there runs only on that same filesystem
#: (model/folder_forecast.py).
FILESYSTEM_MARKER = "btrfs-backup-filesystem"
#: The lines of `btrfs subvolume show` that an answer carries (serve sends no other).
ANSWER_FIELDS = ("Name", "UUID", "Parent UUID", "Received UUID", "Subvolume ID", "Flags")


def show_argv(path: str) -> list[str]:
    """The command whose output is the answer: the facts of the subvolume at `path`."""
    return ["btrfs", "subvolume", "show", path]


def filesystem_argv(folder: str) -> list[str]:
    """The command that prints the filesystem id of `folder` on a line of its own after the
    FILESYSTEM_MARKER (a plain host's receive command asks it after the receive)."""
    return ["stat", "-f", "--printf", "\\n%s %%i\\n" % FILESYSTEM_MARKER, "--", folder]


def filesystem_guard(folder: str, expected: str) -> str:
    """Pure: a remote line that fails, saying why, unless `folder` is on the filesystem `expected`
    (a receive planned on what the job's last run left there runs after it: rule 8, a stream never
    lands on another disk than the one that run sent to)."""
    import shlex

    problem = "%s is not on the filesystem this job's last run sent to (a backup disk not mounted?)" % folder
    return "{ test \"$(stat -f -c %%i -- %s)\" = %s || { printf '%%s\\n' %s >&2; exit 1; }; }" % (
        shlex.quote(folder), shlex.quote(expected), shlex.quote(problem))


def parse_filesystem_id(stdout: str | None) -> str | None:
    """Pure: the filesystem id a plain host's receive command printed (its last FILESYSTEM_MARKER
    line), None when there is none that can be read."""
    found = None
    for line in (stdout or "").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == FILESYSTEM_MARKER:
            found = words[1]
    return found if is_filesystem_id(found) else None


def answer_fields(show_text: str) -> dict:
    """Pure: the ANSWER_FIELDS of `btrfs subvolume show` output (its first value of each; the
    list of the subvolume's snapshots that ends the output is not read)."""
    fields = {}
    for line in show_text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key == "Snapshot(s)":
            break
        if sep and key in ANSWER_FIELDS and key not in fields:
            fields[key] = value.strip()
    return fields


def answer_text(show_text: str) -> str:
    """Pure: serve's answer about one arrived subvolume: the marker, then only the ANSWER_FIELDS
    of its `btrfs subvolume show` (no server path, no other subvolume)."""
    fields = answer_fields(show_text)
    lines = ["%s: %s\n" % (key, fields[key]) for key in ANSWER_FIELDS if key in fields]
    return "\n%s\n%s" % (ARRIVAL_MARKER, "".join(lines))


def parse_arrival(stdout: str, folder: str, name: str, marker: str = ARRIVAL_MARKER) -> Subvolume | None:
    """Pure: the subvolume `name` in `folder` as the receive's answer on `stdout` describes it, or
    None when there is no readable answer about it (an older serve, a show that failed, an answer
    cut short or garbled, or about another name): the caller then checks by itself. A readable
    answer is taken as it is: a writable subvolume or another received_uuid fails rule 2's check.
    `marker`: the line the facts follow (a snapshot taken in a send's command marks its own)."""
    lines = stdout.splitlines()
    if marker not in lines:
        return None
    after = len(lines) - lines[::-1].index(marker)
    fields = answer_fields("\n".join(lines[after:]))
    if fields.get("Name") != name or "Flags" not in fields or not fields.get("Subvolume ID", "").isdigit():
        return None
    uuids = [_uuid_or_none(fields.get(key)) for key in ("UUID", "Parent UUID", "Received UUID")]
    if False in uuids or uuids[0] is None:
        return None
    uuid, parent_uuid, received_uuid = uuids
    return Subvolume(name=name, path=posixpath.join(folder, name), id=int(fields["Subvolume ID"]), uuid=uuid,
                     parent_uuid=parent_uuid, received_uuid=received_uuid,
                     readonly="readonly" in fields["Flags"].split())


def _uuid_or_none(value):
    """A UUID as btrfs prints it, None for its "-" (none), False for anything else (unreadable)."""
    if value == "-":
        return None
    return value if is_uuid(value) else False
