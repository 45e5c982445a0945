# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: what an ssh destination says it is (a plain host, or `btrfs-backup serve` and its mode).

The source sends `echo btrfs-backup-serve-mode none` with its other probes. A plain ssh host's
shell echoes it ("none": no serve, nothing else happens); `serve` accepts exactly this command
and answers its own mode instead: `btrfs-backup-serve-mode append-only` or `... open`. A serve
from before this probe refuses it: the mode is then unknown (None).
"""

from __future__ import annotations

PROBE_WORD = "btrfs-backup-serve-mode"
MODE_PROBE = ["echo", PROBE_WORD, "none"]
NOT_SERVE = "none"
APPEND_ONLY = "append-only"
OPEN = "open"


def serve_answer(append_only: bool) -> str:
    """What serve prints for the probe."""
    return f"{PROBE_WORD} {APPEND_ONLY if append_only else OPEN}\n"


def parse_mode(text: str) -> str | None:
    """The mode an answer names (NOT_SERVE, APPEND_ONLY or OPEN), or None for anything else."""
    words = (text or "").split()
    if len(words) == 2 and words[0] == PROBE_WORD and words[1] in (NOT_SERVE, APPEND_ONLY, OPEN):
        return words[1]
    return None
