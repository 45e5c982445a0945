"""engine.host.stream_size: the size of a send stream from its --no-data twin, on hand-built streams."""

import logging
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from engine.host import btrfs
from engine.host.capabilities import EndToolsProbe
from engine.host.endpoints.local import LocalEndpoint
from engine.host.stream_size import StreamSizer, estimate_stream_size, write_commands_size

# Command and attribute numbers of the send stream (kernel fs/btrfs/send.h), written out again
# here so that the tests do not take them from the code they check.
SUBVOL, MKFILE, RENAME, WRITE, CLONE, TRUNCATE, CHOWN, UTIMES, END, UPDATE_EXTENT = \
    1, 3, 9, 15, 16, 17, 19, 20, 21, 22
A_UUID, A_CTRANSID, A_SIZE, A_UID, A_GID, A_MTIME, A_PATH, A_PATH_TO, A_FILE_OFFSET, A_DATA = \
    1, 2, 4, 6, 7, 10, 15, 16, 18, 19
A_CLONE_LEN = 24


# -- a tiny stream builder ------------------------------------------------------------------


def header(version=1):
    return b"btrfs-stream\0" + struct.pack("<I", version)


def tlv(attribute, value):
    return struct.pack("<HH", attribute, len(value)) + value


def u64(attribute, number):
    return tlv(attribute, struct.pack("<Q", number))


def command(number, *attributes):
    payload = b"".join(attributes)
    return struct.pack("<IHI", len(payload), number, 0) + payload  # the crc is not checked


def write(path, offset, data, version=1):
    """A WRITE command as the kernel makes it (since protocol 2 the DATA header has no length)."""
    data_attribute = tlv(A_DATA, data) if version == 1 else struct.pack("<H", A_DATA) + data
    return command(WRITE, tlv(A_PATH, path), u64(A_FILE_OFFSET, offset), data_attribute)


def update_extent(path, offset, size):
    return command(UPDATE_EXTENT, tlv(A_PATH, path), u64(A_FILE_OFFSET, offset), u64(A_SIZE, size))


def writes(path, offset, size, version=1):
    """The WRITE commands a real send has for `size` bytes of `path` from `offset` (chunked as the
    kernel does: 48 KiB of data per command in protocol 1, 128 KiB in protocol 2)."""
    chunk = 48 * 1024 if version == 1 else 128 * 1024
    out = b""
    for start in range(offset, offset + size, chunk):
        out += write(path, start, b"\xa5" * min(chunk, offset + size - start), version)
    return out


def subvol():
    return command(SUBVOL, tlv(A_PATH, b"data"), tlv(A_UUID, b"u" * 16), u64(A_CTRANSID, 7))


def meta(path):
    """The commands around a file's data: its creation, owner, times."""
    return (command(MKFILE, tlv(A_PATH, path)),
            command(CHOWN, tlv(A_PATH, path), u64(A_UID, 0), u64(A_GID, 0)),
            command(UTIMES, tlv(A_PATH, path), tlv(A_MTIME, b"t" * 12)))


def stream(*commands, version=1):
    return header(version) + b"".join(commands) + command(END)


def pair(files, version=1, extra=()):
    """(--no-data stream, real stream) for `files`: (path, [(offset, size), ...]) each."""
    no_data, real = [subvol()], [subvol()]
    for path, ranges in files:
        made, owned, timed = meta(path)
        no_data.append(made)
        real.append(made)
        for offset, size in ranges:
            no_data.append(update_extent(path, offset, size))
            real.append(writes(path, offset, size, version))
        no_data += [owned, timed]
        real += [owned, timed]
    no_data += list(extra)
    real += list(extra)
    return stream(*no_data, version=version), stream(*real, version=version)


def sized(data, pieces=None):
    """A StreamSizer fed `data` whole, or cut into pieces of `pieces` bytes, then finished."""
    sizer = StreamSizer()
    if pieces is None:
        sizer.feed(data)
    else:
        for start in range(0, len(data), pieces):
            sizer.feed(data[start:start + pieces])
    sizer.finish()
    return sizer


K = 1024
CASES = [
    pytest.param([], id="empty-subvolume"),
    pytest.param([(b"empty", [])], id="empty-file"),
    pytest.param([(b"small", [(0, 100)])], id="inline-file"),
    pytest.param([(b"exact", [(0, 48 * K)])], id="one-whole-chunk"),
    pytest.param([(b"over", [(0, 48 * K + 1)])], id="one-byte-over-a-chunk"),
    pytest.param([(b"big/file.bin", [(0, 1000 * K)])], id="many-chunks"),
    pytest.param([(b"sparse", [(0, 4 * K), (1024 * K, 4 * K), (8192 * K, 100 * K)])],
                 id="sparse-extents"),
    pytest.param([(b"a", [(0, 10)]), (b"dir/with a long name \xc3\xa9" * 8, [(0, 300 * K)]),
                  (b"c", [(0, 0)])], id="several-files-long-path-zero-size"),
]


@pytest.mark.parametrize("files", CASES)
@pytest.mark.parametrize("version", [1, 2])
def test_the_estimate_is_the_real_streams_length(files, version):
    no_data, real = pair(files, version)
    sizer = sized(no_data)
    assert sizer.estimate == len(real)
    assert sizer.data_bytes == sum(size for _path, ranges in files for _offset, size in ranges)
    assert sizer.version == version


def test_commands_other_than_update_extent_count_as_they_are():
    extra = (command(CLONE, u64(A_FILE_OFFSET, 0), u64(A_CLONE_LEN, 1 << 30), tlv(A_PATH, b"f")),
             command(RENAME, tlv(A_PATH, b"f"), tlv(A_PATH_TO, b"g")),
             command(TRUNCATE, tlv(A_PATH, b"g"), u64(A_SIZE, 5)))
    no_data, real = pair([(b"f", [(0, 70 * K)])], extra=extra)
    sizer = sized(no_data)
    assert sizer.estimate == len(real)
    assert sizer.data_bytes == 70 * K  # a clone carries no data, a truncate's SIZE is no data
    assert sizer.commands == 1 + 4 + 3 + 1  # subvol, the file's four, the three extra, end


def test_a_stream_with_data_is_its_own_length():
    _no_data, real = pair([(b"f", [(0, 200 * K)])])
    sizer = sized(real)
    assert sizer.estimate == len(real) and sizer.data_bytes == 0


@pytest.mark.parametrize("pieces", [1, 2, 3, 7, 10, 17, 4096])
def test_pieces_cut_anywhere_give_the_same_result(pieces):
    no_data, real = pair([(b"a", [(0, 10)]), (b"b/c", [(0, 200 * K), (400 * K, 1)])])
    whole, cut = sized(no_data), sized(no_data, pieces)
    assert (cut.estimate, cut.data_bytes, cut.commands) == \
        (whole.estimate, whole.data_bytes, whole.commands) == (len(real), 200 * K + 11, 11)


def test_the_changed_file_ranges_are_kept_when_asked():
    # What a compression sample of an incremental reads: each UPDATE_EXTENT's path, offset, size.
    no_data, _real = pair([(b"a", [(0, 10)]), (b"b/c", [(0, 200 * K), (400 * K, 1)])])
    sizer = StreamSizer(keep_extents=True)
    sizer.feed(no_data)
    sizer.finish()
    assert sizer.extents == [("a", 0, 10), ("b/c", 0, 200 * K), ("b/c", 400 * K, 1)]
    assert sized(no_data).extents is None  # an estimate keeps none


def test_an_update_extent_without_offset_is_refused_when_ranges_are_kept():
    sizer = StreamSizer(keep_extents=True)
    with pytest.raises(ValueError, match="no file offset"):
        sizer.feed(header() + command(UPDATE_EXTENT, tlv(A_PATH, b"f"), u64(A_SIZE, 9)) + command(END))


def test_the_estimate_grows_as_the_stream_is_fed():
    no_data, real = pair([(b"f", [(0, 100 * K)])])
    sizer, seen = StreamSizer(), []
    for byte in range(len(no_data)):
        sizer.feed(no_data[byte:byte + 1])
        seen.append(sizer.estimate)
    assert seen == sorted(seen) and seen[-1] == len(real) == sizer.finish()


@pytest.mark.parametrize("data, message", [
    pytest.param(b"", "ends after 0 bytes, before its header", id="empty"),
    pytest.param(b"btrfs-str", "ends after 9 bytes, before its header", id="cut-header"),
    pytest.param(b"ERROR: not a read-only subvolume\n", "not a btrfs send stream: it starts with",
                 id="an-error-message"),
    pytest.param(b"\x1f\x8b\x08\x00" + b"\0" * 40, "not a btrfs send stream", id="gzip"),
    pytest.param(b"btrfs-stream\0" + struct.pack("<I", 3), "version 3 is not supported",
                 id="unknown-version"),
    pytest.param(header() + command(0), "command 0 at byte 17", id="command-zero"),
    pytest.param(header(1) + command(25), "command 25 at byte 17", id="version-2-command-in-v1"),
    pytest.param(header() + command(END) + command(UTIMES, tlv(A_PATH, b"x")),
                 "bytes follow its end command", id="after-the-end"),
    pytest.param(header() + command(UPDATE_EXTENT, tlv(A_PATH, b"f")) + command(END),
                 "has no path or no size", id="update-extent-without-size"),
    pytest.param(header() + command(UPDATE_EXTENT, u64(A_SIZE, 9)) + command(END),
                 "has no path or no size", id="update-extent-without-path"),
    pytest.param(header() + command(UPDATE_EXTENT) + command(END), "has no path or no size",
                 id="update-extent-empty"),
    pytest.param(header() + struct.pack("<IHI", 6, UPDATE_EXTENT, 0) + struct.pack("<HH", A_PATH, 9)
                 + b"ab" + command(END), "runs past the end", id="attribute-too-long"),
    pytest.param(header() + struct.pack("<IHI", 2, UPDATE_EXTENT, 0) + b"ab" + command(END),
                 "a cut attribute", id="attribute-header-cut"),
])
@pytest.mark.parametrize("pieces", [None, 1])
def test_what_is_not_a_send_stream_is_refused(data, message, pieces):
    with pytest.raises(ValueError, match=message):
        sized(data, pieces)


def test_the_magic_is_checked_before_the_header_is_complete():
    sizer = StreamSizer()
    sizer.feed(b"btrfs")
    with pytest.raises(ValueError, match="it starts with b'btrfs_'"):
        sizer.feed(b"_")


TRUNCATED = update_extent(b"f", 0, 100 * K)


@pytest.mark.parametrize("cut", [
    pytest.param(lambda data: 17, id="after-the-header"),
    pytest.param(lambda data: 17 + 4, id="in-a-command-header"),
    pytest.param(lambda data: 17 + 10 + 3, id="in-a-skipped-payload"),
    pytest.param(lambda data: data.index(TRUNCATED) + 10, id="after-an-update-extents-header"),
    pytest.param(lambda data: data.index(TRUNCATED) + 20, id="in-an-update-extent"),
    pytest.param(lambda data: len(data) - 10, id="before-the-end-command"),
    pytest.param(lambda data: len(data) - 1, id="in-the-end-command"),
])
def test_a_truncated_stream_is_refused(cut):
    no_data, _real = pair([(b"f", [(0, 100 * K)])])
    sizer = StreamSizer()
    sizer.feed(no_data[:cut(no_data)])
    with pytest.raises(ValueError, match="ends (inside a command|after .* without its end command)"):
        sizer.finish()
    assert sizer.estimate > 0


@pytest.mark.parametrize("size, path, version, expected", [
    pytest.param(0, 5, 1, 0, id="nothing"),
    pytest.param(1, 5, 1, 1 + 10 + 4 + 5 + 12 + 4, id="one-byte"),
    pytest.param(48 * K, 0, 1, 48 * K + 30, id="one-chunk"),
    pytest.param(48 * K + 1, 0, 1, 48 * K + 1 + 2 * 30, id="two-chunks"),
    pytest.param(128 * K, 3, 2, 128 * K + 31, id="v2-one-chunk-short-data-header"),
    pytest.param(128 * K + 1, 3, 2, 128 * K + 1 + 2 * 31, id="v2-two-chunks"),
])
def test_write_commands_size(size, path, version, expected):
    assert write_commands_size(size, path, version) == expected


def test_the_write_builder_matches_write_commands_size():
    for version in (1, 2):
        assert len(writes(b"p", 0, 300 * K, version)) == write_commands_size(300 * K, 1, version)


# -- estimate_stream_size: the --no-data send as a process ------------------------------------


class StreamingRunner:
    """Records the argv it is asked to start and starts `stand_in` instead (a real process)."""

    def __init__(self, stand_in):
        self.stand_in = stand_in
        self.started = []
        self.procs = []

    def popen(self, argv, stdin=None, stdout=None, stderr=None):
        self.started.append(list(argv))
        proc = subprocess.Popen(self.stand_in, stdin=stdin, stdout=stdout, stderr=stderr)
        self.procs.append(proc)
        return proc


def python(code):
    return [sys.executable, "-c", code]


@pytest.fixture
def stream_file(tmp_path):
    no_data, real = pair([(b"f", [(0, 300 * K)]), (b"g", [(0, 5)])])
    path = tmp_path / "stream"
    path.write_bytes(no_data)
    return path, len(real)


def test_the_estimate_comes_from_a_no_data_send(stream_file):
    path, real_length = stream_file
    runner = StreamingRunner(["cat", str(path)])
    endpoint = LocalEndpoint("/src")
    assert estimate_stream_size(endpoint, runner, "/src/snapshot/s2", "/src/snapshot/s1") == real_length
    assert runner.started == [btrfs.send_argv("/src/snapshot/s2", "/src/snapshot/s1", no_data=True)]
    assert runner.started[0] == ["btrfs", "send", "--no-data", "-p", "/src/snapshot/s1", "/src/snapshot/s2"]
    assert runner.procs[0].returncode == 0


@pytest.mark.parametrize("stand_in", [
    pytest.param(python("import sys; sys.stderr.write('ERROR: unknown option --no-data\\n'); "
                        "sys.exit(1)"), id="old-btrfs"),
    pytest.param(["/nonexistent/btrfs"], id="command-missing"),
    pytest.param(python("import sys; sys.stdout.write('Permission denied\\n')"), id="not-a-stream"),
    pytest.param(python("import sys; sys.stdout.buffer.write(b'btrfs-stream\\0\\1\\0\\0\\0')"),
                 id="truncated"),
    pytest.param(None, id="stream-then-failure"),
])
def test_no_estimate_when_the_send_fails(stream_file, stand_in):
    path, _real_length = stream_file
    if stand_in is None:
        stand_in = ["sh", "-c", 'cat "$0"; exit 3', str(path)]
    runner = StreamingRunner(stand_in)
    assert estimate_stream_size(LocalEndpoint("/src"), runner, "/src/snapshot/s1") is None


def test_why_there_is_no_estimate_is_logged(caplog):
    runner = StreamingRunner(python("import sys; sys.stderr.write('ERROR: unknown option --no-data\\n');"
                                    "sys.exit(1)"))
    with caplog.at_level(logging.DEBUG, logger="btrfs_backup"):
        assert estimate_stream_size(LocalEndpoint("/src"), runner, "/src/snapshot/s1") is None
    assert "exit status 1: ERROR: unknown option --no-data" in caplog.text


def test_stderr_held_open_after_the_stream_does_not_delay_the_estimate(stream_file, tmp_path):
    """A background ssh master (ControlPersist) may keep the command's stderr open after it ended."""
    path, real_length = stream_file
    pid_file = tmp_path / "pid"
    holder = ["sh", "-c", 'cat "$0"; sleep 20 </dev/null >/dev/null & echo $! >"$1"', str(path), str(pid_file)]
    started = time.monotonic()
    try:
        assert estimate_stream_size(LocalEndpoint("/src"), StreamingRunner(holder), "/s", timeout=10) == real_length
        assert time.monotonic() - started < 5
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_no_estimate_past_the_time_limit_and_the_send_is_stopped():
    runner = StreamingRunner(python("import sys, time; sys.stdout.buffer.write(b'btrfs-stream');"
                                    "sys.stdout.flush(); time.sleep(60)"))
    assert estimate_stream_size(LocalEndpoint("/src"), runner, "/src/snapshot/s1", timeout=0.5) is None
    assert runner.procs[0].returncode is not None and runner.procs[0].returncode < 0


def test_a_send_that_writes_much_to_stderr_does_not_hang(stream_file):
    path, real_length = stream_file
    noisy = ["sh", "-c", 'head -c 1000000 /dev/zero >&2; cat "$0"', str(path)]
    assert estimate_stream_size(LocalEndpoint("/src"), StreamingRunner(noisy), "/s", timeout=30) == real_length


def test_the_ssh_endpoint_wraps_the_no_data_send(stream_file):
    from engine.host.endpoints.ssh import SshEndpoint

    path, real_length = stream_file
    runner = StreamingRunner(["cat", str(path)])
    endpoint = SshEndpoint("backup.example", "/src", sudo=True)
    assert estimate_stream_size(endpoint, runner, "/src/snapshot/s1") == real_length
    (argv,) = runner.started
    assert argv[0] == "ssh" and argv[-1] == "sudo -n btrfs send --no-data /src/snapshot/s1"


def test_one_no_data_send_gives_the_estimate_and_the_sample_of_an_incremental(stream_file, tmp_path):
    """The resumable decision's estimate and `--compress auto`'s sample of the changed data read
    the same `--no-data` send, once per run."""
    path, real_length = stream_file
    snapshot = tmp_path / "s2"
    snapshot.mkdir()
    (snapshot / "f").write_bytes(b"a" * 300 * K)  # the changed range the stream names
    runner = StreamingRunner(["cat", str(path)])
    ends = EndToolsProbe(runner)
    source = LocalEndpoint(str(tmp_path))
    assert ends.estimate(source, str(snapshot), "/src/snapshot/s1") == real_length
    what, sampled, packed = ends.sample(source, str(snapshot), "/src/snapshot/s1")
    assert what == "the incremental's changed data" and sampled > 0 and packed < sampled
    assert len(runner.started) == 1 and "--no-data" in runner.started[0]


def test_the_sample_in_its_own_thread_waits_for_the_estimates_pass(stream_file, tmp_path):
    """The sample asked from a thread (overlap.py) while the estimate reads the `--no-data` send:
    still one pass, and both get their answer from it."""
    from engine.host.overlap import InBackground

    path, real_length = stream_file
    snapshot = tmp_path / "s2"
    snapshot.mkdir()
    (snapshot / "f").write_bytes(b"a" * 300 * K)
    runner = StreamingRunner(python("import sys, time; time.sleep(0.3); sys.stdout.buffer.write(open(%r, 'rb').read())"
                                    % str(path)))
    ends = EndToolsProbe(runner)
    source = LocalEndpoint(str(tmp_path))
    sampling = InBackground(ends.sample, source, str(snapshot), "/src/snapshot/s1")
    assert ends.estimate(source, str(snapshot), "/src/snapshot/s1") == real_length
    assert sampling.result()[0] == "the incremental's changed data"
    assert len(runner.started) == 1
