"""engine.model.receive_slots: the slot files, serve's lines about a wait, and the source reading them back."""

import pytest

from engine.model.receive_slots import (LONGEST_RETRY, retry_delay, slot_files, slot_wait, timeout_line,
                                        waited_line, waiting_line)

RECEIVE_ERROR = "ERROR: cannot find parent subvolume\n"

SLOT_WAITS = [
    pytest.param("", (None, None), id="nothing-said"),
    pytest.param(RECEIVE_ERROR, (None, None), id="only-receive-errors"),
    pytest.param(waiting_line(2) + "\n" + waited_line(3.25) + "\n",
                 ("waiting for a receive slot (2 busy)", 3.2), id="waited-then-received"),
    pytest.param(waiting_line(1) + "\n" + waited_line(0.04) + "\n" + RECEIVE_ERROR,
                 ("waiting for a receive slot (1 busy)", 0.0), id="waited-then-receive-failed"),
    pytest.param(waiting_line(4) + "\n" + timeout_line(4, 3600) + "\n",
                 ("waiting for a receive slot (4 busy)", None), id="no-slot-came-free"),
    # A line that only quotes the words (a refusal naming a path) is not serve's wait.
    pytest.param("btrfs-backup serve: refused: /x/waiting for a receive slot (2 busy)\n", (None, None),
                 id="quoted-elsewhere"),
]


@pytest.mark.parametrize("stderr, expected", SLOT_WAITS)
def test_a_source_reads_the_wait_back_from_what_serve_said(stderr, expected):
    assert slot_wait(stderr) == expected


@pytest.mark.parametrize("count, names", [
    (1, ["receive-slot-0"]),
    (3, ["receive-slot-0", "receive-slot-1", "receive-slot-2"]),
    (0, []),
])
def test_slot_files(count, names):
    assert slot_files(count) == names


@pytest.mark.parametrize("tries, delay", [(1, 0.1), (2, 0.2), (3, LONGEST_RETRY), (50, LONGEST_RETRY), (14401, LONGEST_RETRY)])
def test_a_waiting_receive_looks_again_soon_then_often(tries, delay):
    assert retry_delay(tries) == pytest.approx(delay)


def test_the_timeout_says_how_long_how_busy_and_that_nothing_was_received():
    line = timeout_line(3, 5400)
    assert line.startswith("btrfs-backup serve: no receive slot came free in 1h 30m (3 busy")
    assert "nothing was received" in line and "the next run sends it" in line
