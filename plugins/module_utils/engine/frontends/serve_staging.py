# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""`serve`'s staging verbs for resumable transfers (rule 13): `btrfs-backup-stage read|start|land|
receive|remove FOLDER KEY...`, each only on the host's own staging inside its folder.

The source names a folder inside the key's root and a staging key (model/resumable: a snapshot
name and a parent UUID, one path component); serve builds the staging's path itself
(FOLDER/.btrfs-backup-staging/KEY), so no path a source writes reaches the disk. `start` takes
the manifest on stdin and checks it (its key, a chunk size within bounds, a stream size, which
must fit in the host's quota room); `land` runs the chunk receiver (host/staging.py) with the
chunk size and the bound that serve reads from that manifest, never from the request, and the
bound shrinks to the host's quota room; staged chunks lie in the host's subvolume, so its
qgroup counts them. `receive` feeds the staged chunks to serve's own receive (with its checks
of what arrived); `remove` drops stagings. Any other shape is refused like every other command.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys

from ..host.staging import STAGE_RECEIVER, staging_ages
from ..model import resumable

STAGE_COMMAND = resumable.SERVE_COMMAND
MANIFEST_LIMIT = 64 * 1024  # bytes of a manifest serve reads; a real one has a few hundred


def parse_stage_command(args, root, confine, refused):
    """Pure: `read|start|land|receive|remove FOLDER KEY...` as (op, [folder], [keys + flags]);
    `confine(path, root)` checks the folder, `refused(message, kind)` makes the refusal."""
    if len(args) < 3:
        raise refused("%s needs a verb, a folder and a staging key" % STAGE_COMMAND, "command")
    verb, folder, rest = args[0], confine(args[1], root), args[2:]
    flags = []
    if verb == "receive" and rest[-1:] == ["-vv"]:
        rest, flags = rest[:-1], ["-vv"]
    if verb not in ("read", "start", "land", "receive", "remove") or (verb != "remove" and len(rest) != 1):
        raise refused("%r is not a staging command that a backup sends" % " ".join([STAGE_COMMAND] + args), "command")
    for key in rest:
        if resumable.parse_staging_key(key) is None:
            raise refused("%r is not a staging key (SNAPSHOT.PARENT-UUID or SNAPSHOT.full)" % key, "path")
    return "stage_" + verb, [folder], list(rest) + flags


def manifest_refusal(manifest: resumable.Manifest, key: str, room: int | None) -> str | None:
    """Pure: why serve refuses a staging's manifest (None: it is taken); `room` the host's quota
    room in bytes (None: no quota)."""
    if resumable.staging_key(manifest.snapshot, manifest.parent_uuid) != key:
        return "the manifest is for %s, not for the staging %s" % (
            resumable.staging_key(manifest.snapshot, manifest.parent_uuid), key)
    if not resumable.MIN_CHUNK_SIZE <= manifest.chunk_size <= resumable.MAX_CHUNK_SIZE:
        return "a chunk size of %d bytes is outside 1 MiB to 4 GiB" % manifest.chunk_size
    if not manifest.stream_size or manifest.stream_size < 1:
        return "a staging on a backup server needs the stream's size"
    if room is not None and manifest.stream_size > room:
        return "quota: the stream of %s (%d bytes) does not fit in the %d bytes left of this host's quota" % (
            manifest.snapshot, manifest.stream_size, room)
    return None


class StagingOperations:
    """The staging verbs of a Server (serve.py): its paths are checked already; these use its
    stdin, stdout, quota, receive and refusals."""

    def _staging(self, folder, key=None):
        root = posixpath.join(folder, resumable.STAGING_FOLDER)
        if os.path.islink(root) or (os.path.lexists(root) and not os.path.isdir(root)):
            raise self._refused("%s is not a staging folder" % root, "path")
        return root if key is None else posixpath.join(root, key)

    def _op_stage_read(self, paths, flags):
        root, folder = self._staging(paths[0]), self._staging(paths[0], flags[0])
        keys = sorted(os.listdir(root)) if os.path.isdir(root) else []
        found = {"keys": keys, "ages": staging_ages(root, keys),
                 "manifest": _read(posixpath.join(folder, resumable.MANIFEST)),
                 "hashes": _read(posixpath.join(folder, resumable.CHUNK_HASHES)) or "",
                 "complete": os.path.exists(posixpath.join(folder, resumable.COMPLETE))}
        self.stdout.write((json.dumps(found) + "\n").encode())
        return 0

    def _op_stage_start(self, paths, flags):
        text = self.stdin.read(MANIFEST_LIMIT + 1)
        if len(text) > MANIFEST_LIMIT:
            raise self._refused("a staging manifest longer than %d bytes" % MANIFEST_LIMIT, "command")
        try:
            manifest = resumable.parse_manifest(text.decode("utf-8", "replace"))
        except ValueError as err:
            raise self._refused("not a staging manifest: %s" % err, "command")
        room = None if self.quota_bytes is None else self._quota_left()[1]
        refusal = manifest_refusal(manifest, flags[0], room)
        if refusal:
            raise self._refused(refusal, "quota" if refusal.startswith("quota") else "command")
        folder = self._staging(paths[0], flags[0])
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, 0o700, exist_ok=True)
        with open(posixpath.join(folder, resumable.MANIFEST), "w") as out:
            out.write(resumable.manifest_text(manifest))
        return 0

    def _op_stage_land(self, paths, flags, decompress=False):
        folder = self._staging(paths[0], flags[0])
        manifest = self._manifest(folder)
        limit = -(-manifest.stream_size // manifest.chunk_size) * manifest.chunk_size
        if self.quota_bytes is not None:
            staged = sum(os.path.getsize(posixpath.join(folder, name)) for name in os.listdir(folder))
            limit = min(limit, staged + self._quota_left()[1])
        argv = [sys.executable, "-c", STAGE_RECEIVER, folder, str(manifest.chunk_size), str(limit)]
        zstd = self._zstd(["zstd", "-d", "-q", "-c"], self.stdin, subprocess.PIPE) if decompress else None
        if decompress and zstd is None:
            return 127
        self.stdout.flush()
        # serve runs on a backup server without Ansible; the chunk receiver reads the ssh stream.
        lander = subprocess.run(argv, stdin=zstd.stdout if zstd else self.stdin,  # pylint: disable=ansible-bad-function
                                stdout=self.stdout, stderr=self.stderr, check=False)
        if zstd is not None:
            zstd.stdout.close()
            zstd.wait()
        return lander.returncode

    def _op_stage_receive(self, paths, flags):
        keys = [f for f in flags if f != "-vv"]
        folder = self._staging(paths[0], keys[0])
        self._manifest(folder)
        hashes = resumable.parse_chunk_hashes(_read(posixpath.join(folder, resumable.CHUNK_HASHES)) or "")
        if not os.path.exists(posixpath.join(folder, resumable.COMPLETE)) or not hashes:
            raise self._refused("the staging %s is not complete" % keys[0], "command")
        chunks = [posixpath.join(folder, resumable.chunk_name(i)) for i in range(len(hashes))]
        self.stdout.flush()
        # serve runs on a backup server without Ansible; cat reads the staged chunks in order.
        cat = subprocess.Popen(["cat", "--"] + chunks, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                               stderr=self.stderr, env=self.environment)
        try:
            status = self._receive_from(paths, flags[len(keys):], cat.stdout)
        finally:
            cat.stdout.close()
            cat.wait()
        return status

    def _op_stage_remove(self, paths, flags):
        root = self._staging(paths[0])
        for key in flags:
            shutil.rmtree(posixpath.join(root, key), ignore_errors=True)
        try:
            os.rmdir(root)
        except OSError:
            pass  # not empty (another snapshot's staging) or not there
        return 0

    def _manifest(self, folder):
        try:
            return resumable.parse_manifest(_read(posixpath.join(folder, resumable.MANIFEST)) or "")
        except ValueError as err:
            raise self._refused("the staging %s has no valid manifest (%s)" % (posixpath.basename(folder), err),
                                "command")


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None
