"""engine.host.receive_slots: a slot is a flock on a slot file; a full server makes a receive wait, within a bound."""

import fcntl
import os

import pytest

from engine.host.receive_slots import NoSlot, SenderGone, hung_up, take_slot


class Clock:
    """A clock that a sleep moves on, and the sleeps taken."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def hold(folder, name):
    fd = os.open(os.path.join(str(folder), name), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_free_slot_is_taken_at_once_and_freed_by_closing_it(tmp_path):
    folder = tmp_path / "slots"  # made on first use
    waits = []
    fd, waited = take_slot(str(folder), 2, 10, waits.append)
    assert (waited, waits) == (0.0, [])
    second, _ = take_slot(str(folder), 2, 10, waits.append)
    clock = Clock()
    with pytest.raises(NoSlot) as caught:
        take_slot(str(folder), 2, 0.5, waits.append, clock=clock, sleep=clock.sleep)
    assert caught.value.busy == 2 and waits == [2]
    os.close(fd)
    third, _ = take_slot(str(folder), 2, 10, waits.append)
    for held in (second, third):
        os.close(held)


def test_a_full_server_makes_the_receive_wait_until_a_slot_frees(tmp_path):
    holder = hold(tmp_path, "receive-slot-0")
    clock, waits = Clock(), []

    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:
            os.close(holder)  # the receive that held it ended
    fd, waited = take_slot(str(tmp_path), 1, 60, waits.append, clock=clock, sleep=sleep)
    os.close(fd)
    assert waits == [1]  # said once
    assert clock.sleeps == [0.1, 0.2, 0.25]
    assert waited == pytest.approx(0.55)


def test_the_wait_is_bounded(tmp_path):
    holder = hold(tmp_path, "receive-slot-0")
    clock = Clock()
    try:
        with pytest.raises(NoSlot):
            take_slot(str(tmp_path), 1, 2.5, lambda busy: None, clock=clock, sleep=clock.sleep)
    finally:
        os.close(holder)
    assert sum(clock.sleeps) == pytest.approx(2.5)  # the last sleep ends at the bound, not past it
    assert max(clock.sleeps) <= 0.25


def test_a_source_that_hung_up_gives_up_its_place(tmp_path):
    holder = hold(tmp_path, "receive-slot-0")
    clock = Clock()
    try:
        with pytest.raises(SenderGone):
            take_slot(str(tmp_path), 1, 60, lambda busy: None, gone=lambda: len(clock.sleeps) == 2,
                      clock=clock, sleep=clock.sleep)
    finally:
        os.close(holder)


def test_the_slot_is_not_inherited_by_the_programs_serve_starts(tmp_path):
    fd, _ = take_slot(str(tmp_path), 1, 1, lambda busy: None)
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


def test_hung_up_tells_a_pipe_nobody_reads_from_one_that_is_read():
    read, write = os.pipe()
    try:
        assert not hung_up(write)
        os.close(read)
        read = None
        assert hung_up(write)
    finally:
        os.close(write)
        if read is not None:
            os.close(read)
