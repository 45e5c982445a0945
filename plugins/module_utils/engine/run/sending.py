# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The Send step carried out (locks held, one stream fanned out, each arrival verified) or planned."""

from __future__ import annotations

import logging

from ..host.listing import list_folder
from ..model.errors import BackupError, TransferError
from ..model.steps import DeletePartialReceives
from .transfer import arrival_name, is_partial_receive_of, planned_backup, send_stream, verify_received

LOG = logging.getLogger("btrfs_backup")


class SendOutcome:
    """What one Send gave one destination: the verified backup (the snapshot, for a stream sink),
    the stream's size, its compressed size on the link (None: not compressed); `planned`: check
    mode's stand-in, nothing was sent."""

    __slots__ = ("backup", "bytes_sent", "seconds", "wire_bytes", "planned")

    def __init__(self, backup, bytes_sent=None, seconds=None, wire_bytes=None, planned=False):
        self.backup, self.bytes_sent, self.seconds, self.wire_bytes = backup, bytes_sent, seconds, wire_bytes
        self.planned = planned


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
    TransferError of a destination whose transfer failed (the others are not stopped)."""
    snapshot, parent, dests = step.snapshot, step.parent, step.destinations
    parent_name = parent.name if parent else None
    LOG.info("sending %s to %s (%s)", snapshot.name, ", ".join(d.id for d in dests), step.mode)
    # Locked before the first byte moves, so a crash at any point is found by the next run (rule 3).
    for dest in dests:
        executor.locks.hold(snapshot.name, parent_name, dest.id)
    executor.save_locks()
    # A failure, or an interruption (SIGTERM, Ctrl-C), leaves the lock: the next run cleans up.
    try:
        stats = send_stream(step.source, dests, snapshot, parent, executor.runner, executor.options,
                            executor.probe(step.source))
        failures = stats.failures
    except BackupError as err:  # the stream could not start (a program missing): none got it
        stats, failures = None, {dest: str(err) for dest in dests}
    outcomes = {dest.id: _arrival(executor, dest, snapshot, parent_name, stats, failures.get(dest))
                for dest in dests}
    if len(outcomes) > sum(isinstance(o, TransferError) for o in outcomes.values()):
        executor.save_locks(durable=False)  # the backups are verified: losing this write is harmless
    return outcomes


def _arrival(executor, dest, snapshot, parent_name, stats, failure):
    """What arrived at one destination: its SendOutcome, or the TransferError that says why not."""
    try:
        if failure is not None:
            raise TransferError(failure)
        backup = verify_received(dest, executor.runner, snapshot) if dest.can_list else snapshot
    except BackupError as err:
        error = TransferError(f"sending {snapshot.name} to {dest.id} failed: {err}")
        error.detail = str(err)
        error.partial_receive_deleted = _remove_partial_receive(executor, dest, snapshot) if dest.can_list else None
        return error
    executor.locks.settle(snapshot.name, parent_name, dest.id_aliases)
    wire = stats.wire_bytes.get(dest)
    LOG.info("%s: %s arrived (%s bytes%s in %.1fs)", dest.id, snapshot.name, stats.bytes_sent,
             f", {wire} compressed" if wire else "", stats.seconds)
    return SendOutcome(backup, stats.bytes_sent, round(stats.seconds, 3), wire)


def _remove_partial_receive(executor, dest, snapshot):
    """Best effort right after a failure; if it fails too, the lock makes the next run do it."""
    try:
        found = list_folder(dest, executor.runner).children.get(arrival_name(snapshot))
        if not is_partial_receive_of(found, snapshot):
            return None
        executor.carry_out(DeletePartialReceives(endpoint=dest, paths=(found.path,), folder=dest.path,
                                                 where=dest.id))
        return found.path
    except BackupError as err:
        LOG.warning("%s: could not remove the partial receive of %s now (%s); "
                    "the next run will", dest.id, snapshot.name, err)
        return None
