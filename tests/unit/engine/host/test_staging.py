"""The staging programs (real processes on a temporary folder): the sender frames a stream into
chunks after proving the staged ones, the receiver lands each chunk only once its size and sha256
are the sender's; a cut keeps every verified chunk and the next run sends only the rest."""

import hashlib
import os
import struct
import subprocess
import sys

import pytest

from engine.host.staging import STAGE_RECEIVER, STAGE_SENDER, parse_ages, remove_stale_here
from engine.model import resumable

CHUNK = 1000
STREAM = os.urandom(5 * CHUNK + 321)


def frame(stream, staged_hashes, tmp_path):
    """The sender's output for `stream` with those chunks staged: (exit status, output, stderr)."""
    hashes = tmp_path / "staged-hashes"
    hashes.write_text("\n".join(staged_hashes) + "\n")
    proc = subprocess.run([sys.executable, "-c", STAGE_SENDER, str(CHUNK), str(hashes), resumable.DIFFERS],
                          input=stream, capture_output=True)
    return proc.returncode, proc.stdout, proc.stderr.decode()


def land(framed, folder, limit=0, receive=()):
    """The receiver's verdict on `framed` in `folder`: (exit status, stderr); `receive` the argv
    of the receive fed as chunks land."""
    folder.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", STAGE_RECEIVER, str(folder), str(CHUNK), str(limit)] + list(receive),
                          input=framed, capture_output=True)
    return proc.returncode, proc.stderr.decode()


def staged(folder):
    """The landed chunks' bytes in order, and their hashes as the list records them."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".chunk"))
    data = b"".join((folder / n).read_bytes() for n in names)
    return data, resumable.parse_chunk_hashes((folder / resumable.CHUNK_HASHES).read_text())


def test_a_whole_stream_lands_in_verified_chunks(tmp_path):
    code, framed, _ = frame(STREAM, [], tmp_path)
    assert code == 0
    assert land(framed, tmp_path / "s") == (0, "")
    data, hashes = staged(tmp_path / "s")
    assert data == STREAM and len(hashes) == 6
    assert hashes[0] == hashlib.sha256(STREAM[:CHUNK]).hexdigest()
    assert (tmp_path / "s" / resumable.COMPLETE).read_text() == "%d\n" % len(STREAM)


@pytest.mark.parametrize("cut_at", [1, CHUNK + 5, 3 * CHUNK + 500, len(STREAM) - 1])
def test_a_cut_keeps_the_verified_chunks_and_the_rest_follows(tmp_path, cut_at):
    _, framed, _ = frame(STREAM, [], tmp_path)
    code, error = land(framed[:cut_at], tmp_path / "s")
    assert code != 0 and "cut" in error
    data, hashes = staged(tmp_path / "s")
    assert STREAM.startswith(data) and len(data) == len(hashes) * CHUNK
    assert not (tmp_path / "s" / resumable.COMPLETE).exists()
    code, rest, _ = frame(STREAM, hashes, tmp_path)
    assert code == 0
    # Only the chunks after the staged ones cross (framing: 9 + 4 + 4 + 32 bytes a chunk, 17 at the end).
    assert len(rest) <= len(STREAM) - len(data) + 6 * 49 + 17
    assert land(rest, tmp_path / "s") == (0, "")
    assert staged(tmp_path / "s")[0] == STREAM


def test_a_regenerated_stream_that_differs_is_refused_at_its_chunk(tmp_path):
    hashes = [hashlib.sha256(STREAM[i * CHUNK:(i + 1) * CHUNK]).hexdigest() for i in range(3)]
    hashes[1] = "f" * 64
    code, framed, error = frame(STREAM, hashes, tmp_path)
    assert code == 3 and framed == b""
    assert error.strip() == resumable.DIFFERS + " 1"


def test_a_shorter_regenerated_stream_differs(tmp_path):
    hashes = [hashlib.sha256(STREAM[i * CHUNK:(i + 1) * CHUNK]).hexdigest() for i in range(3)]
    code, _, error = frame(STREAM[:2 * CHUNK + 10], hashes, tmp_path)
    assert code == 3 and error.strip() == resumable.DIFFERS + " 2"


def _chunk(index, data, digest=None):
    blocks = struct.pack("<I", len(data)) + data if data else b""
    return (b"C" + struct.pack("<Q", index) + blocks + struct.pack("<I", 0)
            + (digest or hashlib.sha256(data).digest()))


@pytest.mark.parametrize("framed, message, landed", [
    (_chunk(0, b"x" * 10, digest=b"\0" * 32), "not the one the sender computed", 0),
    (_chunk(1, b"x" * 10), "chunk 1 arrived where chunk 0 was expected", 0),
    (_chunk(0, b"x" * (CHUNK + 1)), "larger than the chunk size", 0),
    (_chunk(0, b"x" * 10) + _chunk(1, b"y"), "not a staged stream", 1),  # a chunk after a short one
    (b"Z", "not a staged stream", 0),
    (_chunk(0, b"x" * CHUNK) + b"E" + struct.pack("<QQ", 2, 2 * CHUNK), "the stream ended after 2 chunks", 1),
])
def test_the_receiver_refuses_what_the_sender_did_not_send(tmp_path, framed, message, landed):
    code, error = land(framed, tmp_path / "s")
    assert code != 0 and message in error
    assert len(staged(tmp_path / "s")[1]) == landed
    assert not (tmp_path / "s" / resumable.COMPLETE).exists()


def test_the_staging_never_grows_past_the_announced_size(tmp_path):
    _, framed, _ = frame(STREAM, [], tmp_path)
    code, error = land(framed, tmp_path / "s", limit=2 * CHUNK)
    assert code != 0 and "announced size" in error
    assert len(staged(tmp_path / "s")[1]) == 2


def test_verified_chunks_are_received_as_they_land_and_a_cut_receive_is_stopped(tmp_path):
    received = tmp_path / "received"
    receive = ["sh", "-c", 'cat > "$0"', str(received)]
    _, framed, _ = frame(STREAM, [], tmp_path)
    code, _ = land(framed[:3 * CHUNK], tmp_path / "s", receive=receive)
    assert code != 0
    assert len(received.read_bytes()) <= 2 * CHUNK  # only verified chunks reached it, and it was stopped
    _, rest, _ = frame(STREAM, staged(tmp_path / "s")[1], tmp_path)
    assert land(rest, tmp_path / "s", receive=receive) == (0, "")
    assert received.read_bytes() == STREAM  # the staged chunks first, then the rest as it landed


def test_a_receive_that_fails_fails_the_landing(tmp_path):
    _, framed, _ = frame(STREAM, [], tmp_path)
    code, error = land(framed, tmp_path / "s", receive=["sh", "-c", "cat > /dev/null; exit 4"])
    assert code != 0 and "exit status 4" in error
    assert (tmp_path / "s" / resumable.COMPLETE).exists()  # staged whole: the next run only receives


def test_ages_are_measured_by_the_destinations_clock():
    listing = "1000.5 p20260101-000000.full\n990 other name\nbad line\n"
    assert parse_ages(listing, "1010\n") == {"p20260101-000000.full": 9.5, "other name": 20.0}
    assert parse_ages(listing, "") == {}


def test_a_servers_prune_removes_stale_staging_and_keeps_fresh(tmp_path):
    root = tmp_path / resumable.STAGING_FOLDER
    old, fresh, other = (root / "p20260101-000000.full", root / "p20260102-000000.full", root / "not-ours")
    for folder in (old, fresh, other):
        folder.mkdir(parents=True)
        (folder / "00000000.chunk").write_bytes(b"x")
    week_ago = os.stat(old).st_mtime - resumable.STALE_AGE - 60
    os.utime(old, (week_ago, week_ago))
    assert [s["key"] for s in remove_stale_here(str(tmp_path), None, check_mode=True)] == [old.name]
    assert old.exists()
    removed = remove_stale_here(str(tmp_path), None)
    assert [s["key"] for s in removed] == [old.name] and "7 days" in removed[0]["reason"]
    assert not old.exists() and fresh.exists() and other.exists()
