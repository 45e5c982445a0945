# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""One snapshot to one destination (or a backup back for a restore): send|receive stages, the check of what arrived."""

from __future__ import annotations

import sys

from . import btrfs
from .errors import BackupError, TransferError
from .listing import Subvolume, find_subvolume
from .pipeline import Stage, run_pipeline


def send_stages(source, destination, snapshot: Subvolume, parent: Subvolume | None,
                debug: bool = False, progress: bool = False) -> list:
    """`btrfs send [-p parent]` at the source, `pv` when asked and at a terminal, then the receiver."""
    send = source.command(btrfs.send_argv(snapshot.path, parent.path if parent else None, debug))
    stages = [Stage("btrfs send" if source.kind == "local" else f"btrfs send on {source.host}", send)]
    if progress and sys.stderr.isatty():
        import shutil  # only here: start-up time of every run
        if shutil.which("pv"):
            stages.append(Stage("pv", ["pv"], capture_stderr=False))
    if destination.kind == "shell":
        stages.append(Stage(f"shell command {destination.shell_command!r}", destination.receive_argv()))
    else:
        receive = destination.command(btrfs.receive_argv(destination.path, debug))
        stages.append(Stage("btrfs receive" if destination.kind == "local" else
                            f"btrfs receive on {destination.host}", receive))
    return stages


def verify_received(destination, runner, snapshot: Subvolume) -> Subvolume:
    """Rule 2: the received subvolume must be read-only with received_uuid = snapshot uuid."""
    backup = find_subvolume(destination, runner, destination.path, snapshot.name)
    if backup is None:
        raise TransferError(f"{snapshot.name} did not appear at {destination.id} after the receive")
    if not backup.complete or backup.received_uuid != snapshot.uuid:
        raise TransferError(
            f"{snapshot.name} at {destination.id} did not verify (read-only: {backup.readonly}, "
            f"received_uuid {backup.received_uuid}, expected {snapshot.uuid})")
    return backup


def is_partial_receive_of(found: Subvolume | None, snapshot: Subvolume) -> bool:
    """Whether `found`, under the snapshot's name right after its receive failed, is what that
    receive left (not complete, received from nothing else)."""
    return found is not None and not (found.complete and found.received_uuid == snapshot.uuid) \
        and found.received_uuid in (None, snapshot.uuid)


def planned_backup(destination, snapshot: Subvolume) -> Subvolume:
    """What check mode assumes arrives: the snapshot's backup under its name at the destination."""
    return Subvolume(name=snapshot.name, path=destination.join(snapshot.name), id=None, uuid=None,
                     parent_uuid=None, received_uuid=snapshot.uuid, readonly=True)


def receive_backup(origin, backup: Subvolume, here, runner, folder: str) -> Subvolume:
    """Receive `backup` from `origin` into `folder` at `here` (which exists); the staged copy
    must be the complete backup (the same received_uuid)."""
    send = origin.command(btrfs.send_argv(backup.path))
    receive = here.command(btrfs.receive_argv(folder))
    run_pipeline(runner, [Stage(f"btrfs send at {origin.id}", send), Stage("btrfs receive", receive)])
    staged = find_subvolume(here, runner, folder, backup.name)
    if staged is None or not staged.complete or staged.received_uuid != backup.received_uuid:
        raise BackupError(f"the restored copy of {backup.name} did not verify")
    return staged
