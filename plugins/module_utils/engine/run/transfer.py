# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""One snapshot to its destinations (or a backup back for a restore): the stream, its progress, the check of what arrived."""

from __future__ import annotations

import posixpath
import sys

from ..host import btrfs, effects
from ..model.compression import judge_sample
from ..model.errors import BackupError, TransferError
from ..model.planning import stream_uuid
from ..model.units import format_duration, format_size
from ..host.arrival_check import parse_arrival
from ..host.listing import Subvolume, find_subvolume
from ..host.pipeline import EarlyStages, Stage, run_pipeline, run_stream
from ..host.stream_size import estimate_stream_size
from ..host.streams import plan_stream, receive_stage
from ..model.log import LOG


def send_stream(source, destinations, snapshot: Subvolume, parent: Subvolume | None, runner, options, ends,
                estimate: int | None = None, compressible: bool | None = None, first: tuple | str | None = None,
                early: EarlyStages | None = None, gated=None):
    """One `btrfs send [-p parent]` at the source, fanned out to every destination's receiver
    (streams.plan_stream); returns the pipeline's StreamResult (each destination's verdict).
    `estimate`: the stream's size when the run already has it (not asked again); `compressible`:
    the compressibility sample's verdict (sample_compressible); `first`: a command the source runs
    in the send's own command before it (streams.plan_stream); `early`: the receive opened
    already (open_receive_early), taken if its command line is still the one the stream needs;
    `gated`: the source's command started already and waiting at its gate (host/gated_send.py,
    started with gated_send_argv), told to go now."""
    stream = options.stream
    _say_fallbacks(source, destinations, stream, ends)
    progress = False
    if options.progress and sys.stderr.isatty():
        import shutil  # only here: start-up time of every run
        if shutil.which("pv"):
            if estimate is None:
                estimate = estimate_stream_size(source, runner, snapshot.path, parent.path if parent else None)
            progress = estimate or True
    root, bound, flags = _plan_send(source, destinations, snapshot, parent, options, ends, progress, compressible, first)
    if flags:
        LOG.debug("sending %s with %s", snapshot.name, " ".join(flags))
    started = None
    if gated is not None:
        if root.stages[0].argv != gated.argv:  # planned from the same facts: never expected
            raise BackupError(f"the send of {snapshot.name} at {source.id} is not the command that took its snapshot")
        started = gated.go()
    meter = ProgressLog(destinations, source, runner, snapshot, parent, estimate)
    result = run_stream(runner, root, on_progress=None if progress else meter, early=early, source=started)
    result.failures = {bound[leaf]: why for leaf, why in result.failures.items()}
    result.wire_bytes = {bound[leaf]: size for leaf, size in result.wire_bytes.items()}
    result.answers = {bound[leaf]: text for leaf, text in result.answers.items()}
    return result


def gated_send_argv(source, destinations, snapshot: Subvolume, parent: Subvolume | None, options, ends,
                    compressible: bool | None, first: str) -> list[str]:
    """The source's command of send_stream with `first` (a gated line, host/gated_send.py), to
    start before the stream: the same plan, so send_stream finds it the same."""
    return _plan_send(source, destinations, snapshot, parent, options, ends, False, compressible, first)[0].stages[0].argv


def _plan_send(source, destinations, snapshot, parent, options, ends, progress, compressible, first):
    """(the stream's root Node, its leaves -> their destinations, the send protocol flags) for send_stream."""
    # An archive store's receiver names the archive of this snapshot: each gets a bound copy.
    bound = {dest.storing(snapshot, parent): dest for dest in destinations}
    # A plain host's receive command also reads what arrived; a backup server's serve says it by itself.
    checked = [leaf for leaf, dest in bound.items() if dest.answers_arrival and ends.is_plain_host(dest)]
    root, _compressed, flags = plan_stream(source, snapshot.path, parent.path if parent else None,
                                           list(bound), options.stream, ends, progress,
                                           compressible, checked, first)
    return root, bound, flags


def open_receive_early(source, destinations, snapshot: Subvolume, parent: Subvolume | None, runner, options,
                       ends, compressed_before: bool | None = None) -> EarlyStages | None:
    """The receive of a send to one plain ssh host, started now (EarlyStages) so that its ssh
    channel opens while the run still samples the data and saves the locks here; None where
    nothing is started. The sample's verdict is not known yet: its command line is the one the
    last stream there needed (`compressed_before` False: plain; else compressed where both ends
    can), and send_stream takes it only if that is still the one. One that is not taken reads
    an empty stream: `btrfs receive` refuses it and makes nothing. Not started where the receive
    would change something first (a folder to create), at a backup server's `serve` (an empty
    stream is a failed receive it counts), for a staged (resumable) transfer, or for several
    destinations (a fan-out's receivers each follow a tee)."""
    if len(destinations) != 1:
        return None
    dest = destinations[0]
    if not may_receive_early(dest, options.stream) or not ends.is_plain_host(dest) \
            or dest.folder_to_create is not None:
        return None
    root, _compressed, _flags = plan_stream(source, snapshot.path, parent.path if parent else None, [dest],
                                            options.stream, ends, compressible=compressed_before, checked=[dest])
    early = EarlyStages(runner)
    early.start(root.stages[-1])
    return early


def may_receive_early(dest, stream) -> bool:
    """Whether the receive at `dest` may start before its stream: an ssh host's, whose command
    also answers what arrived, of a transfer that is not always staged (its chunks land otherwise)."""
    return dest.answers_arrival and not (dest.can_stage and stream.resumable == "always")


def receive_ahead(dest, snapshot_name: str, options, runner, compressed: bool) -> EarlyStages | None:
    """The receive of this run's snapshot `snapshot_name` at a plain ssh host, started before that
    host is surveyed, so that its channel opens while the survey's answer is awaited (one round
    trip less before the stream). What the host is, and whether the stream goes `compressed`, are
    the last run's (run record): its snapshot's send takes this receive only if its command line is
    still the one that stream needs (open_receive_early); otherwise it reads an empty stream, and
    `btrfs receive` makes nothing. Starting it changes nothing there (rule 7). None where the
    run's shared connection to the host could not be opened: it would try to connect by itself."""
    stage = receive_stage(dest, compressed, options, arrival=snapshot_name)  # once the connection is open
    if getattr(dest, "connect_failure", None) is not None:
        return None
    early = EarlyStages(runner)
    early.start_beside(stage)  # the survey's command starts meanwhile
    return early


def sample_source_ahead(source, destinations, stream, ends) -> None:
    """With `--compress auto`, the sample of a full send from a local source started before its
    snapshot exists: the source subvolume's files (what the snapshot will hold and a full send
    carries), read while the destinations are surveyed. Reading changes nothing (rule 7)."""
    if stream.compress_level is None or stream.compress_explicit or not source.on_this_machine \
            or not any(d.crosses_network for d in destinations):
        return
    ends.sample_ahead(source, source.path)


def sample_compressible(source, destinations, snapshot, stream, ends, parent: Subvolume | None = None):
    """With `--compress auto`, whether a sample of the data a local snapshot's stream carries
    compresses (None: not asked, or too small a sample; a remote source is not sampled, nor is
    data no end could compress): the snapshot's files for a full send, the changed data for an
    incremental (compressibility.sample_stream_data)."""
    if stream.compress_level is None or stream.compress_explicit or not source.on_this_machine \
            or not ends(None).zstd or not any(d.crosses_network and ends(d).zstd for d in destinations):
        return None
    what, sampled, packed = ends.sample(source, snapshot.path, parent.path if parent else None)
    compressible, reason = judge_sample(what, sampled, packed)
    LOG.info("%s: %s", snapshot.name, reason)
    return compressible


def _say_fallbacks(source, destinations, stream, ends):
    """One log line for each ssh end that cannot take the compressed stream it was meant to."""
    if stream.compress_level is None:
        return
    for end in [d for d in destinations if d.crosses_network] + ([source] if source.crosses_network else []):
        missing = [where for where, e in (("this host", ends(None)), (end.id, ends(end))) if not e.zstd]
        if missing and end.id not in ends.warned_no_zstd:
            ends.warned_no_zstd.add(end.id)
            log = LOG.warning if stream.compress_explicit else LOG.info
            log("%s: no zstd at %s; this stream goes uncompressed", end.id, " and ".join(missing))


class ProgressLog:
    """A log line every 30 s of a long transfer (for timers, whose output goes to the journal):
    bytes so far, the rate, and once the stream's size is estimated, how much is left and when
    it should end."""

    def __init__(self, destinations, source, runner, snapshot, parent, estimate: int | None = None):
        self.name = snapshot.name
        self.where = ", ".join(d.id for d in destinations)
        self.estimate_args = (source, runner, snapshot.path, parent.path if parent else None)
        self.estimate = estimate
        self.asked = estimate is not None  # known already: not asked again

    def __call__(self, sent, seconds):
        if not self.asked:
            self.asked = True  # once, at the first line: short transfers never pay for it
            self.estimate = estimate_stream_size(*self.estimate_args)
        LOG.info("sending %s to %s: %s", self.name, self.where, progress_line(sent, seconds, self.estimate))


def progress_line(sent: int, seconds: float, estimate: int | None) -> str:
    """Pure: "1.2 GiB of about 4.0 GiB (30%), 95.1 MiB/s, about 30s left" (fewer parts when
    the size is unknown or already passed)."""
    rate = sent / seconds if seconds > 0 else 0
    text = format_size(sent)
    if estimate and estimate > sent:
        text += " of about %s (%d%%)" % (format_size(estimate), 100 * sent // estimate)
    text += ", %s/s" % format_size(rate)
    if estimate and estimate > sent and rate > 0:
        text += ", about %s left" % format_duration((estimate - sent) / rate)
    return text


def arrival_name(snapshot: Subvolume) -> str:
    """The name a receive gives the snapshot's backup: its subvolume's own name, which is the
    snapshot's name except for snapper's (all called `snapshot`; renamed once verified)."""
    return posixpath.basename(snapshot.path)


def verify_received(destination, runner, snapshot: Subvolume, answer: str | None = None) -> Subvolume:
    """Rule 2: the received subvolume must be read-only with received_uuid = the uuid the stream
    carried (planning.stream_uuid: the snapshot's uuid, or what a rebuilt snapshot was received as);
    one that arrived under another name (arrival_name) is then renamed to the snapshot's, in its folder.
    Its facts come from the receive's own `answer` (arrival_check) when that can be read, else
    from the destination, asked now."""
    arrived = arrival_name(snapshot)
    backup = parse_arrival(answer, destination.path, arrived) if answer else None
    if backup is None:
        backup = find_subvolume(destination, runner, destination.path, arrived)
    if backup is None:
        raise TransferError(f"{snapshot.name} did not appear at {destination.id} after the receive")
    expected = stream_uuid(snapshot)
    if not backup.complete or backup.received_uuid != expected:
        raise TransferError(
            f"{snapshot.name} at {destination.id} did not verify (read-only: {backup.readonly}, "
            f"received_uuid {backup.received_uuid}, expected {expected})")
    if arrived != snapshot.name:
        return name_arrival(destination, runner, backup, snapshot.name)
    return backup


def name_arrival(destination, runner, backup: Subvolume, name: str) -> Subvolume:
    """Rename a verified backup that arrived as `snapshot` to its snapshot's name (within its folder,
    which a read-only received subvolume allows)."""
    path = destination.join(name)
    effects.rename(destination, runner, backup.path, path)
    return backup._replace(name=name, path=path)


def is_partial_receive_of(found: Subvolume | None, snapshot: Subvolume) -> bool:
    """Whether `found`, under the snapshot's name right after its receive failed, is what that
    receive left (not complete, received from nothing else)."""
    expected = stream_uuid(snapshot)
    return found is not None and not (found.complete and found.received_uuid == expected) \
        and found.received_uuid in (None, expected)


def planned_backup(destination, snapshot: Subvolume) -> Subvolume:
    """What check mode assumes arrives: the snapshot's backup under its name at the destination."""
    return Subvolume(name=snapshot.name, path=destination.join(snapshot.name), id=None, uuid=None,
                     parent_uuid=None, received_uuid=stream_uuid(snapshot), readonly=True)


def receive_backup(origin, backup: Subvolume, here, runner, folder: str, parent: Subvolume | None = None) -> Subvolume:
    """Receive `backup` from `origin` into `folder` at `here` (which exists), incremental from
    `parent` (an older backup at `origin` received there before); the staged copy must be the
    complete backup (the same received_uuid)."""
    send = origin.command(btrfs.send_argv(backup.path, parent.path if parent else None))
    receive = here.command(btrfs.receive_argv(folder))
    run_pipeline(runner, [Stage(f"btrfs send at {origin.id}", send), Stage("btrfs receive", receive)])
    staged = find_subvolume(here, runner, folder, backup.name)
    if staged is None or not staged.complete or staged.received_uuid != backup.received_uuid:
        raise BackupError(f"the restored copy of {backup.name} did not verify")
    return staged
