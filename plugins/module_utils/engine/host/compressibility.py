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
`--no-data` twin names (the pass that also estimates the stream's size), read from the snapshot. A remote source (a pull) is not sampled: that
would cost a remote command of its own.

The same walk, taken further, also sizes a small subvolume (walk_subvolume, Walked.tree): its files' bytes and its entries, which
bound what a full send of it can carry (resumable.full_stream_bound).
"""

from __future__ import annotations

import collections
import os
import zlib

WALK_LIMIT = 4000     # directory entries looked at for a sample, at most
# Entries a walk that sizes a subvolume looks at, at most (walk_subvolume): ~5 us each here, against
# ~35 us each for the `--no-data` pass that it spares a small subvolume's full send.
SIZE_WALK_LIMIT = 20000
LARGE_FILES = 24      # the largest files found, sampled at their start
CHUNK = 128 * 1024    # bytes read from each of them
SMALL_BUDGET = 1024 * 1024  # bytes read from small files, in walk order
SAMPLE_BUDGET = 1024 * 1024  # bytes read from an incremental's changes
PIECE = 32 * 1024  # bytes read at each of the places sampled in an incremental's changes
# zlib takes ~20 ms a MiB of random data here: once this much is read and it plainly does not
# compress, the rest is not read (a sample must not cost what not compressing saves).
EARLY_LOOK = 256 * 1024
PLAINLY_INCOMPRESSIBLE = 0.98
# An incremental's first look, before its sample: this much at the start of each of the first
# FIRST_LOOK_PLACES places of the sample (spread over the whole stream). Data that plainly does
# not compress there is not read further: ~2 ms of zlib here instead of ~9 for EARLY_LOOK.
FIRST_LOOK_PIECE = 8 * 1024
FIRST_LOOK_PLACES = 8
SNAPSHOT_DATA = "the snapshot's data"

#: The files of a subvolume that a bounded walk met in full: their bytes (apparent sizes) and how
#: many entries (files, folders, links, others) it holds.
TreeSize = collections.namedtuple("TreeSize", "file_bytes entries")
#: What one walk of a subvolume found: (size, path) of the files to sample, large and small, and
#: its TreeSize (None: the walk did not meet all of it).
Walked = collections.namedtuple("Walked", "files small tree")


class _Sample:
    """zlib -1 over the data added, in blocks of `block` bytes or more (each compressed alone, so
    that what was added so far is measured exactly); `plain` once enough of it plainly does not compress."""

    def __init__(self, block: int = PIECE):
        self.original = self.packed = 0
        self._block = block
        self._pending = bytearray()

    def add(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= self._block:
            self._pack()

    def _pack(self):
        if self._pending:
            self.original += len(self._pending)
            self.packed += len(zlib.compress(bytes(self._pending), 1))
            self._pending.clear()

    @property
    def plain(self) -> bool:
        return self.original >= EARLY_LOOK and self.packed >= PLAINLY_INCOMPRESSIBLE * self.original

    def result(self) -> tuple[int, int]:
        self._pack()
        return self.original, self.packed


def sample_stream_data(snapshot_path: str, parent_path: str | None, extents: list | None) -> tuple[str, int, int]:
    """(what was sampled, bytes sampled, bytes zlib -1 made of them) for the stream of `btrfs send
    [-p parent_path] snapshot_path` on this machine: see the module's docstring. `extents`: the
    file ranges an incremental carries (stream_size.read_no_data_send), None when unknown.
    Nothing that can be read is (0, 0): no evidence, never a failure."""
    if parent_path is None or extents is None:  # no --no-data send here: the snapshot's files, the best evidence left
        return (SNAPSHOT_DATA,) + sample_snapshot(snapshot_path)
    return ("the incremental's changed data",) + sample_extents(snapshot_path, extents)


def sample_snapshot(root: str) -> tuple[int, int]:
    """(bytes read, bytes zlib -1 made of them) of a sample of the files below `root`."""
    files, small, _tree = _walk(root, WALK_LIMIT)
    return _sample_files(files, small)


def walk_subvolume(root: str) -> Walked:
    """One walk of the subvolume at `root` that serves both its sample (sample_walked) and its
    size (Walked.tree: None when the bounded walk could not meet all of it, more than
    SIZE_WALK_LIMIT entries or a folder or file it could not look at)."""
    return Walked(*_walk(root, SIZE_WALK_LIMIT))


def sample_walked(walked: Walked) -> tuple[str, int, int]:
    """A full send's sample (sample_stream_data's answer) of the files a walk found."""
    return (SNAPSHOT_DATA,) + _sample_files(walked.files, walked.small)


def sample_and_size(root: str) -> tuple[tuple[str, int, int], TreeSize | None]:
    """A full send's sample of the files below `root` and their TreeSize, from one walk."""
    walked = walk_subvolume(root)
    return sample_walked(walked), walked.tree


def _sample_files(files, small):
    """The sample of the largest `files` and then the `small` ones ((size, path) each)."""
    largest = sorted(files, reverse=True)[:LARGE_FILES]
    sample = _Sample()
    for _size, path in largest:
        sample.add(_read(path, CHUNK))
        if sample.plain:
            return sample.result()
    budget = SMALL_BUDGET
    for _size, path in small:
        if budget <= 0 or sample.plain:
            break
        data = _read(path, budget)
        budget -= len(data)
        sample.add(data)
    return sample.result()


def sample_places(extents: list, budget: int = SAMPLE_BUDGET, piece: int = PIECE) -> list:
    """Pure: (path, offset, length) to read from `extents` ((path, file offset, size) of the file
    ranges a stream carries), at most `piece` bytes each: all of them within `budget` bytes, else
    `budget // piece` pieces spread evenly over their bytes, so that no one file stands for the
    whole stream. Every fourth first: a sample stopped early still spans the whole stream."""
    total = sum(size for _path, _offset, size in extents)
    if total <= budget:
        places = [(path, offset + into, min(piece, size - into))
                  for path, offset, size in extents for into in range(0, size, piece)]
        return places[::4] + places[1::4] + places[2::4] + places[3::4]
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
    return places[::4] + places[1::4] + places[2::4] + places[3::4]


def sample_extents(root: str, extents: list) -> tuple[int, int]:
    """(bytes read, bytes zlib -1 made of them) of the places sample_places picks, read from the
    files below `root` (the snapshot the stream is sent from); after a first look at the start
    of the first of them that finds data which plainly does not compress, only that look's."""
    places = sample_places(extents)
    first = [(path, offset, min(length, FIRST_LOOK_PIECE)) for path, offset, length in places[:FIRST_LOOK_PLACES]]
    look = _read_places(root, first, _Sample(FIRST_LOOK_PIECE))
    original, packed = look.result()
    if original and packed >= PLAINLY_INCOMPRESSIBLE * original:
        return original, packed
    return _read_places(root, places, _Sample()).result()


def _read_places(root, places, sample):
    for path, offset, length in places:
        if sample.plain:
            break
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
        sample.add(data)
    return sample


def _walk(root, limit):
    """(size, path) of the regular files among the first WALK_LIMIT entries of a breadth-first
    walk of at most `limit` entries, the small ones, and the TreeSize of the whole subvolume when
    the walk met all of it (None otherwise); only in `root`'s own subvolume (a nested one, which a
    send does not carry, has another device)."""
    files, small, seen, file_bytes, whole = [], [], 0, 0, True
    try:
        device = os.stat(root).st_dev
    except OSError:
        return files, small, None
    folders = [root]
    while folders and seen < limit:
        folder = folders.pop(0)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            whole = False
            continue
        for entry in entries:
            seen += 1
            if seen > limit:
                break
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_dev == device:
                        folders.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    file_bytes += size
                    if seen <= WALK_LIMIT:  # the sample's files: beyond these, only sized
                        (files if size >= CHUNK else small).append((size, entry.path))
            except OSError:
                whole = False
                continue
    whole = whole and not folders and seen <= limit
    return files, small, TreeSize(file_bytes, seen) if whole else None


def _read(path, limit):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return b""
