# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: what an ssh destination says it is (a plain host, or `btrfs-backup serve` and its mode).

The source sends `echo btrfs-backup-serve-mode none` with its other probes. A plain ssh host's
shell echoes it ("none": no serve, nothing else happens); `serve` accepts exactly this command
and answers its own mode instead: `btrfs-backup-serve-mode append-only` or `... open`. A serve
from before this probe refuses it: the mode is then unknown (None).

What serve accepts beyond the shapes every serve takes rides on its answer to `btrfs --version`,
which every source asks in the same batch: after btrfs's own line, serve adds one line
`btrfs-backup-serve-accepts WORD...`. That answer is read only for "btrfs-progs vX.Y" (a search,
not a match of the whole text), by this source and by every source before it, so an older source
skips the line; the mode probe's answer stays exactly two words, as older sources parse it. A
serve from before this line names no feature: a source then sends only the shapes it always took.
"""

from __future__ import annotations

PROBE_WORD = "btrfs-backup-serve-mode"
MODE_PROBE = ["echo", PROBE_WORD, "none"]
NOT_SERVE = "none"
APPEND_ONLY = "append-only"
OPEN = "open"
#: Leads serve's line of features in its answer to `btrfs --version`.
FEATURES_WORD = "btrfs-backup-serve-accepts"
#: `mkdir -p -- F && [zstd -d -q |] btrfs receive F`: the receive's own command creates its folder.
RECEIVE_MAKES_FOLDER = "mkdir-receive"
#: What this serve accepts beyond the shapes every serve takes.
SERVE_FEATURES = (RECEIVE_MAKES_FOLDER,)


def serve_answer(append_only: bool) -> str:
    """What serve prints for the probe."""
    return f"{PROBE_WORD} {APPEND_ONLY if append_only else OPEN}\n"


def parse_mode(text: str) -> str | None:
    """The mode an answer names (NOT_SERVE, APPEND_ONLY or OPEN), or None for anything else."""
    words = (text or "").split()
    if len(words) == 2 and words[0] == PROBE_WORD and words[1] in (NOT_SERVE, APPEND_ONLY, OPEN):
        return words[1]
    return None


def features_line() -> str:
    """The line serve adds to its answer to `btrfs --version`."""
    return " ".join((FEATURES_WORD,) + SERVE_FEATURES) + "\n"


def parse_features(text: str) -> frozenset:
    """The features a `btrfs --version` answer names (empty: a plain host, or a serve before them)."""
    for line in (text or "").splitlines():
        words = line.split()
        if words[:1] == [FEATURES_WORD]:
            return frozenset(words[1:])
    return frozenset()
