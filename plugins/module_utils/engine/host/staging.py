# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A resumable transfer's staging at an ssh destination (rule 13): the programs that cut a send
stream into sha256-verified chunks and land them there, and the commands that read, start,
receive and remove a staging.

The stream crosses the link framed: for each chunk `C` and its index (8 bytes), blocks of at most
1 MiB each after its length (4 bytes), a zero length and the chunk's sha256 as the sender computed
it; at the end `E`, the number of chunks and the stream's length (8 bytes each). The sender's
program (STAGE_SENDER, at the source's end of the link) first reads the chunks the destination
already holds from the regenerated stream and compares their hashes with the staged ones: equal,
it sends only the rest; different, it stops and says at which chunk. The destination's program
(STAGE_RECEIVER) writes each chunk to a temporary name, checks its size and hash against the
sender's, fsyncs it, renames it into place and appends its hash to CHUNK_HASHES; a cut leaves
every verified chunk in place. Both are short `python3 -c` programs, each one argv word.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import json
import os
import posixpath
import sys
import time

from ..model import resumable
from ..model.errors import EndpointError, TransferError
from . import btrfs

if TYPE_CHECKING:
    from .endpoints.base import Endpoint
    from .runner import CommandRunner

# argv: chunk size, a file with the staged chunks' hashes (one a line; may be empty).
STAGE_SENDER = r"""
import hashlib, struct, sys
size = int(sys.argv[1])
with open(sys.argv[2]) as staged_file:
    staged = staged_file.read().split()
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
index = total = 0
while True:
    digest, got, sending = hashlib.sha256(), 0, index >= len(staged)
    if sending:
        write(b"C" + struct.pack("<Q", index))
    while got < size:
        block = read(min(1 << 20, size - got))
        if not block:
            break
        digest.update(block)
        got += len(block)
        if sending:
            write(struct.pack("<I", len(block)))
            write(block)
    total += got
    if not sending and (got < size or digest.hexdigest() != staged[index]):
        sys.stderr.write("%s %d\n" % (sys.argv[3], index))
        sys.exit(3)
    if sending:
        write(struct.pack("<I", 0) + digest.digest())
    index += 1
    if got < size:
        break
write(b"E" + struct.pack("<QQ", index, total))
sys.stdout.buffer.flush()
"""

# argv: the staging folder, the chunk size, the most bytes the staging may hold (0: no bound), and
# optionally the receive's argv: then each verified chunk is also fed to that receive as it lands
# (from the first chunk of this session on, which proves the sender's prefix), and it ends with it.
STAGE_RECEIVER = r"""
import hashlib, os, struct, subprocess, sys, threading
folder, size, limit, receive_argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
hashes_path = os.path.join(folder, "chunks.sha256")
read = sys.stdin.buffer.read
with open(hashes_path, "ab+") as hashes:
    hashes.seek(0)
    text = hashes.read()
    kept = text[:text.rfind(b"\n") + 1]
    hashes.truncate(len(kept))
expected, staged, short = kept.count(b"\n"), kept.count(b"\n") * size, False
landed = threading.Condition()
fed = {"verified": expected, "ended": False}
receiver = feeder = None

def feed():
    index = 0
    try:
        while True:
            with landed:
                while index >= fed["verified"] and not fed["ended"]:
                    landed.wait()
                if index >= fed["verified"]:
                    break
            with open(os.path.join(folder, "%08d.chunk" % index), "rb") as chunk:
                for block in iter(lambda: chunk.read(1 << 20), b""):
                    receiver.stdin.write(block)
            index += 1
    except OSError:
        pass  # the receive ended early: its status says why
    finally:
        try:
            receiver.stdin.close()
        except OSError:
            pass

def start_receiving():
    global receiver, feeder
    if receive_argv and receiver is None:
        receiver = subprocess.Popen(receive_argv, stdin=subprocess.PIPE)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()

def verified(count):
    with landed:
        fed["verified"] = count
        landed.notify()

def take(count):
    data = read(count)
    if len(data) != count:
        sys.exit("the stream was cut after %d verified chunks" % expected)
    return data

def land():
    global expected, staged, short
    while True:
        kind = take(1)
        if kind == b"E":
            count, total = struct.unpack("<QQ", take(16))
            if count != expected or total != staged:
                sys.exit("the stream ended after %d chunks (%d bytes), the staging holds %d (%d bytes)"
                         % (count, total, expected, staged))
            with open(os.path.join(folder, "complete"), "w") as done:
                done.write("%d\n" % total)
                done.flush()
                os.fsync(done.fileno())
            return
        if kind != b"C" or short:
            sys.exit("not a staged stream: %r after chunk %d" % (kind, expected - 1))
        index = struct.unpack("<Q", take(8))[0]
        if index != expected:
            sys.exit("chunk %d arrived where chunk %d was expected" % (index, expected))
        name = "%08d.chunk" % index
        part = os.path.join(folder, name + ".part")
        digest, got = hashlib.sha256(), 0
        with open(part, "wb") as out:
            while True:
                length = struct.unpack("<I", take(4))[0]
                if not length:
                    break
                if got + length > size or (limit and staged + got + length > limit):
                    sys.exit("chunk %d is larger than the chunk size or the stream's announced size" % index)
                block = take(length)
                digest.update(block)
                out.write(block)
                got += length
            out.flush()
            os.fsync(out.fileno())
        if take(32) != digest.digest():
            sys.exit("chunk %d: its sha256 is not the one the sender computed" % index)
        os.rename(part, os.path.join(folder, name))
        with open(hashes_path, "a") as hashes:
            hashes.write("%s  %s\n" % (digest.hexdigest(), name))
            hashes.flush()
            os.fsync(hashes.fileno())
        expected, staged, short = expected + 1, staged + got, got < size
        start_receiving()
        verified(expected)

complete = False
try:
    land()
    complete = True
finally:
    if receiver is not None and not complete:
        receiver.kill()  # a stream that did not verify whole is never received
if receive_argv:
    start_receiving()
    with landed:
        fed["ended"] = True
        landed.notify()
    feeder.join()
    status = receiver.wait()
    if status:
        sys.exit("btrfs receive of the staged stream failed with exit status %d" % status)
"""

# argv: the staging folder, then the receive's argv: the chunks in order into `btrfs receive`.
_RECEIVE_SCRIPT = 'cd -- "$1" && shift && cat -- [0-9]*.chunk | "$@"'
REMOTE_PYTHON = "python3"
REFUSED = 126  # serve's exit status for a command it refuses


class StagingRefused(EndpointError):
    """A backup server's `serve` refused the staging verbs (one from before them): the transfer
    goes directly instead."""


class StagingState:
    """What a destination holds of one staging: the names of every staging folder there, the
    seconds since each one's last chunk landed (`ages`, by name; measured there), the manifest's
    text of this one (None: none), its landed chunks' hashes and whether it is complete."""

    __slots__ = ("keys", "manifest_text", "hashes_text", "complete", "ages")

    def __init__(self, keys, manifest_text, hashes_text, complete, ages=None):
        self.keys, self.manifest_text = keys, manifest_text
        self.hashes_text, self.complete, self.ages = hashes_text, complete, ages or {}


def parse_ages(listing: str, now_text: str) -> dict:
    """{name: seconds since its last change} from `find -printf '%T@ %f\\n'` lines and the
    destination's `date +%s` (its own clock: the two hosts' clocks may differ)."""
    try:
        now = float(now_text.strip())
    except ValueError:
        return {}
    ages = {}
    for line in listing.splitlines():
        stamp, _space, name = line.partition(" ")
        try:
            ages[name] = max(0.0, now - float(stamp))
        except ValueError:
            continue
    return ages


class Staging:
    """One (snapshot, parent)'s staging folder at an ssh destination, and the commands on it.
    At a backup server (`serve`: True) the commands are serve's staging verbs (SERVE_COMMAND),
    which do the same on the host's own folder only (frontends/serve_staging.py)."""

    def __init__(self, destination: Endpoint, runner: CommandRunner, key: str, serve: bool = False):
        self.destination, self.runner, self.key, self.serve = destination, runner, key, serve
        self.root = destination.join(resumable.STAGING_FOLDER)
        self.folder = posixpath.join(self.root, key)

    def _verb(self, verb, *words):
        return [resumable.SERVE_COMMAND, verb, self.destination.path] + list(words)

    def read(self) -> StagingState:
        """The staging folders there and this one's manifest, hashes and completion, in one round."""
        if self.serve:
            result = self.destination.run(self.runner, self._verb("read", self.key))
            if result.returncode == REFUSED and "not a command that a backup sends" in result.stderr:
                raise StagingRefused("%s: its btrfs-backup serve takes no staging commands (update it on "
                                     "the server)" % self.destination.id)
            self._check(result, "read the staging")
            try:
                found = json.loads(result.stdout)
                return StagingState(list(found["keys"]), found["manifest"], found["hashes"], bool(found["complete"]),
                                    dict(found.get("ages") or {}))
            except (ValueError, KeyError, TypeError) as err:
                raise EndpointError("%s: the staging could not be read (%s)" % (self.destination.id, err))
        results = self.destination.run_batch(self.runner, [
            # A folder's time changes as each chunk is renamed into it: when its last chunk landed.
            (["find", self.root, "-mindepth", "1", "-maxdepth", "1", "-printf", "%T@ %f\\n"], True),
            (["date", "+%s"], True),
            (["cat", "--", posixpath.join(self.folder, resumable.MANIFEST)], True),
            (["cat", "--", posixpath.join(self.folder, resumable.CHUNK_HASHES)], True),
            (["test", "-e", posixpath.join(self.folder, resumable.COMPLETE)], True),
        ])
        listing, now, manifest, hashes, complete = results
        ages = parse_ages(listing.stdout, now.stdout) if listing.ok and now.ok else {}
        keys = sorted(line.partition(" ")[2] for line in listing.stdout.splitlines() if line) if listing.ok else []
        return StagingState(keys, manifest.stdout if manifest.ok else None,
                            hashes.stdout if hashes.ok else "", complete.ok, ages)

    def remove(self, keys) -> None:
        """Remove the staging folders `keys` (names inside the staging root only)."""
        paths = [posixpath.join(self.root, key) for key in keys if key and "/" not in key and key not in (".", "..")]
        if self.serve:
            # serve removes only what is named as a staging (anything else there is not ours to touch).
            keys = [posixpath.basename(p) for p in paths if resumable.parse_staging_key(posixpath.basename(p))]
            if keys:
                self._check(self.destination.run(self.runner, self._verb("remove", *keys)), "remove staging")
        elif paths:
            self._check(self.destination.run(self.runner, ["rm", "-rf", "--"] + paths), "remove staging")
            # The root goes too once it is empty (rmdir refuses otherwise).
            self.destination.run(self.runner, ["rmdir", "--", self.root])

    def start(self, manifest: resumable.Manifest) -> None:
        """An empty staging folder with its manifest (any earlier one of this key is dropped)."""
        if self.serve:
            self._check(self.destination.run(self.runner, self._verb("start", self.key),
                                             input_text=resumable.manifest_text(manifest)), "start the staging")
            return
        self._check(self.destination.run(self.runner, ["rm", "-rf", "--", self.folder]), "clear staging")
        self._check(self.destination.run(self.runner, ["mkdir", "-p", "-m", "700", "--", self.folder]),
                    "create staging")
        self._check(self.destination.run(
            self.runner, ["sh", "-c", 'cat > "$1"', "sh", posixpath.join(self.folder, resumable.MANIFEST)],
            input_text=resumable.manifest_text(manifest)), "write the staging manifest")

    @property
    def receives_as_it_lands(self) -> bool:
        """Whether the chunk receiver also receives the stream (a plain ssh host: as each chunk
        lands), so that no receive is left after it; at a backup server, serve receives apart."""
        return not self.serve

    def receiver(self, chunk_size: int, limit: int, decompress_argv=None, btrfs_debug: bool = False) -> tuple:
        """(stage name, argv) of the program that lands the framed stream's chunks there (and
        receives them as they land, where it can)."""
        argv = self._verb("land", self.key) if self.serve else \
            [REMOTE_PYTHON, "-c", STAGE_RECEIVER, self.folder, str(chunk_size), str(limit)] \
            + btrfs.receive_argv(self.destination.path, btrfs_debug)
        return "staging at %s" % self.destination.id, self.destination.stream_command(argv, decompress_argv)

    def receive(self, btrfs_debug: bool = False) -> None:
        """`btrfs receive` of the complete staged stream from its chunks, at the destination."""
        if self.serve:
            argv = self._verb("receive", self.key, *(["-vv"] if btrfs_debug else []))
        else:
            argv = ["sh", "-c", _RECEIVE_SCRIPT, "sh", self.folder] + btrfs.receive_argv(
                self.destination.path, btrfs_debug)
        result = self.destination.run(self.runner, argv)
        if not result.ok:
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise TransferError("btrfs receive of the staged stream at %s failed (exit status %d)%s" % (
                self.destination.id, result.returncode, ": " + " / ".join(lines[-3:]) if lines else ""))

    def _check(self, result, what):
        if not result.ok:
            failure = self.destination.connection_failure(result)
            if failure is not None:
                raise failure
            detail = (result.stderr.strip().splitlines() or ["failed"])[-1]
            raise EndpointError("%s: cannot %s %s: %s" % (self.destination.id, what, self.folder, detail))


def staging_ages(root: str, keys) -> dict:
    """{key: seconds since its last chunk landed} (a folder's time changes as each chunk is
    renamed into it); a folder gone meanwhile is left out."""
    now, ages = time.time(), {}
    for key in keys:
        try:
            ages[key] = max(0.0, now - os.stat(posixpath.join(root, key)).st_mtime)
        except OSError:
            continue
    return ages


def remove_stale_here(folder: str, newest_backup_age: float | None, check_mode: bool = False) -> list[dict]:
    """On a backup server (prune): remove the stale stagings of `folder` (model/resumable's
    stale_on_server); [{"key", "reason"}] of those removed (in check mode: that would be)."""
    root = posixpath.join(folder, resumable.STAGING_FOLDER)
    if os.path.islink(root) or not os.path.isdir(root):
        return []
    stale = resumable.stale_on_server(staging_ages(root, sorted(os.listdir(root))), newest_backup_age)
    if not check_mode:
        import shutil  # only a prune that finds stale staging needs it

        for key in stale:
            shutil.rmtree(posixpath.join(root, key), ignore_errors=True)
        try:
            os.rmdir(root)
        except OSError:
            pass  # not empty (a staging still wanted)
    return [{"key": key, "reason": reason} for key, reason in stale.items()]


def sender_argv(chunk_size: int, staged_hashes_file: str) -> list[str]:
    """The program at this end that frames the stream into chunks, after proving the staged ones."""
    return [sys.executable, "-c", STAGE_SENDER, str(chunk_size), staged_hashes_file, resumable.DIFFERS]
