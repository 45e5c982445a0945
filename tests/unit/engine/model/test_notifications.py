"""engine.model.notifications: the requests per outcome, the tries, and a URL never shown whole."""

import pytest

from engine.model import notifications
from engine.model.errors import ConfigError
from engine.model.notifications import FAILURE, START, SUCCESS

HC = "https://hc-ping.com/0f2a61d4-secret-uuid"
NTFY = "https://ntfy.example.org/backup-topic-s3cr3t"


@pytest.mark.parametrize("url, shown", [
    (HC, "https://hc-ping.com/…"),
    ("http://user:pass@kuma.lan:3001/api/push/TOKEN?status=up", "http://kuma.lan:3001/…"),
    ("https://ntfy.sh/topic#frag", "https://ntfy.sh/…"),
    ("https://host?token=1", "https://host/…"),
    ("no url at all", "(a URL)"),
    ("", "''"),
])
def test_a_url_is_shown_without_anything_that_may_be_secret(url, shown):
    assert notifications.redact(url) == shown


def test_an_error_that_quotes_the_url_is_scrubbed():
    text = notifications.scrub(f"cannot reach {HC}: refused (path /0f2a61d4-secret-uuid)", HC)
    assert "secret" not in text and "https://hc-ping.com/…" in text


@pytest.mark.parametrize("url", ["ftp://host/x", "file:///etc/passwd", "hc-ping.com/uuid", "https://"])
def test_only_http_urls_are_taken_and_the_refusal_hides_the_url(url):
    with pytest.raises(ConfigError, match="ping_url .* is not an http:// or https:// URL") as raised:
        notifications.check_url(url, "ping_url")
    assert "passwd" not in str(raised.value) and "uuid" not in str(raised.value)


PLAN_CASES = [
    # event, ntfy_on_success, the requests: (method, url, body)
    (START, False, [("GET", HC + "/start", b"")]),
    (SUCCESS, False, [("GET", HC, b"")]),
    (SUCCESS, True, [("GET", HC, b""), ("POST", NTFY, b"home: backup done, snapshot 20260101-020000")]),
    (FAILURE, False, [("POST", HC + "/fail", b"ERROR: it broke\n"),
                      ("POST", NTFY, b"home: backup failed at /mnt/b1: /mnt/b1: it broke")]),
]


@pytest.mark.parametrize("event, on_success, expected", PLAN_CASES)
def test_the_requests_of_each_outcome(event, on_success, expected):
    failed = event == FAILURE
    summary = notifications.summary(job="home", failed=failed, snapshot={"name": "20260101-020000"},
                                    errors=["/mnt/b1: it broke"], failed_destinations=["/mnt/b1"] if failed else [])
    requests = notifications.run_requests(event=event, ping_url=HC, ntfy_url=NTFY, ntfy_on_success=on_success,
                                          job="home", summary=summary, log_tail="ERROR: it broke\n")
    assert [(r.method, r.url, r.body) for _url, r in requests] == expected


def test_no_url_no_request_and_a_query_string_stays_at_the_end():
    assert notifications.run_requests(event=FAILURE) == []
    assert notifications.ping_request("https://hc/uuid/?rid=7", START).url == "https://hc/uuid/start?rid=7"


def test_the_failure_ping_carries_the_end_of_a_long_log_only():
    body = notifications.ping_request(HC, FAILURE, "x" * 50000 + "the end").body
    assert len(body) == notifications.BODY_LIMIT and body.endswith(b"the end")


def test_an_ntfy_message_is_titled_and_flagged_by_the_outcome():
    request = notifications.ntfy_request(NTFY, job="home", failed=True, summary="home: backup failed")
    assert dict(request.headers) == {"Title": "btrfs-backup home: backup failed", "Priority": "high",
                                     "Tags": "warning"}


TRY_CASES = [
    # tries so far, seconds they took, the next try (delay, timeout) or None
    (0, 0.0, (0.0, 5.0)),
    (1, 5.0, (1.0, 5.0)),
    (2, 11.0, (2.0, 2.0)),  # the last try is cut to the deadline (15 s)
    (2, 12.7, None),  # less than half a second would be left
    (3, 3.0, None),  # three tries, no more
]


@pytest.mark.parametrize("tries, elapsed, expected", TRY_CASES)
def test_the_tries_of_a_request_stay_within_the_deadline(tries, elapsed, expected):
    assert notifications.next_try(tries, elapsed) == expected


def test_the_worst_case_of_one_request_is_bounded_by_the_deadline():
    elapsed, tries = 0.0, 0
    while (plan := notifications.next_try(tries, elapsed)) is not None:
        delay, timeout = plan
        elapsed += delay + timeout  # every try waits its whole timeout (a server that hangs)
        tries += 1
    assert tries == 3 and elapsed <= notifications.DEADLINE


@pytest.mark.parametrize("status, again", [(None, True), (500, True), (503, True), (429, True),
                                           (404, False), (400, False)])
def test_only_a_missing_answer_or_a_server_problem_is_tried_again(status, again):
    assert notifications.worth_retrying(status) is again
