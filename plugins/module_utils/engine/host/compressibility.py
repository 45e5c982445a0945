# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Whether a stream's data is worth compressing: a quick sample of the data it carries, before the send.

Compressing data that does not compress (media, archives, encrypted files) only costs CPU at both
ends: on a fast link that is slower than no compression at all. `--compress auto` therefore reads
a small sample and compresses it with zlib's fastest level, a proxy for zstd's ratio that the
standard library has (compression.judge_sample decides). What is sampled is what the stream
carries: for a full send of a local snapshot, its files (the start of the largest found in a
bounded walk, and some small ones); for a local incremental, the changed file ranges that its
`--no-data` twin names, read from the snapshot; at a remote source (a pull), the stream's own
first bytes, through the same send command at that host.
"""

from __future__ import annotations

import os
import zlib

from . import btrfs
WALK_LIMIT = 4000     # directory entries looked at, at most
LARGE_FILES = 24      # the largest files found, sampled at their start
CHUNK = 128 * 1024    # bytes read from each of them
SMALL_BUDGET = 1024 * 1024  # bytes read from small files, in walk order
SAMPLE_BUDGET = 2 * 1024 * 1024  # bytes read from an incremental's changes or a remote stream
PIECE = 64 * 1024  # bytes read at each of the places sampled in an incremental's changes


def sample_stream_data(source, runner, snapshot_path: str, parent_path: str | None) -> tuple[str, int, int]:
    """(what was sampled, bytes sampled, bytes zlib -1 made of them) for the stream of `btrfs send
    [-p parent_path] snapshot_path` at `source`: see the module's docstring. Nothing that can be
    read is (0, 0): no evidence, never a failure."""
    if source.crosses_network:
        return ("the start of the stream at %s" % source.id,) + sample_stream_head(source, runner, snapshot_path,
                                                                                      parent_path)
    if parent_path is None:
        return ("the snapshot's data",) + sample_snapshot(snapshot_path)
    from .stream_size import changed_extents

    extents = changed_extents(source, runner, snapshot_path, parent_path)
    return ("the incremental's changed data",) + sample_extents(snapshot_path, extents or [])


def sample_snapshot(root: str) -> tuple[int, int]:
    """(bytes read, bytes zlib -1 made of them) of a sample of the files below `root`."""
    files, small = _walk(root)
    largest = sorted(files, reverse=True)[:LARGE_FILES]
    original = packed = 0
    compressor = zlib.compressobj(1)
    for size, path in largest:
        data = _read(path, CHUNK)
        original += len(data)
        packed += len(compressor.compress(data))
    budget = SMALL_BUDGET
    for path in small:
        if budget <= 0:
            break
        data = _read(path, budget)
        budget -= len(data)
        original += len(data)
        packed += len(compressor.compress(data))
    packed += len(compressor.flush())
    return original, packed


def sample_places(extents: list, budget: int = SAMPLE_BUDGET, piece: int = PIECE) -> list:
    """Pure: (path, offset, length) to read from `extents` ((path, file offset, size) of the file
    ranges a stream carries): all of them within `budget` bytes, else `budget // piece` pieces
    spread evenly over their bytes, so that no one file stands for the whole stream."""
    total = sum(size for _path, _offset, size in extents)
    if total <= budget:
        return [(path, offset, size) for path, offset, size in extents if size]
    count = budget // piece
    targets = [total * (2 * number + 1) // (2 * count) for number in range(count)]
    places, start, index = [], 0, 0
    for path, offset, size in extents:
        end = start + size
        while index < len(targets) and targets[index] < end:
            into = targets[index] - start
            places.append((path, offset + into, min(piece, size - into)))
            index += 1
        start = end
    return places


def sample_extents(root: str, extents: list) -> tuple[int, int]:
    """(bytes read, bytes zlib -1 made of them) of the places sample_places picks, read from the
    files below `root` (the snapshot the stream is sent from)."""
    original = packed = 0
    compressor = zlib.compressobj(1)
    for path, offset, length in sample_places(extents):
        try:
            fd = os.open(os.path.join(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # a name the stream uses only on the way (an orphan's), or gone
        try:
            data = os.pread(fd, length, offset)
        except OSError:
            data = b""
        finally:
            os.close(fd)
        original += len(data)
        packed += len(compressor.compress(data))
    return original, packed + len(compressor.flush())


def sample_stream_head(source, runner, snapshot_path: str, parent_path: str | None,
                       budget: int = SAMPLE_BUDGET, timeout: float = 60.0) -> tuple[int, int]:
    """(bytes read, bytes zlib -1 made of them) of the first `budget` bytes of the send stream at
    `source`: the send command the transfer runs there, cut short by `head` at that host."""
    import subprocess  # here: runs that sample nothing never pay for it (start-up time)

    _name, argv = source.sender(btrfs.send_argv(snapshot_path, parent_path), ["head", "-c", str(budget)])
    try:
        proc = runner.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return 0, 0
    try:
        data, _errors = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return 0, 0
    if proc.returncode != 0:
        return 0, 0  # a server that takes no such command (serve), ssh failing: no evidence
    return len(data), len(zlib.compress(data, 1))


def _walk(root):
    """(size, path) of the regular files met in a bounded breadth-first walk, and the small ones."""
    files, small, seen = [], [], 0
    folders = [root]
    while folders and seen < WALK_LIMIT:
        folder = folders.pop(0)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > WALK_LIMIT:
                break
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    if size >= CHUNK:
                        files.append((size, entry.path))
                    else:
                        small.append(entry.path)
            except OSError:
                continue
    return files, small


def _read(path, limit):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return b""
