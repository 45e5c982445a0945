"""The gated send (host/gated_send.py): real processes, `sh -c` playing the remote line, its
`--no-data` stream a small valid one (the builder of test_stream_size), its real stream bytes."""

import hashlib
import os

import pytest

from engine.host.gated_send import GATE, GatedSend, gated_line
from engine.host.pipeline import EarlyStages, Node, Stage, run_stream
from engine.host.runner import CommandRunner
from engine.host.stream_size import StreamSizer
from test_stream_size import END, command, header, meta, subvol, update_extent

NO_DATA = header() + subvol() + b"".join(meta(b"f")) + update_extent(b"f", 0, 5 << 20) + command(END)
REAL = os.urandom(3 << 20)  # not a stream: the gate passes on whatever the real send writes


@pytest.fixture
def files(tmp_path):
    (tmp_path / "no-data").write_bytes(NO_DATA)
    (tmp_path / "real").write_bytes(REAL)
    return tmp_path


def gated(files, first="true", no_data=None, then=None):
    """argv of a gated command at `sh`: FIRST && cat NO-DATA && GATE && cat REAL (each replaceable)."""
    no_data = no_data or f"cat {files / 'no-data'}"
    then = then or f"cat {files / 'real'}"
    return ["sh", "-c", f"{gated_line(first, no_data)} && {then}"]


def digest(data):
    return hashlib.sha256(data).hexdigest()


def test_the_gated_line_reads_the_verdict_after_the_no_data_send():
    assert gated_line("{ A; } >&2", "btrfs send --no-data S") == \
        '{ A; } >&2 && btrfs send --no-data S && read -r verdict && [ "$verdict" = go ]'
    assert GATE.startswith("read -r verdict")


def test_go_lets_the_real_stream_follow_its_estimate_whole(files, tmp_path):
    out = tmp_path / "out"
    gate = GatedSend(CommandRunner(), gated(files, first="echo facts >&2"))
    sizer = gate.read_no_data(StreamSizer())
    assert sizer is not None and sizer.ended and sizer.data_bytes == 5 << 20
    assert gate.waiting and gate.said() == "facts\n"
    root = Node([Stage("send", gate.argv), Stage("sink", ["sh", "-c", f"cat > {out}"])], leaf="sink")
    result = run_stream(CommandRunner(), root, source=gate.go())
    assert result.failures == {} and result.source_said == "facts\n"
    assert digest(out.read_bytes()) == digest(REAL)  # nothing of the --no-data stream, all of the real one
    gate.close()


def test_go_into_a_stage_started_early_copies_the_stream_there(files, tmp_path):
    out = tmp_path / "out"
    sink = Stage("sink", ["sh", "-c", f"cat > {out}"])
    early = EarlyStages(CommandRunner())
    early.start(sink)
    gate = GatedSend(CommandRunner(), gated(files))
    assert gate.read_no_data(StreamSizer()) is not None
    result = run_stream(CommandRunner(), Node([Stage("send", gate.argv), sink], leaf="sink"), early=early,
                        source=gate.go())
    assert result.failures == {}
    assert digest(out.read_bytes()) == digest(REAL)
    gate.close()


@pytest.mark.parametrize("started_early", [False, True])
def test_a_reader_gone_fails_the_stream_and_ends_the_source(files, started_early):
    """Also through the copy into a stage started early: its reader gone, the source sees it."""
    sink = Stage("sink", ["sh", "-c", "head -c 1000 >/dev/null; exit 3"])
    early = None
    if started_early:
        early = EarlyStages(CommandRunner())
        early.start(sink)
    gate = GatedSend(CommandRunner(), gated(files, then="yes"))  # endless, until its reader goes
    assert gate.read_no_data(StreamSizer()) is not None
    result = run_stream(CommandRunner(), Node([Stage("send", gate.argv), sink], leaf="sink"), early=early,
                        source=gate.go())
    assert "sink" in result.failures["sink"]
    assert gate.proc.poll() is not None
    gate.close()


def test_stop_ends_the_command_at_its_gate_with_nothing_sent(files, tmp_path):
    marker = tmp_path / "sent"
    gate = GatedSend(CommandRunner(), gated(files, first="echo facts >&2", then=f"touch {marker}"))
    assert gate.read_no_data(StreamSizer()) is not None and gate.waiting
    assert gate.stop() == "facts\n"
    assert gate.proc.returncode != 0 and not marker.exists() and not gate.waiting
    gate.close()


@pytest.mark.parametrize("first, no_data", [
    ("echo 'cannot snapshot' >&2; false", None),   # the snapshot (or the lock file) failed
    ("true", "echo 'no --no-data' >&2; false"),     # the estimate's pass failed
])
def test_a_command_that_ends_before_its_gate_gives_no_estimate(files, tmp_path, first, no_data):
    marker = tmp_path / "sent"
    gate = GatedSend(CommandRunner(), gated(files, first=first, no_data=no_data, then=f"touch {marker}"))
    assert gate.read_no_data(StreamSizer()) is None
    assert not gate.waiting
    said = gate.stop()
    assert said.startswith(("cannot snapshot", "no --no-data")) and not marker.exists()
    gate.close()


def test_a_stream_that_is_not_one_raises_and_close_ends_the_command(files, tmp_path):
    (tmp_path / "garbage").write_bytes(b"not a stream at all" * 10)
    gate = GatedSend(CommandRunner(), gated(files, no_data=f"cat {tmp_path / 'garbage'}"))
    with pytest.raises(ValueError):
        gate.read_no_data(StreamSizer())
    gate.close()
    assert gate.proc.poll() is not None


def test_a_command_that_stalls_before_its_gate_times_out(files):
    gate = GatedSend(CommandRunner(), gated(files, no_data="sleep 30"))
    with pytest.raises(TimeoutError):
        gate.read_no_data(StreamSizer(), timeout=0.3)
    gate.close()
    assert gate.proc.poll() is not None
