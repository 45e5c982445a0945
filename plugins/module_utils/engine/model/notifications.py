# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: which requests a run sends to its ping and ntfy URLs at its start and end, how often it
tries each, and how such a URL is shown (redacted: it may hold a secret)."""

from __future__ import annotations

import collections

from .errors import ConfigError

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional

START, SUCCESS, FAILURE = "start", "success", "failure"

# Each try of a request waits at most TRY_TIMEOUT seconds for an answer; a failed try is tried
# again after each of RETRY_DELAYS, while the whole request has taken less than DEADLINE.
TRY_TIMEOUT = 5.0
RETRY_DELAYS = (1.0, 2.0)
DEADLINE = 15.0
BODY_LIMIT = 10000  # characters of the log's tail in a failure ping (Healthchecks keeps 100 kB)


class Request(collections.namedtuple("Request", "method url body headers", defaults=(b"", ()))):
    """One HTTP request of a notification: method, URL, body (bytes) and headers ((name, value) pairs)."""

    __slots__ = ()


def check_url(url: str, setting: str) -> str:
    """An http(s) URL (other schemes, e.g. file:, are refused); ConfigError without the URL's
    secret parts."""
    scheme, sep, rest = (url or "").partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0]:
        raise ConfigError(f"{setting} {redact(url)} is not an http:// or https:// URL")
    return url


def redact(url: Optional[str]) -> str:
    """The URL as logs, results and records show it: scheme and host only (its path, query and
    user may hold a secret: a Healthchecks UUID, an ntfy topic, a token)."""
    if not url:
        return "''"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(a URL)"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}/…"


def scrub(text: str, url: str) -> str:
    """`text` (an error that may quote the URL) with the URL and its path replaced by the redacted form."""
    if not url:
        return text
    shown = redact(url)
    text = text.replace(url, shown)
    path = url.partition("://")[2].partition("/")[2]
    return text.replace(path, "…") if len(path) >= 4 else text


def with_suffix(url: str, suffix: str) -> str:
    """`url` with `/suffix` added to its path, before a query string (…/UUID?rid=1 -> …/UUID/start?rid=1)."""
    base, sep, query = url.partition("?")
    return base.rstrip("/") + "/" + suffix + sep + query


def ping_request(url: str, event: str, log_tail: str = "") -> Request:
    """The Healthchecks / Uptime Kuma convention: URL/start at the start, URL on success, URL/fail
    on failure with the tail of the run's log as the body."""
    if event == START:
        return Request("GET", with_suffix(url, "start"))
    if event == SUCCESS:
        return Request("GET", url)
    return Request("POST", with_suffix(url, "fail"), log_tail[-BODY_LIMIT:].encode("utf-8", "replace"),
                   (("Content-Type", "text/plain; charset=utf-8"),))


def ntfy_request(url: str, *, job: str, failed: bool, summary: str) -> Request:
    """A short message to an ntfy topic: the job, how the run ended and why."""
    title = f"btrfs-backup {job}: " + ("backup failed" if failed else "backup done")
    headers = (("Title", title.encode("ascii", "replace").decode("ascii")),
               ("Priority", "high" if failed else "default"),
               ("Tags", "warning" if failed else "white_check_mark"))
    return Request("POST", url, summary[:BODY_LIMIT].encode("utf-8", "replace"), headers)


def run_requests(*, event: str, ping_url: str = "", ntfy_url: str = "", ntfy_on_success: bool = False,
                 job: str = "", summary: str = "", log_tail: str = "") -> list:
    """The requests a run sends at `event` (START, SUCCESS or FAILURE), each with its URL as given
    (for the request) beside it: [(url, Request)]."""
    requests = []
    if ping_url:
        requests.append((ping_url, ping_request(ping_url, event, log_tail)))
    if ntfy_url and (event == FAILURE or (event == SUCCESS and ntfy_on_success)):
        requests.append((ntfy_url, ntfy_request(ntfy_url, job=job, failed=event == FAILURE, summary=summary)))
    return requests


def next_try(tries: int, elapsed: float, *, delays=RETRY_DELAYS, deadline: float = DEADLINE,
             timeout: float = TRY_TIMEOUT) -> Optional[tuple]:
    """After `tries` failed tries that took `elapsed` seconds: (delay, timeout) of the next try, or
    None (no more: the request is given up, the run goes on). The first try has no delay; no try
    starts or runs past the deadline."""
    if tries > len(delays):
        return None
    delay = 0.0 if tries == 0 else delays[tries - 1]
    left = deadline - elapsed - delay
    if left < 0.5:
        return None
    return delay, min(timeout, left)


def worth_retrying(status: Optional[int]) -> bool:
    """A failed try is tried again when no answer came (None) or the server had a problem (5xx,
    429); a client error (404: a wrong URL) would fail the same way again."""
    return status is None or status >= 500 or status == 429


def summary(*, job: str, failed: bool, snapshot: Optional[dict], errors: list, failed_destinations: list) -> str:
    """The text of an ntfy message: what the run did or why it failed."""
    if not failed:
        return f"{job}: backup done" + (f", snapshot {snapshot['name']}" if snapshot else "")
    where = f" at {', '.join(failed_destinations)}" if failed_destinations else ""
    return f"{job}: backup failed{where}: " + "; ".join(errors[:3])
