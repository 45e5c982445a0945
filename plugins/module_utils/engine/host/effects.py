# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Effects at an endpoint that change it: run-or-raise, make a folder, snapshot, rename, delete subvolumes."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import datetime
import posixpath
import time

from . import btrfs

from ..model import names
from .listing import build_listing, find_subvolume, listing_commands
from ..model.errors import BackupError, EndpointError

if TYPE_CHECKING:
    from .endpoints.base import Endpoint
    from .listing import Subvolume
    from .runner import CommandResult, CommandRunner


def run_or_raise(endpoint: Endpoint, runner: CommandRunner, argv: list[str], what: str,
                 privileged: bool = True, first: tuple | None = None) -> CommandResult:
    """Run `argv` at `endpoint` (after `first`, in the same remote command: Endpoint.run_after); a
    failure raises with the command's last stderr line."""
    result = endpoint.run(runner, argv, privileged) if first is None else endpoint.run_after(runner, first, argv, privileged)
    if not result.ok:
        failure = endpoint.connection_failure(result)
        if failure is not None:
            raise failure
        detail = (result.stderr.strip().splitlines() or ["exit status %d" % result.returncode])[-1]
        raise BackupError("cannot %s: %s" % (what, detail))
    return result


def make_folder(endpoint: Endpoint, runner: CommandRunner, path: str, parents: bool = False):
    argv = ["mkdir"] + (["-p"] if parents else []) + ["--", path]
    run_or_raise(endpoint, runner, argv, "create folder %s" % path)


def take_snapshot(endpoint: Endpoint, runner: CommandRunner, source_path: str, snapshot_path: str) -> Subvolume:
    """A read-only snapshot of `source_path` at `snapshot_path`; returns it as listed."""
    folder, name = posixpath.split(snapshot_path)
    names.validate_name(name)
    argv, what = btrfs.snapshot_argv(source_path, snapshot_path), "snapshot %s to %s" % (source_path, snapshot_path)
    if endpoint.kernel_answers(runner):
        run_or_raise(endpoint, runner, argv, what)
        created = find_subvolume(endpoint, runner, folder, name)
    else:
        # At another host the snapshot and its listing go in one remote command: one round trip;
        # on a first run the folder is created in it too (create_in_next_command).
        made = [(["mkdir", "-p", "--", folder], True)] if endpoint.folder_to_create == folder else []
        answers = endpoint.run_batch(runner, made + [(argv, True)] + listing_commands(folder))
        if made:
            endpoint.folder_to_create = None
            if not answers[0].ok:
                # The batch's commands share one stderr: mkdir's own line says why.
                lines = answers[0].stderr.strip().splitlines()
                detail = next((line for line in lines if "mkdir" in line), "exit status %d" % answers[0].returncode)
                raise BackupError("cannot create folder %s: %s" % (folder, detail))
        taken, *listed = answers[len(made):]
        if not taken.ok:
            detail = (taken.stderr.strip().splitlines() or ["exit status %d" % taken.returncode])[-1]
            raise BackupError("cannot %s: %s" % (what, detail))
        created = build_listing(folder, (), listed).children.get(name)
    if created is None or not created.readonly:
        raise BackupError(f"snapshot {snapshot_path} was not created read-only")
    return created


def wait_until(when: datetime.datetime) -> None:
    """Sleep until the clock has reached `when` (a snapshot name has one-second resolution)."""
    wait = (when - datetime.datetime.now()).total_seconds()
    if wait > 0:
        time.sleep(wait + 0.01)


def snapshot_at(endpoint: Endpoint, runner: CommandRunner, source_path: str, path: str, writable: bool = False):
    """A snapshot at any path the user chose (a restore target), writable or read-only;
    a read-only snapshot of a received subvolume keeps its received_uuid."""
    argv = btrfs.snapshot_argv(source_path, path)
    if writable:
        argv.remove("-r")
    run_or_raise(endpoint, runner, argv, f"create {path}")


def rename(endpoint: Endpoint, runner: CommandRunner, path: str, new_path: str):
    run_or_raise(endpoint, runner, ["mv", "-T", "--", path, new_path], f"rename {path} aside")


def delete_subvolumes(endpoint: Endpoint, runner: CommandRunner, paths: list[str], folder: str,
                      convert_rw: bool = False, sync: bool = False, first: tuple | None = None):
    """Delete subvolumes in one btrfs call; -w makes them writable first, -s waits for the cleaner.
    `first` ((argv, privileged), at an end across a network): run before the first of these
    commands, in its own remote command, which goes on only if it succeeded."""
    for path in paths:
        names.validate_name(posixpath.basename(path))
    if convert_rw:
        for path in paths:
            make_writable(endpoint, runner, path, first)
            first = None
    run_or_raise(endpoint, runner, btrfs.delete_argv(paths, commit=sync), "delete %s" % ", ".join(paths), first=first)
    if sync:
        run_or_raise(endpoint, runner, btrfs.sync_argv(folder), "sync %s" % folder)


def make_writable(endpoint: Endpoint, runner: CommandRunner, path: str, first: tuple | None = None):
    """`ro false` before a delete (-w). btrfs-progs >= 5.14 refuses it for a received backup
    unless forced, and older releases do not know -f: so force only when refused."""
    what = "make %s writable" % path
    try:
        run_or_raise(endpoint, runner, btrfs.set_writable_argv(path), what, first=first)
    except EndpointError:
        raise
    except BackupError as err:
        if "received_uuid" not in str(err):
            raise
        run_or_raise(endpoint, runner, btrfs.set_writable_argv(path, force=True), what)
