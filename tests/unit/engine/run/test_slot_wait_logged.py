"""engine.run.sending: a backup server's wait for a receive slot, read from what its serve said, is logged and kept per destination."""

import logging

import pytest

from engine.model.receive_slots import timeout_line, waited_line, waiting_line
from engine.run.sending import _slot_waits


class Dest:
    def __init__(self, name):
        self.id = "ssh://backup/srv/backups/%s" % name


class Stats:
    def __init__(self, stderr):
        self.stderr = stderr


CASES = [
    pytest.param("", None, [], id="no-wait"),
    pytest.param(waiting_line(4) + "\n" + waited_line(12.345) + "\n", 12.3,  # said to 0.1 s
                 [(logging.INFO, "waiting for a receive slot (4 busy) at the backup server; waited 12.3 s")],
                 id="waited"),
    pytest.param(waiting_line(2) + "\n" + timeout_line(2, 60) + "\n", None,
                 [(logging.WARNING, "waiting for a receive slot (2 busy) at the backup server; none came free")],
                 id="no-slot"),
]


@pytest.mark.parametrize("said, waited, logged", CASES)
def test_the_wait_is_logged_and_kept(said, waited, logged, caplog):
    dest, other = Dest("web1"), Dest("web2")
    with caplog.at_level(logging.INFO, logger="btrfs_backup"):
        waits = _slot_waits([dest, other], Stats({dest: said, other: ""}))
    assert waits.get(dest) == (round(waited, 3) if waited is not None else None)
    assert other not in waits
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (level, "%s: %s" % (dest.id, text)) for level, text in logged]
