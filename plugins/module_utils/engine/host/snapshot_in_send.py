# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A pulled source's snapshot taken in the send's own remote command: its command line, and what its stderr says (pure).

At a source across a network the lock file, the snapshot and its facts go before the send in one
remote line, `{ [mkdir -p -- FOLDER &&] WRITE_LOCKS && btrfs subvolume snapshot -r SRC SNAP &&
printf MARKER && { btrfs subvolume show SNAP || :; }; } >&2 && btrfs send ... SNAP`: stdout carries
only the stream, the send starts only once the lock file is durable and the snapshot exists (rule
3), and the snapshot's UUID, which rule 2's check of what arrived needs, comes back marked on
stderr. Facts that cannot be read are never taken for a success: the caller asks apart."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import posixpath

from . import btrfs
from .arrival_check import parse_arrival, show_argv

if TYPE_CHECKING:
    from typing import Callable
    from .listing import Subvolume

#: The line before the new snapshot's facts on the send command's stderr: the snapshot was taken.
SNAPSHOT_MARKER = "btrfs-backup-snapshot-taken"


def snapshot_line(quote: Callable, source_path: str, snapshot_path: str, *, create_folder: bool = False,
                  lock_write: tuple | None = None) -> str:
    """The part of a send's remote line that runs before the send: the snapshot folder created
    (a first run), the lock file written (`lock_write`: (argv, privileged), or None when it was
    written apart), the read-only snapshot taken, then its facts after SNAPSHOT_MARKER, all on
    stderr. `quote(argv, privileged)` gives one command's quoted words (SshEndpoint.remote_line)."""
    parts = []
    if create_folder:
        parts.append(quote(["mkdir", "-p", "--", posixpath.dirname(snapshot_path)], True))
    if lock_write is not None:
        parts.append(quote(*lock_write))
    parts.append(quote(btrfs.snapshot_argv(source_path, snapshot_path), True))
    parts.append("printf '\\n%%s\\n' %s" % SNAPSHOT_MARKER)
    # A show that fails leaves the facts unread (asked apart then), not the send unsent.
    parts.append("{ %s || :; }" % quote(show_argv(snapshot_path), True))
    return "{ %s; } >&2" % " && ".join(parts)


def was_taken(stderr: str) -> bool:
    """Whether the send command's stderr says that the snapshot was taken (its marker line)."""
    return SNAPSHOT_MARKER in stderr.splitlines()


def snapshot_facts(stderr: str, snapshot_path: str) -> Subvolume | None:
    """The new snapshot as its marked facts on the send command's stderr describe it, or None when
    they cannot be read (missing, cut short, garbled, about another subvolume). A readable answer
    is taken as it is: a writable snapshot is the caller's failure to report."""
    folder, name = posixpath.split(snapshot_path)
    return parse_arrival(stderr, folder, name, marker=SNAPSHOT_MARKER)


def not_taken_reason(stderr: str, source_path: str, snapshot_path: str) -> str:
    """Why a send command whose stderr has no marker took no snapshot, as a run that takes its
    snapshot apart says it: the folder, the lock file or the snapshot itself, with the line that
    said so."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("mkdir:"):
            return "cannot create folder %s: %s" % (posixpath.dirname(snapshot_path), line)
        if line.startswith("cannot write the lock file"):
            return line
    detail = lines[-1] if lines else "no answer"
    return "cannot snapshot %s to %s: %s" % (source_path, snapshot_path, detail)
