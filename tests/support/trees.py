"""Deterministic test trees: fill a directory, change it a little, checksum and compare trees."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

MiB = 1 << 20
SMALL_FILES_PER_DIR = 250


class TreeSummary(NamedTuple):
    """What write_mixed_tree wrote."""

    files: int  # regular files
    bytes: int


class TreeChanges(NamedTuple):
    """What modify_tree did (relative paths)."""

    modified: List[str]
    added: List[str]
    removed: List[str]
    bytes: int


def _random_bytes(rng: random.Random, n: int) -> bytes:
    # getrandbits is C-speed (~500 MB/s) and, unlike Random.randbytes, exists on 3.8.
    return rng.getrandbits(n * 8).to_bytes(n, "little") if n > 0 else b""


def _chunk_rng(seed: int, file_no: int, chunk_no: int) -> random.Random:
    # Seeded per chunk: every MiB differs (no cheap dedup/compression) yet is reproducible.
    return random.Random(f"{seed}/{file_no}/{chunk_no}")


def write_file(path: PathLike, size: int, seed: int = 0, file_no: int = 0, chunk: int = MiB) -> int:
    """Write *size* deterministic pseudo-random bytes to *path* in *chunk*-sized writes."""
    written = 0
    with open(path, "wb") as f:
        chunk_no = 0
        while written < size:
            n = min(chunk, size - written)
            f.write(_random_bytes(_chunk_rng(seed, file_no, chunk_no), n))
            written += n
            chunk_no += 1
    return written


def write_mixed_tree(
    root: PathLike,
    n_small: int = 1000,
    small_size: int = 4096,
    large_files: Sequence[int] = (),
    seed: int = 0,
    specials: bool = True,
) -> TreeSummary:
    """Fill *root* (created if needed) with a reproducible mix of files.

    - *n_small* small files of ``small_size/2 .. 3*small_size/2`` bytes under
      ``small/dNNN/`` (SMALL_FILES_PER_DIR per directory);
    - one ``large/large-NN.bin`` per entry of *large_files* (sizes in bytes);
    - with *specials*: an empty file, an empty dir, nested dirs, an executable,
      a mode-0600 file, a name with spaces and non-ASCII, a relative symlink,
      an absolute dangling symlink and a directory symlink.

    The same arguments always produce the same tree.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"small/{seed}")
    files = 0
    total = 0

    for i in range(n_small):
        d = root / "small" / f"d{i // SMALL_FILES_PER_DIR:03d}"
        if i % SMALL_FILES_PER_DIR == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(small_size // 2, small_size + small_size // 2) if small_size > 1 else small_size
        (d / f"f{i:06d}.dat").write_bytes(_random_bytes(rng, size))
        files += 1
        total += size

    if large_files:
        (root / "large").mkdir(exist_ok=True)
    for i, size in enumerate(large_files):
        total += write_file(root / "large" / f"large-{i:02d}.bin", size, seed, file_no=i)
        files += 1

    if specials:
        s = root / "special"
        (s / "empty-dir").mkdir(parents=True, exist_ok=True)
        (s / "nested" / "a" / "b" / "c").mkdir(parents=True, exist_ok=True)
        (s / "empty-file").write_bytes(b"")
        files += 1
        content = {
            "nested/a/b/c/deep.txt": b"deep\n",
            "script.sh": b"#!/bin/sh\necho hello\n",
            "secret": _random_bytes(rng, 100),
            "name with spaces \u00e9\u00e8.txt": b"unicode\n",
        }
        for rel, data in content.items():
            (s / rel).write_bytes(data)
            files += 1
            total += len(data)
        os.chmod(s / "script.sh", 0o755)
        os.chmod(s / "secret", 0o600)
        os.symlink("nested/a/b/c/deep.txt", s / "link-relative")
        os.symlink("/nonexistent/target", s / "link-dangling")
        os.symlink("nested", s / "link-to-dir")

    return TreeSummary(files, total)


def _raise(error: OSError) -> None:
    # os.walk silently skips unreadable directories; a comparison must not.
    raise error


def _walk(root: PathLike):
    """os.walk that stays inside one subvolume: nested subvolumes (a snapshot folder with its
    read-only snapshots, say) have their own st_dev on btrfs and are not descended into."""
    device = os.lstat(root).st_dev
    for dirpath, dirs, names in os.walk(root, onerror=_raise):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(dirpath, d)).st_dev == device]
        yield dirpath, dirs, names


def _regular_files(root: Path) -> List[str]:
    found = []
    for dirpath, _dirs, names in _walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(p).st_mode):
                found.append(os.path.relpath(p, root))
    return sorted(found)


def modify_tree(
    root: PathLike,
    n_bytes: int,
    seed: int = 1,
    add_files: int = 3,
    remove_files: int = 2,
    max_write: int = MiB,
) -> TreeChanges:
    """Overwrite about *n_bytes* in place spread over random files, add and remove a few files.

    Deterministic for a given tree and *seed*. Added files go to ``added/``.
    """
    root = Path(root)
    rng = random.Random(f"modify/{seed}")
    files = _regular_files(root)
    # Remove first, so we never modify a file we are about to delete.
    removed = rng.sample(files, min(remove_files, len(files))) if files else []
    for rel in removed:
        os.unlink(root / rel)
    gone = set(removed)
    files = [f for f in files if f not in gone]

    modified = set()
    remaining = n_bytes
    # Spread: many pieces of at most max_write, each in a randomly chosen file.
    piece = max(1, min(max_write, n_bytes // 16 or 1))
    candidates = [f for f in files if os.path.getsize(root / f) > 0]
    weights = list(itertools.accumulate(os.path.getsize(root / f) for f in candidates))
    while remaining > 0 and candidates:
        # Half the pieces hit a file picked by size (big files see most change),
        # half a file picked uniformly (many small files see some change).
        if rng.random() < 0.5:
            rel = rng.choices(candidates, cum_weights=weights)[0]
        else:
            rel = rng.choice(candidates)
        size = os.path.getsize(root / rel)
        n = min(piece, remaining, size)
        offset = rng.randint(0, size - n)
        with open(root / rel, "r+b") as f:
            f.seek(offset)
            f.write(_random_bytes(rng, n))
        modified.add(rel)
        remaining -= n

    added = []
    if add_files:
        (root / "added").mkdir(exist_ok=True)
    for i in range(add_files):
        rel = os.path.join("added", f"seed{seed}-{i}.dat")
        (root / rel).write_bytes(_random_bytes(rng, rng.randint(1, 64 * 1024)))
        added.append(rel)
    return TreeChanges(sorted(modified), added, sorted(removed), n_bytes - remaining)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def _describe(path: str, owner: bool, mtime: bool) -> str:
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    parts = []
    if stat.S_ISLNK(st.st_mode):
        # Symlink permission bits are meaningless on Linux; the target is what matters.
        parts.append(f"symlink -> {os.readlink(path)}")
    elif stat.S_ISDIR(st.st_mode):
        parts.append(f"dir mode={mode:04o}")
    elif stat.S_ISREG(st.st_mode):
        parts.append(f"file mode={mode:04o} size={st.st_size} sha256={_sha256_file(path)}")
    else:
        parts.append(f"special type={stat.S_IFMT(st.st_mode):o} mode={mode:04o} rdev={st.st_rdev}")
    if owner:
        parts.append(f"owner={st.st_uid}:{st.st_gid}")
    if mtime and not stat.S_ISDIR(st.st_mode):
        # Directory mtimes change with every entry added; only files/links are compared.
        parts.append(f"mtime_ns={st.st_mtime_ns}")
    return " ".join(parts)


def checksum_tree(root: PathLike, owner: bool = True, mtime: bool = False) -> Dict[str, str]:
    """Map every path under *root* (relative, root excluded) to a description string.

    Directories (empty ones included) record their mode, regular files their mode,
    size and sha256, symlinks their target (never followed). Ownership is
    included unless *owner* is False; mtimes only with *mtime*.
    """
    root = os.fspath(root)
    result = {}
    for dirpath, dirs, names in _walk(root):
        for name in dirs + names:
            p = os.path.join(dirpath, name)
            result[os.path.relpath(p, root)] = _describe(p, owner, mtime)
    return result


def diff_trees(a: Mapping[str, str], b: Mapping[str, str]) -> List[str]:
    """Human-readable differences between two checksum_tree() results."""
    lines = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            lines.append(f"only in first:  {rel}  ({a[rel]})")
        elif rel not in a:
            lines.append(f"only in second: {rel}  ({b[rel]})")
        elif a[rel] != b[rel]:
            lines.append(f"differs: {rel}\n    first:  {a[rel]}\n    second: {b[rel]}")
    return lines


def assert_same_tree(
    a: Union[PathLike, Mapping[str, str]],
    b: Union[PathLike, Mapping[str, str]],
    owner: bool = True,
    mtime: bool = False,
    max_lines: int = 50,
) -> None:
    """Raise AssertionError listing the differing paths unless trees *a* and *b* are identical.

    Either side may be a directory or a precomputed checksum_tree() dict.
    """
    sums = [x if isinstance(x, Mapping) else checksum_tree(x, owner, mtime) for x in (a, b)]
    differences = diff_trees(sums[0], sums[1])
    if differences:
        names = [x if isinstance(x, Mapping) else os.fspath(x) for x in (a, b)]
        label = " vs ".join("<checksums>" if isinstance(n, Mapping) else n for n in names)
        shown = differences[:max_lines]
        more = len(differences) - len(shown)
        raise AssertionError(
            f"trees differ ({label}): {len(differences)} path(s)\n"
            + "\n".join(shown)
            + (f"\n... and {more} more" if more else "")
        )


WORDS = ("backup snapshot subvolume stream receive send btrfs disk copy chain parent incremental "
         "retention lock host fleet timer journal restore verify server quota").split()


def write_text_files(folder: PathLike, n_files: int, size: int, seed: int = 0) -> None:
    """Compressible files (lines of words, different in every file): zstd shrinks them ~3x."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(n_files):
        lines, length = [], 0
        while length < size:
            line = " ".join(rng.choice(WORDS) for _ in range(12)) + " %d\n" % rng.randrange(10 ** 6)
            lines.append(line)
            length += len(line)
        (folder / ("text-%03d.txt" % number)).write_text("".join(lines))
