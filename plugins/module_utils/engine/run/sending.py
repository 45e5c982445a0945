# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The Send step carried out (locks held, one stream fanned out, each arrival verified) or planned."""

from __future__ import annotations

import collections
import posixpath
import sys

from ..host import btrfs, effects, snapshot_in_send
from ..host.arrival_check import parse_filesystem_id
from ..host.listing import find_subvolume, list_folder
from ..host.overlap import InBackground
from ..host.staging import StagingRefused
from ..model import resumable
from ..model.errors import BackupError, TransferError
from ..model.log import LOG
from ..model.receive_slots import slot_wait
from ..model.steps import DeletePartialReceives, Send
from ..model.units import format_size
from .staged_send import StagedProgress, send_staged
from .transfer import (arrival_name, gated_send_argv, is_partial_receive_of, open_receive_early, planned_backup,
                       sample_compressible, send_stream, verify_received)


class SendOutcome:
    """What one Send gave one destination: the verified backup (the snapshot, for a stream sink),
    the stream's size (a staged transfer: the bytes this run sent), its compressed size on the link
    (None: not compressed, or not counted here: `compressed` says which); `planned`: check mode's
    stand-in, nothing was sent."""

    __slots__ = ("backup", "bytes_sent", "seconds", "wire_bytes", "planned", "resumed_bytes", "slot_wait", "compressed")

    def __init__(self, backup, bytes_sent=None, seconds=None, wire_bytes=None, planned=False, resumed_bytes=None,
                 slot_wait=None, compressed=None):
        self.backup, self.bytes_sent, self.seconds, self.wire_bytes = backup, bytes_sent, seconds, wire_bytes
        # Whether the stream crossed compressed (also when no process here counted its bytes).
        self.compressed = wire_bytes is not None if compressed is None else compressed
        self.planned = planned
        self.resumed_bytes = resumed_bytes  # a staged transfer: the bytes already staged (None: not staged)
        self.slot_wait = slot_wait  # seconds the backup server's receive waited for a slot (None: no wait)


def plan_send(executor, step) -> dict:
    """Check mode: the locks settle as a real send would leave them; dest id -> planned SendOutcome."""
    parent_name = step.parent.name if step.parent else None
    for dest in step.destinations:
        executor.locks.settle(step.snapshot.name, parent_name, dest.id_aliases)
    return {dest.id: SendOutcome(planned_backup(dest, step.snapshot) if dest.can_list else step.snapshot,
                                 planned=True)
            for dest in step.destinations}


def send(executor, step) -> dict:
    """One send to every destination of the step; returns dest id -> SendOutcome, or the
    TransferError of a destination whose transfer failed (the others are not stopped). A
    destination whose transfer is staged (resumable) gets a send of its own: a resumed stream
    starts where its staging ends, which is not where another destination's starts. The receive
    of a send to one ssh host starts first (transfer.open_receive_early), or started before the
    survey already (transfer.receive_ahead): its channel opens while the work here goes on; if no
    stream comes (an error here), it receives nothing."""
    early = executor.take_receive_ahead(step) or open_receive_early(
        step.source, step.destinations, step.snapshot, step.parent, executor.runner, executor.options,
        executor.probe(step.source), executor.stream_compressed_before(step.destinations[0].id))
    try:
        return _send(executor, step, early)
    finally:
        if early is not None:
            early.give_up()


def _send(executor, step, early) -> dict:
    """send() with the receive it may have started already (`early`, or None)."""
    pending = executor.pending_of(step.snapshot)
    if pending is not None and _named_or_shown_first(executor, step):
        # An archive is named after it, pv's bar shows its size: it is taken in a command of its own.
        step = Send(source=step.source, snapshot=executor.take_pending_snapshot(), parent=step.parent,
                    destinations=step.destinations)
        pending = None
    # Its stream's size is estimated before it starts (a staged transfer's decision): the snapshot
    # is taken in the command of a gated send, which the estimate's pass precedes.
    gated = pending is not None and not _snapshot_rides(executor, step)
    snapshot, parent, dests = step.snapshot, step.parent, step.destinations
    parent_name = parent.name if parent else None
    LOG.info("sending %s to %s (%s)", snapshot.name, ", ".join(d.id for d in dests), step.mode)
    # The compressibility sample reads the snapshot while the locks are saved and the stream's size
    # is estimated: none of them decides anything about the others (an incremental's sample waits
    # for that estimate's pass).
    sampling = InBackground(sample_compressible, step.source, dests, snapshot, executor.options.stream,
                            executor.probe(step.source), parent)
    # Locked before the first byte moves, so a crash at any point is found by the next run (rule 3).
    for dest in dests:
        executor.locks.hold(snapshot.name, parent_name, dest.id)
    gate = _GateOfSend(executor, step, pending, sampling.result()) if gated else None
    try:
        return _send_after_gate(executor, step, early, pending, sampling, gate)
    finally:
        if gate is not None:
            gate.close()


def _send_after_gate(executor, step, early, pending, sampling, gate) -> dict:
    """_send once its locks are held (and its gated send started: `gate`, or None)."""
    snapshot, parent, dests = step.snapshot, step.parent, step.destinations
    staged, estimate = _staged_destinations(executor, step)
    gate_line = gate.line if gate is not None and gate.waiting and not staged else None
    if gate is not None and not gate_line:
        # It ended before its gate (nothing estimated), or the staged transfer sends the snapshot:
        # the command ends, its snapshot as taken.
        step = Send(source=step.source, snapshot=gate.taken(), parent=parent, destinations=dests)
        snapshot, pending = step.snapshot, None
    hold_first = None if staged or gate_line else _hold_in_send(executor, step.source)
    if hold_first is None and gate is None:  # a gated command wrote the lock file before its snapshot
        if pending is not None and step.source.folder_to_create is not None:
            effects.make_folder(step.source, executor.runner, step.source.folder_to_create, parents=True)
            step.source.folder_to_create = None  # the lock file goes there now
        executor.save_locks()
    if gate_line:
        hold_first = gate_line
    elif pending is not None:  # `[mkdir &&] WRITE && snapshot && its facts && btrfs send`: rule 3 holds
        hold_first = step.source.snapshot_in_send(pending.step.source_path, pending.step.path, hold_first)
    compressible = sampling.result()
    direct = [dest for dest in dests if dest not in staged]
    arrived, failures, left_staged, slot_waits = {}, {}, {}, {}
    for dest in staged:
        try:
            done = _send_staged(executor, step, dest, estimate, compressible)
            arrived[dest] = _Arrived(done.bytes_sent, done.wire_bytes, done.seconds, done.skipped, None,
                                     done.wire_bytes is not None)
        except StagingRefused as err:
            LOG.warning("%s; %s is sent directly", err, snapshot.name)
            direct.append(dest)
        except BackupError as err:
            failures[dest] = str(err)
            left_staged[dest] = share = getattr(err, "resumable", None)
            if share:
                executor.record_staged(snapshot.name, dest.id, share["staged_bytes"], estimate)
    # A failure, or an interruption (SIGTERM, Ctrl-C), leaves the lock: the next run cleans up.
    if direct:
        try:
            stats = send_stream(step.source, direct, snapshot, parent, executor.runner, executor.options,
                                executor.probe(step.source), estimate, compressible, hold_first, early,
                                gated=gate.command if gate_line else None)
            failures.update(stats.failures)
            arrived.update((dest, _Arrived(stats.bytes_sent, stats.wire_bytes.get(dest), stats.seconds, None,
                                           stats.answers.get(dest), dest in stats.wire_bytes))
                           for dest in direct)
            slot_waits = _slot_waits(direct, stats)
        except BackupError as err:  # the stream could not start (a program missing): none got it
            failures.update((dest, str(err)) for dest in direct)
        else:
            if pending is not None:  # raises when it was not taken: the run stops, as before
                snapshot, unverified = _taken_in_send(executor, step, pending, stats.source_said)
                failures.update((dest, unverified) for dest in direct if unverified and dest not in failures)
    # A snapshot taken in the send whose facts are not known: whatever arrived under its name,
    # which was free before this send, goes (never kept unverified).
    claimed = pending is not None and not pending.verified
    outcomes = {dest.id: _arrival(executor, dest, snapshot, parent, arrived.get(dest), failures.get(dest), claimed)
                for dest in dests}
    for dest, waited in slot_waits.items():
        if not isinstance(outcomes[dest.id], TransferError):
            outcomes[dest.id].slot_wait = waited
    for dest, share in left_staged.items():
        outcomes[dest.id].resumable = share  # how far a cut resumable transfer got (the run record)
    if len(outcomes) > sum(isinstance(o, TransferError) for o in outcomes.values()):
        executor.save_settled_locks()  # the backups are verified: losing this write is harmless
    return outcomes


def _snapshot_rides(executor, step) -> bool:
    """Whether the pending snapshot of `step` can be taken in its send's own command: nothing
    needs it before its stream starts (a staged transfer's estimate, an archive's name, the size
    that pv's bar on a terminal shows)."""
    stream = executor.options.stream
    return not _named_or_shown_first(executor, step) \
        and not any(dest.can_stage and stream.resumable != "never" for dest in step.destinations)


def _named_or_shown_first(executor, step) -> bool:
    """Whether the pending snapshot of `step` must be taken in a command of its own before its
    send: an archive is named after it, or pv's bar on a terminal shows its stream's size."""
    return (executor.options.progress and sys.stderr.isatty()) or any(d.holds_archives for d in step.destinations)


class _GateOfSend:
    """The gated send of a Send's pending snapshot at its source, started (host/gated_send.py):
    its lock file written, its snapshot taken, its `--no-data` stream read (the size estimate,
    kept by the probe). `line`: the gated line, the `first` of the send that goes on; `command`:
    the GatedSend; `waiting`: it waits at its gate (else it ended before, its snapshot taken or not)."""

    def __init__(self, executor, step, pending, compressible):
        from ..host.gated_send import GatedSend, gated_line
        from ..host.stream_size import StreamSizer

        self.executor, self.step, self.pending = executor, step, pending
        source, path = step.source, pending.step.path
        parent_path = step.parent.path if step.parent else None
        hold = _hold_in_send(executor, source)
        if hold is None:  # a lock file too long for a command line: written apart first
            executor.save_locks()
        LOG.info("snapshot %s -> %s, in the command of its size estimate and send", pending.step.source_path, path)
        first = source.snapshot_in_send(pending.step.source_path, path, hold)
        self.line = gated_line(first, source.remote_line(btrfs.send_argv(path, parent_path, no_data=True), True))
        argv = gated_send_argv(source, step.destinations, step.snapshot, step.parent, executor.options,
                               executor.probe(source), compressible, self.line)
        try:
            self.command = GatedSend(executor.runner, argv)
        except OSError as err:  # nothing ran there: no lock file, no snapshot
            raise BackupError(f"cannot start {argv[0]} for the send of {path}: {err.strerror}")
        sizer = None
        try:
            sizer = self.command.read_no_data(StreamSizer())
        except (ValueError, TimeoutError, OSError) as err:  # no estimate, no failure
            LOG.debug("no size estimate for %s: %s", path, err)
        executor.probe(source).know_no_data_send(source, path, parent_path, sizer)

    @property
    def waiting(self) -> bool:
        return self.command.waiting

    def taken(self):
        """The snapshot the command took, its command ended (a staged transfer sends it), as its
        facts on stderr say; fails the run as a snapshot taken apart does."""
        said = self.command.stop()
        snapshot, unverified = _taken_in_send(self.executor, self.step, self.pending, said)
        if unverified:
            raise BackupError(unverified)
        return snapshot

    def close(self):
        self.command.close()


def _taken_in_send(executor, step, pending, said: str) -> tuple:
    """What the send's command says on stderr (`said`) of the snapshot it took first: (the snapshot
    as its facts describe it, or its stand-in when they cannot be read; why no backup of it may
    be kept, or None). Its facts that cannot be read are asked apart; a snapshot that was not taken
    fails the run as a snapshot taken apart does, its locks settled (rule 3: the lock file names no
    snapshot that does not exist)."""
    path = pending.step.path
    if not snapshot_in_send.was_taken(said):
        pending.not_taken()
        parent = step.parent.name if step.parent else None
        for dest in step.destinations:
            executor.locks.settle(pending.stand_in.name, parent, dest.id_aliases)
            if dest.can_list:
                _remove_partial_receive(executor, dest, pending.stand_in)
        executor.save_settled_locks()
        raise BackupError(snapshot_in_send.not_taken_reason(said, pending.step.source_path, path))
    facts = snapshot_in_send.snapshot_facts(said, path)
    if facts is None:
        LOG.info("the facts of snapshot %s could not be read from its send; asking %s", path, step.source.id)
        try:
            facts = find_subvolume(step.source, executor.runner, posixpath.dirname(path), pending.stand_in.name)
        except BackupError as err:
            LOG.warning("the facts of snapshot %s cannot be read: %s", path, err)
    pending.took(facts)
    if facts is None:
        return pending.stand_in, f"the facts of snapshot {path} could not be read: its backup cannot be verified"
    if not facts.readonly:
        return facts, f"snapshot {path} was not created read-only"
    return facts, None


def _hold_in_send(executor, source):
    """The command that writes the held locks at a source across a network as the first part of
    the send's own remote command (`WRITE && btrfs send`: the send never starts unless the lock
    file is durable there, rule 3; one round trip less); None: written apart first (a source on
    this machine, or a lock file too long for a command line)."""
    write_command = getattr(executor.store, "write_command", None)
    if not source.crosses_network or write_command is None:
        return None
    return write_command(executor.locks)


def _slot_waits(destinations, stats) -> dict:
    """dest -> seconds its backup server's receive waited for a receive slot, for those that waited
    (each said in the log: a fleet sees that its server is saturated)."""
    waits = {}
    for dest in destinations:
        waiting, waited = slot_wait(stats.stderr.get(dest, ""))
        if waiting is None:
            continue
        if waited is not None:
            LOG.info("%s: %s at the backup server; waited %.1f s", dest.id, waiting, waited)
            waits[dest] = round(waited, 3)
        else:
            LOG.warning("%s: %s at the backup server; none came free", dest.id, waiting)
    return waits


def _staged_destinations(executor, step):
    """The destinations whose transfer is staged (resumable.stages), and the stream's estimated
    size when it was asked for (None otherwise). Only an ssh folder stages (a backup server's
    `serve` too, through its staging verbs)."""
    stream = executor.options.stream
    candidates = [d for d in step.destinations if d.can_stage]
    if not candidates or stream.resumable == "never":  # nothing stages: neither an estimate nor a walk
        return [], None
    if not resumable.estimate_needed(stream.resumable, _full_stream_bound(executor, step)):
        return [], None
    ends = executor.probe(step.source)
    estimate = ends.estimate(step.source, step.snapshot.path, step.parent.path if step.parent else None)
    # A backup server bounds a staging by the stream's size: without an estimate, no staging there.
    return [d for d in candidates if resumable.stages(stream.resumable, estimate, True)
            and (estimate is not None or not ends.is_serve(d))], estimate


def _full_stream_bound(executor, step) -> int | None:
    """With `--resumable auto`, the most a full send from this machine can carry, when a bounded
    walk of its files met all of them (resumable.full_stream_bound): below the threshold, no
    `--no-data` pass holds its first byte back (~0.1 s for 3,000 files). None: unknown."""
    if executor.options.stream.resumable != "auto" or step.parent is not None or not step.source.on_this_machine:
        return None
    tree = executor.probe(step.source).tree_size(step.source, step.snapshot.path)
    if tree is None:
        return None
    bound = resumable.full_stream_bound(tree.file_bytes, tree.entries)
    if bound < resumable.AUTO_THRESHOLD:
        LOG.info("%s: a full stream of at most %s (%s in %d entries): sent directly, not estimated first",
                 step.snapshot.name, format_size(bound), format_size(tree.file_bytes), tree.entries)
    return bound


def _send_staged(executor, step, dest, estimate, compressible):
    """One staged transfer, with its progress lines and the compression sample's verdict of a direct one."""
    if getattr(dest, "expect_filesystem", None) is not None and not executor.forecast_holds(dest):
        # Planned on the last run's record: its staging would land before the receive's own check.
        raise BackupError(f"{dest.id} is not what this job's last run left there")
    if dest.folder_to_create == dest.path:  # its staging lies in the folder: made now, not by the receive
        effects.make_folder(dest, executor.runner, dest.path, parents=True)
        dest.folder_to_create = None
    ends = executor.probe(step.source)
    name = step.snapshot.name
    progress = StagedProgress(dest, name, estimate,
                              record=lambda staged: executor.record_staged(name, dest.id, staged, estimate))
    LOG.info("%s: %s goes as a resumable transfer (staged in chunks of %s)", dest.id, name,
             format_size(executor.options.stream.chunk_size))
    done = send_staged(executor, step, dest, estimate, compressible, progress, serve=ends.is_serve(dest))
    executor.record_staged(name, dest.id, None, estimate)  # it arrived: no share left to tell
    return done


#: What a send says of one destination: bytes sent, compressed bytes (None: not compressed),
#: seconds, bytes resumed from staging (None: not staged) and the receive's answer about what
#: arrived (None: none, host/arrival_check.py).
_Arrived = collections.namedtuple("_Arrived", "sent wire seconds resumed answer compressed")


def _arrival(executor, dest, snapshot, parent, arrived, failure, claimed=False):
    """What arrived at one destination (`arrived`: an _Arrived, None when nothing did): its
    SendOutcome, or the TransferError that says why not (`claimed`: then whatever arrived under
    the snapshot's name is removed, not only a partial receive)."""
    try:
        if failure is not None:
            raise TransferError(failure)
        if dest.holds_archives:
            backup = dest.arrived(executor.runner, snapshot, parent)
        else:
            answer = arrived.answer if arrived else None
            backup = verify_received(dest, executor.runner, snapshot, answer) if dest.can_list else snapshot
            if answer and dest.answers_arrival:
                dest.filesystem_seen = parse_filesystem_id(answer) or dest.filesystem_seen  # the next run's check
    except BackupError as err:
        error = TransferError(f"sending {snapshot.name} to {dest.id} failed: {err}{dest.failure_hint(str(err))}")
        error.detail = str(err)
        error.partial_receive_deleted = _remove_partial_receive(executor, dest, snapshot, claimed) \
            if dest.can_list else None
        return error
    executor.locks.settle(snapshot.name, parent.name if parent else None, dest.id_aliases)
    LOG.info("%s: %s arrived (%s bytes%s%s in %.1fs)", dest.id, snapshot.name, _counted(arrived.sent),
             (f", {_counted(arrived.wire)} compressed") if arrived.compressed else "",
             f", {arrived.resumed} resumed from staging" if arrived.resumed else "", arrived.seconds)
    return SendOutcome(backup, arrived.sent, round(arrived.seconds, 3), arrived.wire, resumed_bytes=arrived.resumed,
                       compressed=arrived.compressed)


def _counted(size):
    """A byte count for the log; None: no process here saw those bytes (a relay's stream passes from
    one ssh connection to the other)."""
    return "uncounted" if size is None else size


def _remove_partial_receive(executor, dest, snapshot, claimed=False):
    """Best effort right after a failure; if it fails too, the lock makes the next run do it.
    `claimed`: the name was free before this send, so whatever is there now is its arrival."""
    if dest.holds_archives:
        return _remove_failed_archive(executor, dest, snapshot)
    try:
        found = list_folder(dest, executor.runner).children.get(arrival_name(snapshot))
        if not (found is not None and claimed or is_partial_receive_of(found, snapshot)):
            return None
        executor.carry_out(DeletePartialReceives(endpoint=dest, paths=(found.path,), folder=dest.path,
                                                 where=dest.id))
        return found.path
    except BackupError as err:
        LOG.warning("%s: could not remove the partial receive of %s now (%s); "
                    "the next run will", dest.id, snapshot.name, err)
        return None


def _remove_failed_archive(executor, dest, snapshot):
    """Rule 2 at an archive store: an archive of the failed send (restic keeps what a cut stdin
    gave it, if anything passed its guard) is deleted now; if that fails, the lock makes the next run."""
    try:
        removed = dest.remove_failed(executor.runner, snapshot)
    except BackupError as err:
        LOG.warning("%s: could not remove what the failed send of %s stored (%s); the next run will",
                    dest.id, snapshot.name, err)
        return None
    if removed:
        LOG.warning("%s: removed the archive %s that the failed send of %s left", dest.id, removed, snapshot.name)
    return removed
