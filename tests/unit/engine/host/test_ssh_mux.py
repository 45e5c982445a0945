"""Ending a run's ssh masters over their control sockets (engine.host.endpoints.ssh_mux): the
messages, and what counts as a master that ends (a socket that answers as one; real ssh masters
are told to exit in tests/integration/test_round_trips.py)."""

import os
import socket
import struct
import threading

import pytest

from engine.host.endpoints import ssh_mux
from engine.host.endpoints.ssh_mux import message, read_message, terminate, terminate_masters


@pytest.mark.parametrize("kind, field, wire", [
    (0x00000001, 4, "00000008" "00000001" "00000004"),   # hello, protocol version 4
    (0x10000005, 1, "00000008" "10000005" "00000001"),   # terminate, request 1
])
def test_messages(kind, field, wire):
    assert message(kind, field).hex() == wire


class _Pair:
    """read_message's side of a socket pair; `said` is what the other side wrote."""

    def __init__(self, said: bytes):
        self.mine, theirs = socket.socketpair()
        theirs.sendall(said)
        theirs.close()

    def __enter__(self):
        return self.mine

    def __exit__(self, *exc):
        self.mine.close()


@pytest.mark.parametrize("said, read", [
    (struct.pack(">III", 8, 0x80000001, 1), (0x80000001, 1)),
    (struct.pack(">IIII", 12, 0x00000001, 4, 0), (0x00000001, 4)),   # a hello with more after it
    (struct.pack(">II", 4, 1), ValueError),        # too short to be a message with a field
    (struct.pack(">I", 1 << 20), ValueError),      # longer than any a master sends
    (struct.pack(">III", 8, 1, 4)[:6], ValueError),  # cut: the master closed the connection
    (b"", ValueError),
])
def test_reading_a_message(said, read):
    with _Pair(said) as conn:
        if read is ValueError:
            with pytest.raises(ValueError):
                read_message(conn)
        else:
            assert read_message(conn) == read


def _master(path, answer, leaves=True):
    """A socket at `path` that answers one client's hello and request with `answer` (bytes) and,
    as a master that exits does (`leaves`), removes itself."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve():
        conn, _address = server.accept()
        with conn:
            conn.sendall(message(1, 4))
            conn.recv(24)
            if leaves:
                os.unlink(path)
            conn.sendall(answer)
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


OK = struct.pack(">III", 8, 0x80000001, 1)


@pytest.mark.parametrize("answer, leaves, ended", [
    (OK, True, True),
    (b"", True, True),     # it exits before its ok is written (OpenSSH's masters mostly do)
    (struct.pack(">III", 8, 0x80000001, 2), True, False),       # another request's answer
    (struct.pack(">IIII", 12, 0x80000002, 1, 0), False, False),  # permission denied: it stays
    (OK[:7], True, True),     # closed in the middle of its answer, and gone
    (OK[:7], False, False),   # closed, but its socket is still there: it did not end
    (b"", False, False),
])
def test_what_counts_as_a_master_that_ends(tmp_path, monkeypatch, answer, leaves, ended):
    monkeypatch.setattr(ssh_mux, "_TIMEOUT", 0.3)
    thread = _master(str(tmp_path / "socket"), answer, leaves)
    assert terminate(str(tmp_path / "socket")) is ended
    thread.join(5)


def test_a_master_that_keeps_its_socket_has_not_ended(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh_mux, "_TIMEOUT", 0.2)
    thread = _master(str(tmp_path / "socket"), OK, leaves=False)
    assert terminate(str(tmp_path / "socket")) is False
    thread.join(5)


def test_nothing_listening_is_no_end(tmp_path):
    assert terminate(str(tmp_path / "none")) is False
    (tmp_path / "file").write_text("not a socket")
    assert terminate(str(tmp_path / "file")) is False


def test_every_master_of_the_folder_is_told_and_its_socket_removed(tmp_path):
    threads = [_master(str(tmp_path / name), OK) for name in ("a", "b")]
    assert terminate_masters(str(tmp_path), 2) is True
    assert os.listdir(tmp_path) == []
    for thread in threads:
        thread.join(5)


@pytest.mark.parametrize("expected", [0, 1, 3])
def test_a_folder_without_the_expected_masters_is_left_to_ssh(tmp_path, expected):
    threads = [_master(str(tmp_path / name), OK) for name in ("a", "b")]
    assert terminate_masters(str(tmp_path), expected) is False
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # nothing was asked
    for name in ("a", "b"):
        assert terminate(str(tmp_path / name))
    for thread in threads:
        thread.join(5)
    assert terminate_masters(str(tmp_path / "missing"), 1) is False


def test_the_timeout_bounds_a_master_that_never_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh_mux, "_TIMEOUT", 0.2)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "silent"))
    server.listen(1)
    try:
        assert terminate(str(tmp_path / "silent")) is False
    finally:
        server.close()
