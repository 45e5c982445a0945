"""engine.host.notify: a request is tried as the schedule says, never raises, and never shows its URL."""

import logging

import pytest

from engine.host import notify
from engine.model.notifications import Request

URL = "https://hc-ping.com/secret-uuid"


@pytest.fixture
def answers(monkeypatch):
    """The answers of the tries, in order: (status, problem)."""
    given, tried = [], []

    def fake_try(request, timeout):
        tried.append(timeout)
        return given.pop(0)
    monkeypatch.setattr(notify, "_try", fake_try)
    return given, tried


def test_a_delivered_request_is_tried_once(answers):
    given, tried = answers
    given.append((200, None))
    assert notify.send(URL, Request("GET", URL), pause=lambda s: None) is None
    assert tried == [5.0]


def test_a_server_that_does_not_answer_is_tried_three_times_then_given_up(answers):
    given, tried = answers
    given.extend([(None, f"timed out reaching {URL}")] * 3)
    pauses = []
    problem = notify.send(URL, Request("GET", URL), pause=pauses.append)
    assert len(tried) == 3 and pauses == [1.0, 2.0]
    assert problem == "notification to https://hc-ping.com/… was not delivered after 3 tries: " \
                      "timed out reaching https://hc-ping.com/…"
    assert "secret" not in problem


def test_a_wrong_url_is_not_tried_again(answers):
    given, tried = answers
    given.append((404, "HTTP 404 Not Found"))
    assert "after 1 try: HTTP 404" in notify.send(URL, Request("GET", URL), pause=lambda s: None)


def test_the_log_tail_keeps_the_last_lines():
    tail = notify.LogTail(lines=2)
    log = logging.getLogger("test_notify")
    log.addHandler(tail)
    log.setLevel(logging.INFO)
    try:
        for n in range(5):
            log.info("line %d", n)
    finally:
        log.removeHandler(tail)
    assert tail.text() == "INFO: line 3\nINFO: line 4\n"
