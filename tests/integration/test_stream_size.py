"""engine.host.stream_size on real btrfs: the estimate from a `--no-data` send against the length of
the real `btrfs send` stream, for a full and an incremental send of a mixed tree (many small
files and a few large ones, sparse, preallocated, reflinked and hard-linked files), on a plain
and on a compressing mount. Run with -s to see the deviations."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.btrfs_loop import run
from support.trees import MiB, modify_tree, write_file, write_mixed_tree

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from engine.host.endpoints.local import LocalEndpoint  # noqa: E402
from engine.host.endpoints.location import parse_location  # noqa: E402
from engine.host.endpoints.ssh import SshConnections  # noqa: E402
from engine.host.runner import CommandRunner  # noqa: E402
from engine.host.stream_size import estimate_stream_size  # noqa: E402

# How far the estimate may be from the real stream's length (on kernel 6.18 it is exact: every
# command of the real stream is accounted for).
TOLERANCE = 0.01


def real_stream_length(snapshot: Path, parent: Path | None = None) -> int:
    """The bytes `btrfs send [-p parent] snapshot` writes, counted as they pass."""
    argv = ["btrfs", "send"] + (["-p", str(parent)] if parent else []) + [str(snapshot)]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        length = 0
        while True:
            block = proc.stdout.read(1 << 20)
            if not block:
                break
            length += len(block)
        proc.stdout.close()
        if proc.wait() != 0:
            errors.seek(0)
            raise AssertionError(f"{argv} failed: {errors.read().decode(errors='replace')}")
    return length


def write_special_files(root: Path, seed: int) -> None:
    """Files whose extents differ from plain writes: sparse, preallocated, reflinked, hard-linked,
    compressible, with an xattr."""
    odd = root / "odd"
    odd.mkdir()
    write_file(odd / "large.bin", 24 * MiB + 4321, seed=seed, file_no=50)
    with open(odd / "sparse.bin", "wb") as f:  # data, a 40 MiB hole, data, a hole to 96 MiB
        f.write(os.urandom(MiB))
        f.seek(41 * MiB)
        f.write(os.urandom(70 * 1024 + 5))
        f.truncate(96 * MiB)
    with open(odd / "preallocated.bin", "wb") as f:
        f.write(os.urandom(300 * 1024))
        os.posix_fallocate(f.fileno(), 300 * 1024, 8 * MiB)  # unwritten extents past the data
    run(["cp", "--reflink=always", odd / "large.bin", odd / "reflinked.bin"])
    for i in range(5):
        os.link(root / "small" / "d000" / f"f{i:06d}.dat", odd / f"hardlink-{i}")
    (odd / "text.log").write_bytes(b"".join(b"line %08d of a compressible log\n" % i for i in range(200000)))
    os.setxattr(odd / "text.log", "user.note", b"x" * 300)


def change_tree(root: Path) -> None:
    """Changes for the incremental send: overwrites spread over the tree, files added and removed,
    a hole punched where there was data, a truncated and an extended file, a rename, a new
    reflink and a new hard link."""
    modify_tree(root, 6 * MiB, seed=7, add_files=20, remove_files=10, max_write=256 * 1024)
    odd = root / "odd"
    run(["fallocate", "--punch-hole", "--offset", str(256 * 1024), "--length", str(512 * 1024),
         odd / "sparse.bin"])
    os.truncate(odd / "large.bin", 10 * MiB + 77)
    with open(odd / "preallocated.bin", "r+b") as f:
        f.seek(2 * MiB)
        f.write(os.urandom(MiB))
    with open(odd / "text.log", "ab") as f:
        f.write(b"appended line\n" * 50000)
    os.rename(root / "small" / "d001", root / "small" / "d001-renamed")
    run(["cp", "--reflink=always", odd / "reflinked.bin", odd / "reflinked-again.bin"])
    os.link(odd / "text.log", odd / "text-link.log")
    os.chmod(odd / "hardlink-0", 0o600)


@pytest.fixture(params=[(), ("compress=zstd",)], ids=["plain", "compressed"])
def snapshots(request, make_fs, subvolume, snapshot):
    """A mixed tree's two read-only snapshots, before and after a round of changes."""
    fs = make_fs("src", size="1G", mount_options=request.param)
    vol = subvolume(fs / "data")
    write_mixed_tree(vol, n_small=3000, small_size=3000, large_files=[8 * MiB, 3 * MiB + 123], seed=3)
    write_special_files(vol, seed=3)
    first = snapshot(vol, fs / "first")
    change_tree(vol)
    second = snapshot(vol, fs / "second")
    return ("compressed" if request.param else "plain"), first, second


def check(label: str, estimate: int | None, real: int) -> None:
    assert estimate is not None, f"{label}: no estimate"
    deviation = (estimate - real) / real
    print(f"\nstream size, {label}: real {real} bytes, estimate {estimate} bytes, "
          f"deviation {estimate - real:+d} bytes ({deviation:+.4%})")
    assert abs(deviation) <= TOLERANCE, (label, estimate, real)


def test_the_estimate_is_close_to_the_real_stream(snapshots):
    mount, first, second = snapshots
    endpoint, runner = LocalEndpoint(str(first.parent)), CommandRunner()
    check(f"full send ({mount})", estimate_stream_size(endpoint, runner, str(first)),
          real_stream_length(first))
    check(f"incremental send ({mount})", estimate_stream_size(endpoint, runner, str(second), str(first)),
          real_stream_length(second, first))


def test_no_estimate_for_what_cannot_be_sent(make_fs, subvolume):
    """A writable subvolume cannot be sent: None, not an exception."""
    fs = make_fs("src", size="256M")
    vol = subvolume(fs / "data")
    (vol / "f").write_bytes(b"data")
    assert estimate_stream_size(LocalEndpoint(str(fs)), CommandRunner(), str(vol)) is None


def test_the_estimate_over_ssh_through_a_shared_connection(src, snapshot, sshd):
    """Over ssh, with the run's multiplexed connection: the first ssh becomes the background
    master, which must not hold the estimate up until it goes."""
    first = snapshot(src, src.parent / "first")
    endpoint = parse_location(sshd.url(first.parent), ssh_options=sshd.ssh_options())
    runner = CommandRunner()
    started = time.monotonic()
    with SshConnections(runner, [endpoint]):
        estimate = estimate_stream_size(endpoint, runner, str(first), timeout=30)
        seconds = time.monotonic() - started
        again = estimate_stream_size(endpoint, runner, str(first), timeout=30)
    check("full send over ssh", estimate, real_stream_length(first))
    assert again == estimate and seconds < 15, seconds


def test_no_estimate_when_ssh_cannot_connect(src, snapshot, sshd):
    first = snapshot(src, src.parent / "first")
    endpoint = parse_location(sshd.url(first.parent).replace(f":{sshd.port}/", ":1/"),
                              ssh_options=sshd.ssh_options())
    assert estimate_stream_size(endpoint, CommandRunner(), str(first), timeout=30) is None
