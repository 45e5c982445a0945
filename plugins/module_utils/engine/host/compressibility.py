# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Whether a snapshot's data is worth compressing: a quick sample of its files, before the send.

Compressing data that does not compress (media, archives, encrypted files) only costs CPU at both
ends: on a fast link that is slower than no compression at all. `--compress auto` therefore reads
a small sample (the start of the largest files found in a bounded walk, and some small files) and
compresses it with zlib's fastest level, a proxy for zstd's ratio that the standard library has.
"""

from __future__ import annotations

import os
import zlib

INCOMPRESSIBLE = 0.9  # a sample that zlib -1 cannot shrink by 10 % is not worth zstd's CPU
WALK_LIMIT = 4000     # directory entries looked at, at most
LARGE_FILES = 24      # the largest files found, sampled at their start
CHUNK = 128 * 1024    # bytes read from each of them
SMALL_BUDGET = 1024 * 1024  # bytes read from small files, in walk order


def looks_compressible(ratio: float | None) -> bool | None:
    """Pure: None (no sample: compress, as asked) or whether the sampled ratio pays for zstd."""
    return None if ratio is None else ratio < INCOMPRESSIBLE


def sample_ratio(root: str) -> float | None:
    """Compressed / original size of a sample of the files below `root` (None if there is too
    little data to judge, or it cannot be read)."""
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
    if original < 64 * 1024:
        return None
    return packed / float(original)


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
