# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: whether the server turned an ssh connection away before anything ran, and when to try again.

When a fleet's timers fire together, sshd's MaxStartups drops connections that are still
unauthenticated ("kex_exchange_identification: read: Connection reset by peer"). Such a
connection is worth another try; a refused key, a changed host key, a host where nothing
listens ("Connection refused": the server is down, and the destination fails at once as rule 9
wants), a timeout or anything after the connection was made is not.
"""

from __future__ import annotations

import re

#: Seconds before the 2nd, 3rd and 4th try.
RETRY_DELAYS = (1.0, 2.0, 4.0)
#: Each wait is stretched or shrunk by up to this share, so hosts turned away together spread out.
JITTER = 0.25

# The server turned the connection away before authentication: nothing ran.
_TURNED_AWAY_RE = r"kex_exchange_identification|Connection reset by peer|Connection closed by \S+ port \d+"
# Final answers: another try gets the same one.
_FINAL_RE = r"Permission denied|Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED"


def turned_away(returncode: int, stderr: str | None) -> str | None:
    """The line of ssh's stderr that says the server turned the connection away, or None when
    the failure is not one to retry (ssh's own status for connection failures is 255)."""
    if returncode != 255 or re.search(_FINAL_RE, stderr or ""):
        return None
    for line in (stderr or "").splitlines():
        if re.search(_TURNED_AWAY_RE, line):
            return line.strip()
    return None


def retry_delay(failed_try: int, fraction: float) -> float | None:
    """Seconds to wait after try number `failed_try` (1-based) failed, or None when it was the
    last; `fraction` in [0, 1) (random) places the wait within its jitter."""
    if failed_try > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[failed_try - 1] * (1 + JITTER * (2 * fraction - 1))


def retry_message(where: str, reason: str, delay: float, next_try: int) -> str:
    """What the log says before waiting."""
    return ("ssh to %s refused the connection (%s); retrying in %.1f s (try %d of %d)"
            % (where, reason, delay, next_try, len(RETRY_DELAYS) + 1))
