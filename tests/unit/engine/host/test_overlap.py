"""Local work in a thread while the run waits: its result and its exception come back to the caller."""

import threading

import pytest

from engine.host.overlap import InBackground


def test_the_work_runs_while_the_caller_goes_on():
    started, go_on = threading.Event(), threading.Event()

    def work(value):
        started.set()
        assert go_on.wait(10), "the caller never went on"
        return value * 2

    running = InBackground(work, 21)
    assert started.wait(10), "the work did not start at once"
    go_on.set()  # the caller's own work, done meanwhile
    assert running.result() == 42


def test_what_the_work_raised_is_raised_by_result():
    def work():
        raise ValueError("no sample")

    running = InBackground(work)
    with pytest.raises(ValueError, match="no sample"):
        running.result()
