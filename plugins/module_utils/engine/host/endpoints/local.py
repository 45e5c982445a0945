# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A path on this machine: commands run as they are, the kernel can be asked, the lock file is a local file."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os

from .. import btrfs
from .base import Endpoint, check_path

if TYPE_CHECKING:
    from ..runner import CommandRunner


class LocalEndpoint(Endpoint):
    """A path on this machine."""

    kind = "local"
    what = "a local folder"
    on_this_machine = True

    def __init__(self, path):
        path = check_path(path, "local path")
        super().__init__(os.path.abspath(path))
        self.resolved = None  # the id, resolved once: a run asks for it again and again

    @classmethod
    def from_location(cls, spec: str, **_settings) -> LocalEndpoint:
        return cls(spec)

    @property
    def id(self) -> str:
        # btrfs-backup 0.3 used the absolute path; a symlinked path is resolved so that
        # two spellings of one folder share their locks.
        if self.resolved is None:
            self.resolved = os.path.realpath(self.path)
        return self.resolved

    @property
    def id_aliases(self) -> set:
        return {self.path, self.id}

    def command(self, argv: list[str], privileged: bool = True) -> list:
        return list(argv)

    def with_path(self, path: str) -> LocalEndpoint:
        return LocalEndpoint(path)

    def lock_store(self, runner: CommandRunner, folder: str):
        from ..locks import LocalLockStore
        return LocalLockStore(folder)

    def sender(self, send_argv: list[str], compress_argv: list[str] | None = None,
               first: tuple[list[str], bool] | None = None) -> tuple:
        _no_network("compress", compress_argv)
        if first is not None:
            raise ValueError("a local send needs no command before it in the same process: run it apart")
        return "btrfs send", list(send_argv)

    def receiver(self, btrfs_debug: bool = False, decompress_argv: list[str] | None = None) -> tuple:
        _no_network("decompress", decompress_argv)
        return "btrfs receive", btrfs.receive_argv(self.path, btrfs_debug)

    def kernel_answers(self, runner: CommandRunner) -> bool:
        return getattr(runner, "kernel_listing", False)

    def shares_mounts_with(self, other: Endpoint) -> bool:
        return other.on_this_machine


def _no_network(what, argv):
    # A stream to or from this machine's own folder crosses no network: nothing to (de)compress.
    if argv is not None:
        raise ValueError("a local folder's stream is not %sed: it crosses no network" % what)
