# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A resumable transfer to one destination (rule 13): what is staged there is read, stale
stagings are removed, a staged prefix is proven equal to the regenerated stream and only the rest
is sent; the complete stream is received there from its chunks, then its staging is removed."""

from __future__ import annotations

import os

from ..host.pipeline import run_stream
from ..host.staging import Staging, sender_argv
from ..host.streams import plan_staged_stream
from ..model import resumable
from ..model.errors import BackupError, TransferError
from ..model.units import format_size
from .transfer import progress_line
from ..model.log import LOG


class StagedResult:
    """What a staged transfer did: `bytes_sent` the bytes this run sent (framed; 0 when the whole
    stream was already staged), `wire_bytes` of them compressed (None: not compressed),
    `skipped` the bytes already staged and proven equal, `seconds` the wall time."""

    __slots__ = ("bytes_sent", "wire_bytes", "skipped", "seconds")

    def __init__(self, bytes_sent, wire_bytes, skipped, seconds):
        self.bytes_sent, self.wire_bytes, self.skipped, self.seconds = bytes_sent, wire_bytes, skipped, seconds


class StagedProgress:
    """A log line every 30 s of a staged transfer: "resumable transfer of S to D at 63%", with the
    bytes this run sent, its rate and the time left for the rest (`percent`: the last share said);
    `record(staged bytes)`, when given, keeps the same figure beside the lock file."""

    def __init__(self, destination, snapshot_name: str, estimate: int | None, record=None):
        self.where, self.name, self.estimate = destination.id, snapshot_name, estimate
        self.skipped, self.percent, self.record = 0, None, record

    def __call__(self, sent: int, seconds: float) -> None:
        left = self.estimate - self.skipped if self.estimate else None
        self.percent = resumable.staged_percent(self.skipped + sent, self.estimate)
        if self.record is not None:
            self.record(self.skipped + sent)
        LOG.info("resumable transfer of %s to %s%s: %s", self.name, self.where,
                 " at %d%%" % self.percent if self.percent is not None else "", progress_line(sent, seconds, left))


def send_staged(executor, step, destination, estimate: int | None, compressible=None,
                on_progress=None, serve: bool = False) -> StagedResult:
    """Stage `step`'s stream at `destination` (`serve`: a backup server's), resuming what is staged
    there, and receive it there; raises TransferError (the staging stays for the next run)."""
    snapshot, parent, options = step.snapshot, step.parent, executor.options.stream
    parent_uuid = parent.uuid if parent else None
    key = resumable.staging_key(snapshot.name, parent_uuid)
    staging = Staging(destination, executor.runner, key, serve)
    state = staging.read()
    stale = resumable.stale_stagings(state.keys, key, state.ages)
    if stale:
        LOG.info("%s: removing stale staging %s", destination.id, ", ".join(stale))
        staging.remove(stale)
    wanted = resumable.Manifest(snapshot.name, snapshot.uuid, parent_uuid, options.chunk_size, estimate)
    resume = _resume(destination, state, wanted)
    seconds = sent = wire = 0
    skipped = resume.chunks * options.chunk_size
    if estimate is not None:
        skipped = min(skipped, estimate)  # the last chunk of a complete staging is a short one
    if not resume.complete:
        if resume.chunks:
            LOG.info("%s: resuming the transfer of %s after %d staged chunks (%s)", destination.id,
                     snapshot.name, resume.chunks, format_size(skipped))
            staged = resumable.parse_chunk_hashes(state.hashes_text)[:resume.chunks]
        else:
            staging.start(wanted)
            staged = []
        if on_progress is not None:
            on_progress.skipped = skipped
            if on_progress.record is not None:
                on_progress.record(skipped)  # what the staging holds as this run starts to add to it
        result, failure = _stream(executor, step, destination, staging, staged, wanted, compressible, on_progress)
        if failure is not None and resumable.DIFFERS in failure:
            index = failure.split(resumable.DIFFERS, 1)[1].split()[0].rstrip(")/;")
            LOG.warning("%s: %s %s: starting over", destination.id, resumable.DIFFERS, index)
            staging.start(wanted)
            skipped = 0
            if on_progress is not None:
                on_progress.skipped = 0
            result, failure = _stream(executor, step, destination, staging, [], wanted, compressible, on_progress)
        if failure is not None:
            error = TransferError(failure)
            error.resumable = _staged_share(staging, options.chunk_size, estimate)
            raise error
        seconds, sent = result.seconds, result.bytes_sent
        wire = result.wire_bytes.get(destination)
    else:
        LOG.info("%s: %s is staged complete; receiving it", destination.id, snapshot.name)
    if resume.complete or not staging.receives_as_it_lands:
        staging.receive(options.btrfs_debug)
    staging.remove([key])
    return StagedResult(sent, wire, skipped, seconds)


def _staged_share(staging, chunk_size, estimate) -> dict | None:
    """What a cut transfer left staged, for the run record: {"staged_bytes", "stream_bytes",
    "percent"} (None when the staging cannot be read now: the next run reads it anyway)."""
    try:
        hashes = resumable.parse_chunk_hashes(staging.read().hashes_text)
    except (BackupError, ValueError):
        return None
    staged = len(hashes) * chunk_size
    return {"staged_bytes": staged, "stream_bytes": estimate, "percent": resumable.staged_percent(staged, estimate)}


def _resume(destination, state, wanted) -> resumable.Resume:
    """How to continue from the staging found (a manifest or hash list that cannot be read: start over)."""
    if state.manifest_text is None:
        return resumable.Resume(0, False, None)
    try:
        found = resumable.parse_manifest(state.manifest_text)
        hashes = resumable.parse_chunk_hashes(state.hashes_text)
    except ValueError as err:
        LOG.warning("%s: the staging of %s cannot be read (%s): starting over", destination.id, wanted.snapshot, err)
        return resumable.Resume(0, False, str(err))
    resume = resumable.resume_from(found, hashes, state.complete, wanted)
    if resume.reason:
        LOG.warning("%s: %s", destination.id, resume.reason)
    return resume


def _stream(executor, step, destination, staging, staged_hashes, wanted, compressible, on_progress):
    """One run of the framed stream: (StreamResult, the failure's text or None)."""
    options = executor.options.stream
    chunk_size = options.chunk_size
    # The staging never grows past the announced stream (rounded up to a whole chunk).
    limit = -(-wanted.stream_size // chunk_size) * chunk_size if wanted.stream_size else 0
    import tempfile  # only a staged transfer needs it (start-up time of every run)

    handle, hashes_file = tempfile.mkstemp(prefix="btrfs-backup-staged-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write("\n".join(staged_hashes) + "\n")
        root, _compressed, _flags = plan_staged_stream(
            step.source, step.snapshot.path, step.parent.path if step.parent else None, destination, options,
            executor.probe(step.source), sender_argv(chunk_size, hashes_file),
            lambda decompress: staging.receiver(chunk_size, limit, decompress, options.btrfs_debug), compressible)
        result = run_stream(executor.runner, root, on_progress=on_progress)
    finally:
        os.unlink(hashes_file)
    return result, result.failures.get(destination)
