"""engine.frontends.serve with --receive-slots: a receive takes a slot first, waits within a bound, and other commands never wait."""

import fcntl
import os
import stat
import tempfile

import pytest

from engine.frontends.serve import EXIT_NO_SLOT, Server, slot_settings
from engine.host import btrfs
from engine.host.endpoints.ssh import SshEndpoint
from engine.model.errors import ConfigError

SETTINGS = [
    pytest.param(None, None, "1h", (None, None, 3600), id="no-limit-by-default"),
    pytest.param("0", "/var/lib/slots", "1h", (None, None, 3600), id="zero-is-no-limit"),
    pytest.param("4", "/var/lib/btrfs-backup-serve/receive-slots", "30min",
                 (4, "/var/lib/btrfs-backup-serve/receive-slots", 1800), id="four-slots"),
    pytest.param("2", "/var/lib/slots/", "90", (2, "/var/lib/slots", 90), id="seconds-and-a-trailing-slash"),
]

BAD_SETTINGS = [
    pytest.param("2", None, "1h", "--receive-slots needs --slot-folder", id="no-folder"),
    pytest.param("2", "slots", "1h", "--receive-slots needs --slot-folder", id="relative-folder"),
    pytest.param("-1", "/var/lib/slots", "1h", "--receive-slots", id="negative"),
    pytest.param("many", "/var/lib/slots", "1h", "--receive-slots", id="not-a-number"),
    pytest.param("2", "/var/lib/slots", "soon", "--slot-wait", id="not-a-duration"),
]


@pytest.mark.parametrize("slots, folder, wait, expected", SETTINGS)
def test_slot_settings(slots, folder, wait, expected):
    assert slot_settings(slots, folder, wait) == expected


@pytest.mark.parametrize("slots, folder, wait, named", BAD_SETTINGS)
def test_slot_settings_that_cannot_work_are_refused(slots, folder, wait, named):
    with pytest.raises(ConfigError, match=named):
        slot_settings(slots, folder, wait)


@pytest.fixture
def root(tmp_path):
    """web1's folder; a stand-in btrfs that records its argv and swallows a stream."""
    root = tmp_path / "backups" / "web1"
    (root / "data").mkdir(parents=True)
    fake = tmp_path / "btrfs"
    fake.write_text('#!/bin/sh\necho "btrfs $*" >> %s\ncat > /dev/null\n' % (tmp_path / "btrfs.log"))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def serve(root, line, slots, wait=1):
    """(status, stderr, btrfs calls) of serving `line` with `slots` receive slots in ../slots."""
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server = Server(str(root), btrfs_path=str(root.parents[1] / "btrfs"), stdin=stdin, stdout=out, stderr=err,
                        use_sudo=False, receive_slots=slots, slot_folder=str(root.parents[1] / "slots"), slot_wait=wait)
        status = server.serve(line)
        err.seek(0)
        log = root.parents[1] / "btrfs.log"
        return status, err.read().decode(), log.read_text().splitlines() if log.exists() else []


def receive_line(root):
    return SshEndpoint("nas", "/x").remote_line(btrfs.receive_argv(str(root / "data")))


def hold_all(root, count):
    folder = root.parents[1] / "slots"
    folder.mkdir(exist_ok=True)
    held = []
    for number in range(count):
        fd = os.open(str(folder / ("receive-slot-%d" % number)), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fd)
    return held


def test_a_receive_with_a_free_slot_runs_at_once_and_frees_it(root):
    status, err, calls = serve(root, receive_line(root), 1)
    assert (status, err) == (0, "")
    assert calls == ["btrfs receive --chroot %s/data" % root]
    held = hold_all(root, 1)  # freed: it can be taken again
    for fd in held:
        os.close(fd)


def test_a_receive_on_a_full_server_waits_then_fails_with_nothing_received(root):
    held = hold_all(root, 2)
    try:
        status, err, calls = serve(root, receive_line(root), 2, wait=1)
    finally:
        for fd in held:
            os.close(fd)
    assert status == EXIT_NO_SLOT
    lines = err.splitlines()
    assert lines[0] == "btrfs-backup serve: waiting for a receive slot (2 busy)"
    assert lines[1].startswith("btrfs-backup serve: no receive slot came free in 1s (2 busy")
    assert calls == []  # btrfs receive never ran


def test_other_commands_never_wait_for_a_slot(root):
    held = hold_all(root, 1)
    try:
        line = SshEndpoint("nas", "/x").remote_line(["btrfs", "subvolume", "sync", str(root)])
        status, err, calls = serve(root, line, 1, wait=30)
    finally:
        for fd in held:
            os.close(fd)
    assert (status, err) == (0, "")
    assert calls == ["btrfs subvolume sync %s" % root]


def test_a_receive_that_makes_its_folder_takes_a_slot_as_any_receive(root):
    """`mkdir -p -- F && btrfs receive F`: the receive waits for a slot as any receive does."""
    endpoint = SshEndpoint("nas", str(root / "new"))
    endpoint.create_in_next_command(endpoint.path)
    line = endpoint.receiver()[1][-1]
    held = hold_all(root, 1)
    try:
        status, err, calls = serve(root, line, 1, wait=1)
    finally:
        for fd in held:
            os.close(fd)
    assert status == EXIT_NO_SLOT and err.startswith("btrfs-backup serve: waiting for a receive slot (1 busy)")
    assert calls == []  # btrfs receive never ran
    status, err, calls = serve(root, line, 1)
    assert (status, err) == (0, "") and calls == ["btrfs receive --chroot %s/new" % root]
