# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""How many bytes a `btrfs send` stream will have, estimated from its `--no-data` twin (no file data read)."""

from __future__ import annotations

import struct
import time

from . import btrfs
from ..model.log import LOG


# The send stream (kernel fs/btrfs/send.h): a header, then commands, each a header and a payload
# of attributes (type, length, value). All numbers are little-endian.
MAGIC = b"btrfs-stream\0"
_STREAM_HEADER = struct.Struct("<13sI")  # magic, protocol version: 17 bytes
_COMMAND_HEADER = struct.Struct("<IHI")  # payload length, command, crc32c: 10 bytes
_ATTRIBUTE_HEADER = struct.Struct("<HH")  # attribute, value length: 4 bytes
_U64 = struct.Struct("<Q")

CMD_END = 21
CMD_UPDATE_EXTENT = 22  # --no-data's stand-in for the WRITE commands of a file range
LAST_CMD_OF_VERSION_1 = 22
ATTR_SIZE = 4
ATTR_PATH = 15
ATTR_FILE_OFFSET = 18

# File data per WRITE command: the kernel's send buffer (64 KiB in protocol 1, 144 KiB in
# protocol 2) less the 16 KiB it keeps for the command's other parts.
WRITE_DATA_SIZE = {1: 48 * 1024, 2: 128 * 1024}
# The DATA attribute's header: type and length; since protocol 2 the type alone (the data runs
# to the end of the command).
DATA_HEADER_SIZE = {1: _ATTRIBUTE_HEADER.size, 2: 2}


def write_commands_size(data_size: int, path_size: int, version: int = 1) -> int:
    """Pure: the bytes of the WRITE commands that carry `data_size` bytes of one file whose path
    in the stream has `path_size` bytes; each command holds its header, the PATH and FILE_OFFSET
    attributes and at most one chunk of data."""
    chunk = WRITE_DATA_SIZE[version]
    commands = -(-data_size // chunk)
    per_command = (_COMMAND_HEADER.size + _ATTRIBUTE_HEADER.size + path_size
                   + _ATTRIBUTE_HEADER.size + _U64.size + DATA_HEADER_SIZE[version])
    return data_size + commands * per_command


class StreamSizer:
    """Pure: reads a `btrfs send --no-data` stream in pieces cut anywhere (`feed`) and estimates
    the size of the same send with its data.

    Every command counts as it is, except each UPDATE_EXTENT, which counts as the WRITE commands
    the real send has in its place. `estimate` covers what was fed so far; `finish()` checks the
    stream is complete and returns it. A stream that is not a send stream raises ValueError.
    A stream with data (no UPDATE_EXTENT) is estimated at its own length.
    """

    def __init__(self, keep_extents: bool = False):
        self.version = None  # the send protocol, from the stream's header
        # With keep_extents: (path in the snapshot, file offset, size) of each UPDATE_EXTENT,
        # the file data the real stream carries (what a compression sample should read).
        self.extents = [] if keep_extents else None
        self.commands = 0  # complete commands read
        self.data_bytes = 0  # file data the real stream carries (the UPDATE_EXTENT sizes)
        self.stream_bytes = 0  # bytes fed
        self.ended = False  # the end command was read
        self._difference = 0  # the real stream's bytes minus the --no-data stream's
        self._pending = bytearray()  # a header or an UPDATE_EXTENT payload being gathered
        self._wanted = _STREAM_HEADER.size  # its length
        self._command = None  # (command, payload length) while its payload is read
        self._skipping = 0  # payload bytes still to pass over (commands other than UPDATE_EXTENT)

    @property
    def estimate(self) -> int:
        return self.stream_bytes + self._difference

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk).cast("B")
        position, size = 0, len(view)
        while position < size:
            if self.ended:
                raise ValueError(f"not a btrfs send stream: bytes follow its end command "
                                 f"(at byte {self.stream_bytes})")
            if self._skipping:
                step = min(self._skipping, size - position)
                self._skipping -= step
                self.stream_bytes += step
                position += step
                if not self._skipping:
                    self._end_command(None)
                continue
            step = min(self._wanted - len(self._pending), size - position)
            self._pending += view[position:position + step]
            self.stream_bytes += step
            position += step
            if self.version is None:
                self._check_magic()
            if len(self._pending) == self._wanted:
                unit = bytes(self._pending)
                self._pending.clear()
                self._take(unit)

    def finish(self) -> int:
        """The estimate of the complete stream; ValueError if the stream stopped short."""
        if self.version is None:
            raise ValueError(f"not a btrfs send stream: it ends after {self.stream_bytes} bytes, "
                             "before its header is complete")
        if self._pending or self._command:
            raise ValueError(f"the send stream ends inside a command (after {self.stream_bytes} bytes)")
        if not self.ended:
            raise ValueError(f"the send stream ends after {self.commands} commands without its end command")
        return self.estimate

    def _check_magic(self):
        start = bytes(self._pending[:len(MAGIC)])
        if not MAGIC.startswith(start):
            raise ValueError(f"not a btrfs send stream: it starts with {start!r}, not {MAGIC!r}")

    def _take(self, unit):
        """A header or an UPDATE_EXTENT payload has been gathered."""
        if self.version is None:
            self._take_stream_header(unit)
        elif self._command is None:
            self._take_command_header(unit)
        else:
            self._end_command(unit)

    def _take_stream_header(self, unit):
        _magic, version = _STREAM_HEADER.unpack(unit)
        if version not in WRITE_DATA_SIZE:
            raise ValueError(f"send stream version {version} is not supported "
                             f"(versions {', '.join(map(str, sorted(WRITE_DATA_SIZE)))} are)")
        self.version = version
        self._wanted = _COMMAND_HEADER.size

    def _take_command_header(self, unit):
        length, command, _crc = _COMMAND_HEADER.unpack(unit)
        if command == 0 or (self.version == 1 and command > LAST_CMD_OF_VERSION_1):
            raise ValueError(f"not a btrfs send stream: command {command} at byte "
                             f"{self.stream_bytes - len(unit)}")
        self._command = (command, length)
        if command == CMD_UPDATE_EXTENT:
            self._wanted = length  # gathered: its path and size are needed
            if length == 0:
                self._end_command(b"")
        else:
            self._skipping = length
            if length == 0:
                self._end_command(None)

    def _end_command(self, payload):
        """A command has been read: its payload if it is an UPDATE_EXTENT, else None (skipped)."""
        command, length = self._command
        self._command = None
        self._wanted = _COMMAND_HEADER.size
        self.commands += 1
        if command == CMD_END:
            self.ended = True
        elif command == CMD_UPDATE_EXTENT:
            start = self.stream_bytes - len(payload) - _COMMAND_HEADER.size
            data_size, path_size = update_extent_sizes(payload, start)
            self.data_bytes += data_size
            if self.extents is not None:
                self.extents.append(update_extent_range(payload, start))
            self._difference += (write_commands_size(data_size, path_size, self.version)
                                 - _COMMAND_HEADER.size - length)


def update_extent_sizes(payload, where: int) -> tuple:
    """Pure: (SIZE, length of PATH) of an UPDATE_EXTENT command's payload, which starts at byte
    `where` of the stream (named in the error of a malformed one)."""
    attributes = _update_extent_attributes(payload, where)
    return _U64.unpack(attributes[ATTR_SIZE])[0], len(attributes[ATTR_PATH])


def update_extent_range(payload, where: int) -> tuple:
    """Pure: (PATH as text, FILE_OFFSET, SIZE) of an UPDATE_EXTENT command's payload: the file
    range whose data the real stream carries."""
    attributes = _update_extent_attributes(payload, where)
    offset = attributes.get(ATTR_FILE_OFFSET)
    if offset is None or len(offset) != _U64.size:
        raise ValueError(f"the update-extent command at byte {where} has no file offset")
    return (bytes(attributes[ATTR_PATH]).decode("utf-8", "surrogateescape"), _U64.unpack(offset)[0],
            _U64.unpack(attributes[ATTR_SIZE])[0])


def _update_extent_attributes(payload, where):
    attributes, position = {}, 0
    while position < len(payload):
        if position + _ATTRIBUTE_HEADER.size > len(payload):
            raise ValueError(f"a cut attribute in the update-extent command at byte {where}")
        attribute, length = _ATTRIBUTE_HEADER.unpack_from(payload, position)
        position += _ATTRIBUTE_HEADER.size
        if position + length > len(payload):
            raise ValueError(f"attribute {attribute} runs past the end of the update-extent "
                             f"command at byte {where}")
        attributes[attribute] = payload[position:position + length]
        position += length
    size, path = attributes.get(ATTR_SIZE), attributes.get(ATTR_PATH)
    if size is None or path is None or len(size) != _U64.size:
        raise ValueError(f"the update-extent command at byte {where} has no path or no size")
    return attributes


def estimate_stream_size(endpoint, runner, snapshot_path: str, parent_path: str | None = None,
                         timeout: float = 300.0) -> int | None:
    """The bytes `btrfs send [-p parent_path] snapshot_path` at `endpoint` will write, from a
    `--no-data` send (metadata only); None when that cannot be had: btrfs missing or without
    --no-data, ssh failing, no answer within `timeout` seconds. The command is stopped before
    returning; an estimate is an extra and never fails a run."""
    sizer = read_no_data_send(endpoint, runner, snapshot_path, parent_path, timeout)
    return sizer.estimate if sizer else None


def read_no_data_send(endpoint, runner, snapshot_path: str, parent_path: str | None = None,
                      timeout: float = 300.0, keep_extents: bool = False) -> StreamSizer | None:
    """The StreamSizer that read the whole `--no-data` twin of `btrfs send [-p parent_path]
    snapshot_path` at `endpoint`: its `estimate`, and with `keep_extents` the file ranges whose
    data the send carries (`extents`); None as for an estimate, with the reason logged. One pass
    serves both."""
    import subprocess  # here: runs that estimate nothing never pay for it (start-up time)

    sizer = StreamSizer(keep_extents)
    send_argv = btrfs.send_argv(snapshot_path, parent_path, no_data=True)
    argv = endpoint.command(send_argv)
    deadline = time.monotonic() + timeout
    try:
        proc = runner.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        LOG.debug("no size estimate for %s: cannot start %s: %s", snapshot_path, argv[0], err)
        return None
    read = None
    try:
        errors = read_stream(proc, sizer, deadline)
        returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        errors += _waiting_output(proc.stderr)
        if returncode != 0:
            lines = errors.decode("utf-8", "replace").strip().splitlines()
            LOG.debug("no size estimate for %s: %s ended with exit status %d%s", snapshot_path,
                      argv[0], returncode, ": " + lines[-1] if lines else "")
        else:
            sizer.finish()
            read = sizer
    except Exception as err:
        # A bad stream (ValueError), the time limit, a read that failed: no estimate, no failure.
        LOG.debug("no size estimate for %s: %s", snapshot_path, err)
    finally:
        _stop(proc)
    return read


def read_stream(proc, sizer, deadline, until_end_command=False):
    """Feed `proc`'s stdout to `sizer` until it closes (or, `until_end_command`, until the stream's
    end command is read: a command that waits after it, host/gated_send.py); what came on stderr
    meanwhile, where it is a pipe (its last 64 KiB, for the reason of a failure). stderr is read
    too, so that the process never blocks on it, but its end is not waited for: a background ssh
    master may hold it open after the command has ended."""
    import os
    import selectors

    errors = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
        if proc.stderr is not None:
            selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
        while not (until_end_command and sizer.ended):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete stream after {sizer.stream_bytes} bytes within the time limit")
            for key, _events in selector.select(left):
                data = os.read(key.fd, 1 << 20)
                if key.data == "stderr":
                    errors = (errors + data)[-65536:]
                    if not data:
                        selector.unregister(key.fileobj)
                elif data:
                    sizer.feed(data)
                else:
                    return errors
    return errors


def _waiting_output(pipe):
    """What can be read from `pipe` now, without waiting for more."""
    import os

    os.set_blocking(pipe.fileno(), False)
    found = b""
    while True:
        try:
            data = os.read(pipe.fileno(), 1 << 16)
        except BlockingIOError:
            return found
        if not data:
            return found
        found += data


def _stop(proc):
    """Close the pipes (a writer still going gets EPIPE), kill the process if it runs, reap it."""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    proc.wait()
