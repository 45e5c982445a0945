# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""`shell://COMMAND`: a stream sink with no folder; the send stream is piped into the user's shell command."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

from ...model.errors import ConfigError, EndpointError
from .base import Endpoint

if TYPE_CHECKING:
    from ..runner import CommandRunner


class ShellEndpoint(Endpoint):
    """`shell://COMMAND`: the send stream is piped into the user's own shell command."""

    kind = "shell"
    what = "a shell:// sink"
    can_list = False
    receives_with_btrfs = False

    def __init__(self, shell_command):
        if not shell_command.strip():
            raise ConfigError("shell:// destination needs a command, e.g. 'shell://cat > /backup/file'")
        super().__init__(None)
        self.shell_command = shell_command

    @classmethod
    def from_location(cls, spec: str, *, as_source: bool = False, **_settings) -> ShellEndpoint:
        if as_source:
            raise ConfigError("%r: a shell:// command can only be a destination" % spec)
        return cls(spec[len("shell://"):])

    @property
    def id(self) -> str:
        return "shell://%s" % self.shell_command

    @property
    def id_aliases(self) -> set:
        return {self.id}

    def command(self, argv: list[str], privileged: bool = True) -> list:
        raise EndpointError("shell:// destinations only receive a stream")

    def with_path(self, path: str) -> ShellEndpoint:
        raise EndpointError("a shell:// destination has no folder")

    def lock_store(self, runner: CommandRunner, folder: str):
        raise EndpointError("a shell:// destination has no snapshot folder")

    def sender(self, send_argv: list[str], compress_argv: list[str] | None = None,
               first: tuple[list[str], bool] | None = None) -> tuple:
        raise EndpointError("a shell:// command can only be a destination")

    def receiver(self, btrfs_debug: bool = False, decompress_argv: list[str] | None = None) -> tuple:
        # The user's command takes the stream as btrfs send wrote it: no btrfs receive, nothing
        # compressed (it crosses no network).
        if decompress_argv is not None:
            raise ValueError("a shell:// sink's stream is not compressed: it crosses no network")
        return "shell command %r" % self.shell_command, self.receive_argv()

    def receive_argv(self) -> list[str]:
        # The user wrote a shell command on purpose; it is the one place a shell is used.
        return ["sh", "-c", self.shell_command]
