"""The stream's plan (pure) and the pipeline that runs it (real processes: printf, cat, false)."""

import os

import pytest

from engine.host.capabilities import end_tools_from, progs_version
from engine.host.endpoints.location import parse_location
from engine.model.errors import ConfigError, TransferError
from engine.host.pipeline import EarlyStages, Node, Stage, run_pipeline, run_stream
from engine.host.runner import CommandRunner
from engine.host.streams import EndTools, plan_stream
from engine.model.stream_options import StreamOptions
from engine.model.compression import parse_compress
from engine.run.transfer import progress_line

LOCAL = parse_location("/src/data")
REMOTE_SRC = parse_location("ssh://root@src.example/data")
A, B = parse_location("/backup/a"), parse_location("/backup/b")
SSH1, SSH2 = parse_location("ssh://root@s1.example/b"), parse_location("ssh://root@s2.example/b")
SINK = parse_location("shell://cat > /tmp/stream")
BARE = parse_location("ssh://root@bare.example/b")  # a host without zstd


def ends(endpoint):
    if endpoint is BARE:
        return EndTools(zstd=False, proto2=False)
    return EndTools(zstd=True, proto2=True)


def shape(node):
    """The tree as nested tuples of stage names; a leaf ends with its destination's id."""
    names = tuple(s.name.split(" on ")[0] for s in node.stages)
    if node.leaf is not None:
        return names + ("-> " + node.leaf.id,)
    return names + (tuple(shape(c) for c in node.children),)


PLANS = {
    "local to local: one chain, never compressed": (
        LOCAL, [A], {}, ("btrfs send", "btrfs receive", "-> /backup/a"), False),
    "local to two local: one send, fanned out": (
        LOCAL, [A, B], {}, ("btrfs send", (("btrfs receive", "-> /backup/a"), ("btrfs receive", "-> /backup/b"))), False),
    "push to ssh: compressed": (
        LOCAL, [SSH1], {}, ("btrfs send", "zstd", "btrfs receive", "-> " + SSH1.id), True),
    "push with compress none": (
        LOCAL, [SSH1], {"compress": "none"}, ("btrfs send", "btrfs receive", "-> " + SSH1.id), False),
    "local and two ssh: the plain stream to local, one zstd for both ssh": (
        LOCAL, [A, SSH1, SSH2], {},
        ("btrfs send", (("btrfs receive", "-> /backup/a"),
                        ("zstd", (("btrfs receive", "-> " + SSH1.id), ("btrfs receive", "-> " + SSH2.id))))), True),
    "a host without zstd gets the plain stream": (
        LOCAL, [BARE], {"compress": "zstd:7"}, ("btrfs send", "btrfs receive", "-> " + BARE.id), False),
    "pull to two local: compressed at the source, decompressed once here": (
        REMOTE_SRC, [A, B], {},
        ("btrfs send | zstd", "zstd -d", (("btrfs receive", "-> /backup/a"), ("btrfs receive", "-> /backup/b"))), True),
    "ssh to ssh: compressed end to end": (
        REMOTE_SRC, [SSH1], {}, ("btrfs send | zstd", "btrfs receive", "-> " + SSH1.id), True),
    "rate limit and buffer before each receiver": (
        LOCAL, [A, SINK], {"limit_rate": "20M", "buffer": "64M"},
        ("btrfs send", (("pv (rate limit)", "mbuffer", "btrfs receive", "-> /backup/a"),
                        ("pv (rate limit)", "mbuffer", "shell command 'cat > /tmp/stream'", "-> " + SINK.id))), False),
}


@pytest.mark.parametrize("name", list(PLANS))
def test_the_stream_plan(name):
    source, dests, settings, expected, compressed = PLANS[name]
    root, was_compressed, _flags = plan_stream(source, "/snap/s2", "/snap/s1", dests, StreamOptions(**settings), ends)
    assert shape(root) == expected
    assert was_compressed == compressed
    assert sorted(leaf.id for leaf, _path in root.leaves()) == sorted(d.id for d in dests)


def test_the_remote_commands_are_quoted_pipes():
    root, _, _ = plan_stream(REMOTE_SRC, "/snap/it's", None, [SSH1], StreamOptions(), ends)
    send, receive = root.stages[0].argv, root.stages[1].argv
    assert send[-1] == "btrfs send --proto 2 --compressed-data '/snap/it'\"'\"'s' | zstd -q -c -T0 -3"
    assert receive[-1] == "zstd -d -q | btrfs receive /b"


@pytest.mark.parametrize("source_tools, receivers, setting, flags", [
    (EndTools(proto2=True), [EndTools(proto2=True)], "auto", ["--proto", "2", "--compressed-data"]),
    (EndTools(proto2=True), [EndTools(proto2=True), EndTools(proto2=False)], "auto", []),
    (EndTools(proto2=False), [EndTools(proto2=True)], "auto", []),
    (EndTools(proto2=True), [EndTools(proto2=True)], "1", []),
    (EndTools(proto2=False), [EndTools(proto2=False)], "2", ["--proto", "2", "--compressed-data"]),
])
def test_send_protocol(source_tools, receivers, setting, flags):
    from engine.host.streams import send_flags
    assert send_flags(StreamOptions(send_protocol=setting), source_tools, receivers) == flags


def test_a_shell_sink_keeps_protocol_1():
    root, _, flags = plan_stream(LOCAL, "/snap/s", None, [A, SINK], StreamOptions(), ends)
    assert flags == []


@pytest.mark.parametrize("text, level, explicit", [
    ("auto", 3, False), (None, 3, False), ("none", None, False), ("zstd", 3, True), ("zstd:19", 19, True),
    ("ZSTD:1", 1, True),
])
def test_parse_compress(text, level, explicit):
    assert parse_compress(text) == (level, explicit)


@pytest.mark.parametrize("text", ["gzip", "zstd:0", "zstd:20", "zstd:", "zstd:x", "3"])
def test_parse_compress_refuses(text):
    with pytest.raises(ConfigError, match="compress must be auto, none, zstd or zstd:LEVEL"):
        parse_compress(text)


@pytest.mark.parametrize("version, zstd, stream_version, proto2", [
    ("btrfs-progs v6.2\n", True, "2\n", True),
    ("btrfs-progs v6.2\n", True, "1\n", False),
    ("btrfs-progs v5.16.2\n", True, "2\n", False),
    ("btrfs-progs v6.0\n", False, None, True),
    ("", False, None, False),
    ("something else", True, "", False),
])
def test_end_tools_from_probes(version, zstd, stream_version, proto2):
    found = end_tools_from(version, zstd, stream_version)
    assert (found.zstd, found.proto2) == (zstd, proto2)


def test_progs_version():
    assert progs_version("btrfs-progs v6.10.1 \n-EXPERIMENTAL") == (6, 10)
    assert progs_version("nope") is None


@pytest.mark.parametrize("sent, seconds, estimate, text", [
    (50 * 1024 ** 2, 10, 200 * 1024 ** 2, "50.0 MiB of about 200.0 MiB (25%), 5.0 MiB/s, about 30s left"),
    (50 * 1024 ** 2, 10, None, "50.0 MiB, 5.0 MiB/s"),
    (300 * 1024 ** 2, 10, 200 * 1024 ** 2, "300.0 MiB, 30.0 MiB/s"),  # past the estimate: no ETA
    (1024 ** 3, 100, 50 * 1024 ** 3, "1.0 GiB of about 50.0 GiB (2%), 10.2 MiB/s, about 1h 21m left"),
])
def test_progress_line(sent, seconds, estimate, text):
    assert progress_line(sent, seconds, estimate) == text


# -- the pipeline, with real processes ----------------------------------------------------------


def test_a_fanned_out_stream_reaches_every_leaf(tmp_path):
    outs = [tmp_path / ("out%d" % i) for i in range(3)]
    leaves = [Node([Stage("write %d" % i, ["sh", "-c", 'cat > "$0"', str(out)])], leaf=i) for i, out in enumerate(outs)]
    root = Node([Stage("produce", ["sh", "-c", "seq 1 200000"], meter=True)], leaves)
    result = run_stream(CommandRunner(), root)
    expected = "".join("%d\n" % n for n in range(1, 200001))
    assert result.failures == {}
    assert result.bytes_sent == len(expected)
    assert all(out.read_text() == expected for out in outs)


def test_a_failing_leaf_does_not_stop_the_others(tmp_path):
    good = tmp_path / "good"
    root = Node([Stage("produce", ["sh", "-c", "seq 1 300000"], meter=True)], [
        Node([Stage("broken receiver", ["sh", "-c", "head -c 10 >/dev/null; echo disk full >&2; exit 3"])], leaf="bad"),
        Node([Stage("receiver", ["sh", "-c", 'cat > "$0"', str(good)])], leaf="good"),
    ])
    result = run_stream(CommandRunner(), root)
    assert set(result.failures) == {"bad"}
    assert result.failures["bad"] == "broken receiver failed (exit status 3): disk full"
    assert good.read_text().count("\n") == 300000


def test_a_failing_source_fails_every_leaf(tmp_path):
    root = Node([Stage("btrfs send", ["sh", "-c", "echo no such subvolume >&2; exit 1"])], [
        Node([Stage("r1", ["cat"])], leaf=1), Node([Stage("r2", ["cat"])], leaf=2)])
    result = run_stream(CommandRunner(), root)
    assert result.failures == {1: "btrfs send failed (exit status 1): no such subvolume",
                               2: "btrfs send failed (exit status 1): no such subvolume"}


def test_run_pipeline_raises_naming_the_stage():
    with pytest.raises(TransferError, match="btrfs receive failed \\(exit status 1\\): ERROR: nope"):
        run_pipeline(CommandRunner(), [Stage("btrfs send", ["true"]),
                                       Stage("btrfs receive", ["sh", "-c", "echo ERROR: nope >&2; exit 1"])])


def _receiver(out, answer="arrived"):
    """A receiver that keeps what it read in `out`, then answers (its output is kept: Stage.answers)."""
    return Stage("receiver", ["sh", "-c", 'cat > "$0"; echo "$1"', str(out), answer], answers=True)


def _start(early, stage, beside):
    """EarlyStages.start, or its start in the background (start_beside: take and give_up wait for it)."""
    (early.start_beside if beside else early.start)(stage)


@pytest.mark.parametrize("beside", [False, True], ids=["started", "started-beside"])
def test_a_receiver_started_early_is_taken_by_its_stream(tmp_path, beside):
    out = tmp_path / "out"
    early = EarlyStages(CommandRunner())
    _start(early, _receiver(out), beside)
    root = Node([Stage("produce", ["sh", "-c", "seq 1 100000"], meter=True), _receiver(out)], leaf="x")
    result = run_stream(CommandRunner(), root, early=early)
    assert result.failures == {}
    assert out.read_text() == "".join("%d\n" % n for n in range(1, 100001))
    assert result.answers == {"x": "arrived\n"}
    assert early.take(_receiver(out)) is None  # taken once


@pytest.mark.parametrize("beside", [False, True], ids=["started", "started-beside"])
def test_a_receiver_started_early_that_gets_no_stream_reads_nothing(tmp_path, beside):
    out = tmp_path / "out"
    early = EarlyStages(CommandRunner())
    _start(early, Stage("receiver", ["sh", "-c", 'wc -c > "$0"', str(out)]), beside)
    early.give_up()
    assert out.read_text().strip() == "0"


def test_a_stream_whose_receiver_changed_starts_its_own_and_the_early_one_reads_nothing(tmp_path):
    early_out, out = tmp_path / "early", tmp_path / "out"
    early = EarlyStages(CommandRunner())
    early.start(Stage("receiver", ["sh", "-c", 'wc -c > "$0"', str(early_out)]))  # another command line
    root = Node([Stage("produce", ["sh", "-c", "seq 1 1000"], meter=True), _receiver(out)], leaf="x")
    result = run_stream(CommandRunner(), root, early=early)
    assert result.failures == {}
    assert out.read_text().count("\n") == 1000
    assert early_out.read_text().strip() == "0"


def test_a_failing_receiver_started_early_fails_its_leaf(tmp_path):
    broken = Stage("receiver", ["sh", "-c", "cat > /dev/null; echo ERROR: no space >&2; exit 1"])
    early = EarlyStages(CommandRunner())
    early.start(broken)
    result = run_stream(CommandRunner(), Node([Stage("produce", ["seq", "1", "10"]), broken], leaf="x"), early=early)
    assert result.failures == {"x": "receiver failed (exit status 1): ERROR: no space"}


def test_progress_is_reported_while_a_stream_runs():
    ticks = []
    root = Node([Stage("slow", ["sh", "-c", "for i in 1 2 3 4 5 6; do echo line; sleep 0.1; done"], meter=True),
                 Stage("sink", ["cat"])], leaf="x")
    run_stream(CommandRunner(), root, on_progress=lambda sent, seconds: ticks.append(sent), interval=0.15)
    assert len(ticks) >= 2 and ticks == sorted(ticks)


@pytest.mark.parametrize("source, dests, expected", [
    (LOCAL, [A], ["btrfs send", "pv", "btrfs receive"]),
    # A pull shows the plain stream where it is decompressed here, before the fan-out.
    (REMOTE_SRC, [A, B], ["btrfs send | zstd on src.example", "zstd -d", "pv"]),
])
def test_the_progress_bar_sits_where_the_plain_stream_flows_here(source, dests, expected):
    root, _, _ = plan_stream(source, "/snap/s", None, dests, StreamOptions(), ends, progress=123456)
    chain = root.stages
    assert [s.name for s in chain][:len(expected)] == expected
    bar = next(s for s in chain if s.name == "pv")
    assert bar.argv == ["pv", "-s", "123456"] and not bar.capture_stderr


# An ssh stage through a shared connection writes nothing itself (the master writes to its pipe):
# played here by a shell that leaves the writing to its child, so its own count is ~0.
WRITES_THROUGH_A_CHILD = 'cat "$0"; :'


@pytest.mark.parametrize("fan_out", [False, True])
def test_an_ssh_stages_bytes_are_counted_by_the_process_here_that_reads_them(tmp_path, fan_out):
    data = tmp_path / "stream"
    data.write_bytes(os.urandom(3 << 20))
    outs = [tmp_path / "out0", tmp_path / "out1"] if fan_out else [tmp_path / "out0"]
    leaves = [Node([Stage("receive %d" % i, ["sh", "-c", 'cat > "$0"', str(out)])], leaf=i) for i, out in enumerate(outs)]
    source = Stage("btrfs send on far", ["sh", "-c", WRITES_THROUGH_A_CHILD, str(data)], meter=True, wire=True,
                   remote=True)
    root = Node([source], leaves)  # one leaf: one chain, read by its receive; two: by the tee
    result = run_stream(CommandRunner(), root)
    assert result.failures == {}
    # What the reader read: the stream, and a few KiB its program's loader read at its start.
    assert 3 << 20 <= result.bytes_sent < (3 << 20) + 64 * 1024
    assert result.wire_bytes == {i: result.bytes_sent for i in range(len(outs))}


def test_an_ssh_stage_read_only_by_another_ssh_stage_is_not_counted(tmp_path):
    """A relay whose stream passes from one ssh connection straight to the other: compressed, its
    size unknown here (None), never the ssh clients' own few bytes."""
    data = tmp_path / "stream"
    data.write_bytes(os.urandom(1 << 20))
    out = tmp_path / "out"
    root = Node([Stage("btrfs send | zstd on far", ["sh", "-c", WRITES_THROUGH_A_CHILD, str(data)], wire=True, remote=True),
                 Stage("btrfs receive on other", ["sh", "-c", 'cat > "$0"; :', str(out)], remote=True)], leaf="relayed")
    result = run_stream(CommandRunner(), root)
    assert result.failures == {} and out.stat().st_size == 1 << 20
    assert result.bytes_sent is None and result.wire_bytes == {"relayed": None}
