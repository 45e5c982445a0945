# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The interface every kind of endpoint answers, so that no caller asks which kind it has."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import abc
import posixpath

from ...model.errors import ConfigError

if TYPE_CHECKING:
    from ..runner import CommandResult, CommandRunner


def check_path(path: str, what: str) -> str:
    """A usable filesystem path: no NUL/newline, no '..' component; returned normalised."""
    if not isinstance(path, str) or not path:
        raise ConfigError("%s: a path is required" % what)
    if "\x00" in path or "\n" in path:
        raise ConfigError("%s %r: control characters are not allowed in paths" % (what, path))
    if ".." in path.split("/"):
        raise ConfigError("%s %r: '..' is not allowed in paths; give an absolute path" % (what, path))
    path = posixpath.normpath(path)
    # POSIX keeps a leading '//' apart; Linux does not, and one folder must have one id.
    return "/" + path.lstrip("/") if path.startswith("//") else path


class Endpoint(abc.ABC):
    """One place a job reads snapshots from or sends them to. Each kind (local.py, ssh.py,
    shell.py) answers every question the engine has about it: how it runs a command, what
    a failure there means, how it sends and receives a stream, where its lock file lives."""

    #: The kind's name (its URL scheme; "local" for a path): for tests and messages, never asked.
    kind = ""
    #: How a message names a place of this kind.
    what = ""
    #: It has a folder of subvolumes to list, check and delete from (False: a stream sink).
    can_list = True
    #: Its folder is on this machine's filesystem: os.path and this machine's files reach it.
    on_this_machine = False
    #: Its commands and streams cross a network: compression pays on the way, its tools are
    #: another host's, and that host may be a backup server's `btrfs-backup serve`.
    crosses_network = False
    #: A stream sent to it ends in `btrfs receive` (False: in a command that takes any stream,
    #: so nothing of its tools is asked and it gets the plain protocol 1 stream).
    receives_with_btrfs = True
    #: A transfer to it can be staged in verified chunks and resumed after a cut (host/staging.py):
    #: a folder at another host, whose link may drop while this machine goes on.
    can_stage = False
    #: It keeps each stream as an archive of a store (borg, restic): listed, deleted and given
    #: back by that store's tool (host/endpoints/archive.py), never received by btrfs.
    holds_archives = False
    #: A missing folder there that the next command which needs it (a receive into it, a snapshot
    #: taken in it) creates first, in its own remote command (set by create_in_next_command).
    folder_to_create = None
    #: Its receive can answer, on its output, what arrived (host/arrival_check.py): the receive's
    #: remote command reads it (receiver's `arrival`), or a backup server's serve says it by itself.
    answers_arrival = False
    #: A snapshot taken there can ride in the command of the send that sends it (snapshot_in_send).
    snapshots_in_send = False

    def __init__(self, path):
        self.path = path

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """The destination id (btrfs-backup 0.3's shape, the key in the lock file)."""

    @property
    @abc.abstractmethod
    def id_aliases(self) -> set:
        """Every id under which the lock file may name this endpoint."""

    @abc.abstractmethod
    def command(self, argv, privileged=True) -> list:
        """The argv that runs `argv` at the endpoint (`privileged`: a command that needs root)."""

    @abc.abstractmethod
    def with_path(self, path) -> Endpoint:
        """The same place with another folder."""

    def with_login(self, user, port) -> Endpoint:
        """The same place, reached as `user` on `port` where its location named neither (a place
        that needs no login is itself)."""
        return self

    def failure_hint(self, text: str) -> str:
        """Pure: what to do about a failure here that says `text`, as ` (hint)`; '' for none."""
        return ""

    @abc.abstractmethod
    def lock_store(self, runner: CommandRunner, folder: str):
        """The lock file of its snapshot folder `folder` (host/locks.py)."""

    @abc.abstractmethod
    def sender(self, send_argv, compress_argv=None, first=None) -> tuple:
        """(stage name, argv) of the process that writes a send stream here; `compress_argv`
        compresses it before it leaves, and `first` ((argv, privileged)) runs there before it,
        the send starting only once it succeeded (both only where the stream crosses a network)."""

    @abc.abstractmethod
    def receiver(self, btrfs_debug=False, decompress_argv=None) -> tuple:
        """(stage name, argv) of the process that takes a send stream here (`btrfs_debug`: a
        btrfs receive says what it does); `decompress_argv` first, when the stream comes
        compressed over a network."""

    def create_in_next_command(self, folder: str) -> bool:
        """Let the next command that needs the missing `folder` (a receive into it, a snapshot
        taken in it) create it first, in the same remote command: one round trip less than a mkdir
        of its own. False: this kind cannot, the folder is made apart."""
        return False

    def snapshot_in_send(self, source_path: str, snapshot_path: str, lock_write: tuple | None = None) -> str | None:
        """The start of a send's remote command that takes the read-only snapshot it sends
        (host/snapshot_in_send.py: after the missing snapshot folder and `lock_write`, the lock
        file, are made), to pass as the sender's `first`; None: this kind takes it apart (snapshots_in_send False)."""
        return None

    def stream_command(self, argv, decompress_argv=None) -> list:
        """The argv that runs `argv` (privileged) there on a stream; `decompress_argv` first, when
        the stream comes compressed over a network. Only an endpoint that `can_stage` has one."""
        raise NotImplementedError("%s takes no staged stream" % self.what)

    def storing(self, snapshot, parent) -> Endpoint:
        """This place bound to the stream of `snapshot` from `parent` (an archive store names the
        archive it stores after them); any other is itself."""
        return self

    def shape_transfers(self, transfers: list, held: dict) -> list:
        """The planned transfers as this kind sends them (an archive store starts a new chain
        with a full stream now and then); most send them as planned."""
        return transfers

    def mark_unfinished(self, held: dict, locked_names) -> dict:
        """What it holds, with what an unfinished transfer left counted as partial; a btrfs
        folder's listing says that itself (a writable subvolume without received_uuid)."""
        return held

    def run(self, runner: CommandRunner, argv: list[str], privileged: bool = True,
            input_text: str | None = None) -> CommandResult:
        """Run `argv` at the endpoint through `runner`; its CommandResult."""
        command = self.command(argv, privileged)
        return runner.run(command) if input_text is None else runner.run(command, input_text=input_text)

    def run_after(self, runner: CommandRunner, first: tuple[list[str], bool], argv: list[str],
                  privileged: bool = True) -> CommandResult:
        """Run `argv` there only once `first` ((argv, privileged)) succeeded, in one command: at an
        end across a network, one round trip for both. Only such an end is asked."""
        raise NotImplementedError("%s runs no command after another in one" % self.what)

    def run_batch(self, runner: CommandRunner, commands: list[tuple[list[str], bool]]) -> list[CommandResult]:
        """Run several (argv, privileged) commands at the endpoint, returning one CommandResult each."""
        return [self.run(runner, argv, privileged) for argv, privileged in commands]

    def connection_failure(self, result: CommandResult) -> Exception | None:
        """The error a failed `result` of one of its commands means beyond that command (the
        host was not reached), or None: the command itself failed."""
        return None

    def kernel_answers(self, runner) -> bool:
        """Whether this machine's kernel can be asked about its subvolumes directly (an ioctl,
        no process), which it can only for the real machine, not through a fake runner."""
        return False

    def shares_mounts_with(self, other) -> bool:
        """Whether its listings and `other`'s name devices of one machine's mounts, so that the
        same mount source there is the same filesystem (rule 8)."""
        return False

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def __str__(self):
        return self.id
