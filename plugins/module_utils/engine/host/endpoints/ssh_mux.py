# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The end of a run's own ssh connection masters, said over their control sockets in ssh's
connection-sharing protocol (OpenSSH's PROTOCOL.mux): what `ssh -O exit` says, without starting
an ssh process for it (~4 ms at the end of every run with an ssh end: 1.1-1.4 ms against 5.1 ms here).

Each message is a uint32 length, then a uint32 type and its fields. The client and the master
each say hello (type 1, protocol version 4); the client asks the master to terminate (type
0x10000005, with a request id) and the master answers ok (0x80000001, that id) as it exits, which
it often does before that answer is written: `ssh -O exit` takes a connection closed then as the
end too. Here the master has ended once its socket is gone (it removes it as it exits).
"""

from __future__ import annotations

import os
import struct
import time

_HELLO, _TERMINATE, _OK = 0x00000001, 0x10000005, 0x80000001
_VERSION = 4
_REQUEST_ID = 1
# A master that has not answered, or kept its socket, this long is asked again by `ssh -O exit`.
_TIMEOUT = 5.0
_GONE_POLL = 0.0005
# Longer than any hello with its extensions or any answer: anything longer is not a master.
_LONGEST_MESSAGE = 64 * 1024


def terminate_masters(folder: str, expected: int) -> bool:
    """Ask every master whose control socket is in `folder` (a run's private folder) to exit:
    True when there were `expected` of them and each ended; False otherwise (then each is asked
    by `ssh -O exit`, as before, which is harmless for one that ended already)."""
    try:
        sockets = [os.path.join(folder, name) for name in os.listdir(folder)]
    except OSError:
        return False
    if len(sockets) != expected:  # a master that is not listening there (yet, or any more)
        return False
    ended = [terminate(path) for path in sockets]  # every one is asked, whatever the others did
    return all(ended)


def terminate(socket_path: str) -> bool:
    """Ask the master listening at `socket_path` to exit: True once it has (its socket is gone)."""
    import socket  # here: a run with an ssh end only

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(_TIMEOUT)
            conn.connect(socket_path)
            conn.sendall(message(_HELLO, _VERSION) + message(_TERMINATE, _REQUEST_ID))
            if read_message(conn)[0] != _HELLO:
                return False
            try:
                answer = read_message(conn)
            except _Closed:
                answer = (_OK, _REQUEST_ID)  # it exited before its ok was written
            if answer != (_OK, _REQUEST_ID):
                return False
    except (OSError, ValueError):
        return False
    return _gone(socket_path)


def _gone(path: str) -> bool:
    deadline = time.monotonic() + _TIMEOUT
    while os.path.lexists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(_GONE_POLL)
    return True


def message(kind: int, field: int) -> bytes:
    """Pure: a message of `kind` with one uint32 field."""
    return struct.pack(">III", 8, kind, field)


def read_message(conn) -> tuple[int, int]:
    """(type, first field) of the next message from `conn`; ValueError for one no master sends
    (_Closed: the connection ended before it)."""
    (length,) = struct.unpack(">I", _read_exactly(conn, 4))
    if not 8 <= length <= _LONGEST_MESSAGE:
        raise ValueError("not a connection-sharing message: length %d" % length)
    return struct.unpack(">II", _read_exactly(conn, length)[:8])


class _Closed(ValueError):
    """The master closed the connection."""


def _read_exactly(conn, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise _Closed("the master closed the connection")
        data += chunk
    return data
