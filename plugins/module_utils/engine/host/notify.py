# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Effects: send a notification's HTTP request (short timeout, a few tries, never an exception),
and keep the tail of a run's log for the body of a failure ping."""

from __future__ import annotations

import collections
import logging
import time
from ..model import notifications
from ..model.log import LOG

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Callable, Optional

    from ..model.notifications import Request


def send(url: str, request: Request, *, pause: Callable[[float], None] = time.sleep,
         next_try: Callable = notifications.next_try) -> Optional[str]:
    """Send `request` (to `url`, the secret one) until it is answered with success or its tries
    run out; None when it was delivered, else why not, with the URL redacted."""
    started = time.monotonic()
    tries, problem = 0, None
    while True:
        plan = next_try(tries, time.monotonic() - started)
        if plan is None:
            break
        delay, timeout = plan
        if delay:
            pause(delay)
        tries += 1
        status, problem = _try(request, timeout)
        if problem is None:
            LOG.debug("notification to %s delivered", notifications.redact(url))
            return None
        problem = notifications.scrub(problem, url)
        if not notifications.worth_retrying(status):
            break
    return f"notification to {notifications.redact(url)} was not delivered after {tries} " \
           f"{'try' if tries == 1 else 'tries'}: {problem}"


def _try(request: Request, timeout: float) -> tuple:
    """One try: (HTTP status or None, None when delivered or what went wrong)."""
    import urllib.error  # here: only a job with notifications loads them (start-up time)
    import urllib.request

    http_request = urllib.request.Request(request.url, data=request.body if request.method == "POST" else None,
                                          method=request.method, headers=dict(request.headers))
    http_request.add_header("User-Agent", "btrfs-backup")
    try:
        # An opener of the standard library's, not Ansible's open_url: the engine runs without Ansible.
        with urllib.request.build_opener().open(http_request, timeout=timeout) as response:  # http(s) only
            response.read(1024)
            return response.status, None
    except urllib.error.HTTPError as err:
        return err.code, f"HTTP {err.code} {err.reason}"
    except urllib.error.URLError as err:
        return None, str(err.reason)
    except (OSError, ValueError) as err:  # a timeout while reading, a reset, a malformed answer
        return None, str(err) or type(err).__name__


class LogTail(logging.Handler):
    """The last lines a run logged (bounded), for the body of its failure ping."""

    def __init__(self, lines: int = 100):
        super().__init__(logging.INFO)
        self.lines = collections.deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record)[:notifications.BODY_LIMIT // 10])
        except Exception:  # a log line that cannot be formatted must not stop the run
            self.handleError(record)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""
