# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""How one `btrfs send` reaches its destinations (pure): the tree of processes between the send
and each receiver, with compression where the stream crosses ssh, a rate limit and a buffer.

A Node (pipeline.py) is a chain of stages; a node with several children is fanned out (the
pipeline puts a `tee` there). Each leaf ends in one destination's receiver.

Compression (zstd) is used only where the stream crosses ssh and both ends have zstd:
- from a local source: one `zstd` after the send feeds every ssh destination that has zstd
  (each runs `zstd -d | btrfs receive` at its end); local destinations get the plain stream;
- from an ssh source: the source runs `btrfs send | zstd`, ssh destinations with zstd take
  that stream as it is, and one local `zstd -d` feeds all the others (a pull reads the source
  once and crosses its link once).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import posixpath

from . import btrfs
from ..model.compression import ZSTD
from .pipeline import Node, Stage

if TYPE_CHECKING:
    from typing import Callable, Iterable
    from .endpoints.base import Endpoint
    from ..model.stream_options import StreamOptions


def tool_size(size: int) -> str:
    """A size as pv -L and mbuffer -m take it: a whole number of KiB with their unit k."""
    return "%dk" % max(1, size // 1024)


class EndTools:
    """What the tools at one end of a transfer can do, as probed: zstd there, and whether its
    btrfs sends and receives protocol 2 streams."""

    __slots__ = ("zstd", "proto2")

    def __init__(self, zstd=False, proto2=False):
        self.zstd, self.proto2 = zstd, proto2


def send_flags(options: StreamOptions, source_tools: EndTools, receiver_tools: Iterable[EndTools]) -> list[str]:
    """The send protocol flags: version 2 with compressed data where the source and every
    receiver take it (data that btrfs already compressed crosses as it is)."""
    if options.send_protocol == "1":
        return []
    if options.send_protocol == "2" or (source_tools.proto2 and all(e.proto2 for e in receiver_tools)):
        return ["--proto", "2", "--compressed-data"]
    return []


def plan_stream(source: Endpoint, snapshot_path: str, parent_path: str | None, destinations: list[Endpoint],
                options: StreamOptions, ends: Callable, progress: bool = False,
                compressible: bool | None = None, checked: Iterable[Endpoint] = (),
                first: tuple[list[str], bool] | None = None) -> tuple[Node, bool, list[str]]:
    """The tree of stages for one send to `destinations` (endpoints). `ends(endpoint)` gives its
    EndTools (this machine's for None and for an endpoint here); `progress` puts a pv bar
    (a size estimate, or True for none) where the uncompressed stream flows at this machine;
    `compressible` False (a sample of the data did not compress) turns `auto` compression off;
    `checked`: destinations whose receive command also reads what arrived (arrival_check; the
    output of every receiver that can answer is kept); `first`: a command that the source runs
    before the send, in the send's own command (a remote source's lock file written: the send
    starts only once it is). Returns (root Node, whether the stream is compressed, the send
    protocol flags)."""
    here = ends(None)
    level = options.compress_level
    if compressible is False and not options.compress_explicit:
        level = None
    crossing_network = [d for d in destinations if d.crosses_network]
    receiver_tools = [ends(d) if d.receives_with_btrfs else EndTools() for d in destinations]
    flags = send_flags(options, ends(source), receiver_tools)
    send_argv = btrfs.send_argv(snapshot_path, parent_path, options.btrfs_debug, flags)

    compress_at_source = source.crosses_network and level is not None and here.zstd and ends(source).zstd
    zstd_dests = [d for d in crossing_network if level is not None and here.zstd and ends(d).zstd]
    plain_dests = [d for d in destinations if d not in zstd_dests]

    arrival = posixpath.basename(snapshot_path)
    checked = list(checked)

    def leaf(dest, compressed):
        return Node(_receiver_stages(dest, compressed, options, arrival if dest in checked else None), leaf=dest)

    if compress_at_source:
        root = Node([Stage(*source.sender(send_argv, _compress_argv(level), first), wire=True, remote=True)])
        root.children = [leaf(d, True) for d in zstd_dests]
        if plain_dests:
            decompress = Stage("zstd -d", [ZSTD, "-d", "-q", "-c"], meter=True)
            root.children.append(Node(_with_progress([decompress], progress),
                                      [leaf(d, False) for d in plain_dests]))
        return _single_chains(root), True, flags

    root = Node(_with_progress([Stage(*source.sender(send_argv, first=first), meter=True,
                                      remote=source.crosses_network)], progress))
    root.children = [leaf(d, False) for d in plain_dests]
    if zstd_dests:
        compress = Stage("zstd", _compress_argv(level), wire=True)
        root.children.append(Node([compress], [leaf(d, True) for d in zstd_dests]))
    return _single_chains(root), bool(zstd_dests), flags


def plan_staged_stream(source: Endpoint, snapshot_path: str, parent_path: str | None, destination: Endpoint,
                       options: StreamOptions, ends: Callable, framer_argv: list[str], stager: Callable,
                       compressible: bool | None = None) -> tuple[Node, bool, list[str]]:
    """The chain of one staged transfer (host/staging.py): the send, the program that frames it
    into verified chunks (`framer_argv`; its output is what this run sends: the meter), zstd where
    both ends have it, the rate limit and buffer, and `stager(decompress_argv)`'s (name, argv)
    that lands the chunks at `destination`. Returns (root Node, compressed, send protocol flags)."""
    here = ends(None)
    level = options.compress_level
    if compressible is False and not options.compress_explicit:
        level = None
    flags = send_flags(options, ends(source), [ends(destination)])
    send_argv = btrfs.send_argv(snapshot_path, parent_path, options.btrfs_debug, flags)
    compressed = level is not None and here.zstd and ends(destination).zstd
    stages = [Stage(*source.sender(send_argv)), Stage("chunks", framer_argv, meter=True)]
    if compressed:
        stages.append(Stage("zstd", _compress_argv(level), wire=True))
    if options.limit_rate:
        stages.append(Stage("pv (rate limit)", ["pv", "-q", "-L", tool_size(options.limit_rate)]))
    if options.buffer:
        stages.append(Stage("mbuffer", ["mbuffer", "-q", "-m", tool_size(options.buffer)]))
    stages.append(Stage(*stager([ZSTD, "-d", "-q"] if compressed else None)))
    return Node(stages, leaf=destination), compressed, flags


def _compress_argv(level):
    # -T0: one thread per core; zstd stores incompressible blocks as they are, at memory speed.
    return [ZSTD, "-q", "-c", "-T0", "-%d" % level]


def _with_progress(stages, progress):
    if progress is False or progress is None:
        return stages
    size = [] if progress is True else ["-s", str(int(progress))]
    return stages + [Stage("pv", ["pv"] + size, capture_stderr=False)]


def receive_stage(dest: Endpoint, compressed: bool, options: StreamOptions, arrival: str | None = None) -> Stage:
    """The stage that receives a stream at `dest` (decompressing it first where `compressed`);
    with `arrival`, its command also answers what arrived under that name (arrival_check)."""
    return _receiver_stages(dest, compressed, options, arrival)[-1]


def _receiver_stages(dest, compressed, options, arrival=None):
    stages = []
    if options.limit_rate:
        stages.append(Stage("pv (rate limit)", ["pv", "-q", "-L", tool_size(options.limit_rate)]))
    if options.buffer:
        stages.append(Stage("mbuffer", ["mbuffer", "-q", "-m", tool_size(options.buffer)]))
    decompress = [ZSTD, "-d", "-q"] if compressed else None
    receiver = dest.receiver(options.btrfs_debug, decompress, arrival=arrival) if arrival is not None \
        else dest.receiver(options.btrfs_debug, decompress)
    stages.append(Stage(*receiver, answers=dest.answers_arrival))
    return stages


def _single_chains(root):
    """Merge a node with its only child into one chain (nothing to fan out there)."""
    while len(root.children) == 1 and root.leaf is None:
        child = root.children[0]
        root = Node(root.stages + child.stages, child.children, child.leaf)
    root.children = [_single_chains(child) for child in root.children]
    return root
