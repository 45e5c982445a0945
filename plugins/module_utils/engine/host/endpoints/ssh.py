# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""`ssh://[user@]host[:port]/path`: a folder on another host, reached with ssh(1); one shared
connection per host and run (SshConnections), several commands in one batch."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import functools
import os
import posixpath
import re

from ...model.errors import ConfigError, EndpointError, UnreachableError
from ...model.ssh_config import bulk_ciphers_verdict, option_name
from .. import btrfs
from ..runner import LOG, CommandResult
from .base import Endpoint, check_path
from .ssh_mux import terminate_masters

if TYPE_CHECKING:
    from typing import Iterable
    from ..runner import CommandRunner

# Patterns as text: `re` compiles (and caches) each on first use, so a local run pays for none
# of the ssh ones (start-up time of every run).
_HOST_RE = r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[[0-9A-Fa-f:.%A-Za-z]+\])\Z"
_USER_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z"
_SSH_OPTION_RE = r"^[A-Za-z][A-Za-z0-9]*[= ]"

# Bounded waits for hosts that refuse, never answer, or vanish mid-stream; user options come
# first on the command line, and ssh keeps the first value it sees, so users can override these.
DEFAULT_SSH_OPTIONS = (
    "ConnectTimeout=20",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
)


_SSH_URL_RE = (
    r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/@]+)(?::(?P<port>[^/]*))?(?P<path>/.*)$"
)

# Seconds a run waits, at most, for the start of an ssh master's process before it goes on (its
# cipher choice comes first: `ssh -G` when the program is not known yet, ~9 ms).
MASTER_START_WAIT = 0.25

# OpenSSH's built-in cipher order. When ssh -G shows it unchanged (nobody configured Ciphers),
# the same ciphers are offered with AES-GCM first: with AES-NI it moves bulk data markedly
# faster than chacha20-poly1305, and every server that accepted the default still agrees.
OPENSSH_DEFAULT_CIPHERS = ("chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,"
                           "aes128-gcm@openssh.com,aes256-gcm@openssh.com")
BULK_CIPHERS = ("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
                "aes128-ctr,aes192-ctr,aes256-ctr")


def _checked_target(host, user, port, path, ssh_options):
    """The remote path, once host, user, port, path and options are each found valid."""
    if not re.match(_HOST_RE, host or ""):
        raise ConfigError("ssh host %r is not a valid host name or address" % (host,))
    if user is not None and not re.match(_USER_RE, user):
        raise ConfigError("ssh user %r is not a valid user name" % (user,))
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        raise ConfigError("ssh port %r is not a port number (1-65535)" % (port,))
    path = check_path(path, "remote path")
    if not path.startswith("/"):
        raise ConfigError("remote path %r must be absolute" % (path,))
    for option in ssh_options:
        validate_ssh_option(option)
    return path


def parse_ssh_url(spec: str) -> tuple:
    """(host, path, user, port) of an `ssh://[user@]host[:port]/path` URL."""
    match = re.match(_SSH_URL_RE, spec)
    if not match:
        raise ConfigError("%r is not a valid ssh URL: expected ssh://[user@]host[:port]/absolute/path" % spec)
    port = match.group("port")
    if port is not None:
        if not re.match(r"^[0-9]{1,5}\Z", port):
            raise ConfigError("%r: port %r is not a number" % (spec, port))
        port = int(port)
    return match.group("host"), match.group("path"), match.group("user"), port


class SshEndpoint(Endpoint):
    """A path on a remote host, reached with ssh(1); `sudo -n` before btrfs when asked."""

    kind = "ssh"
    what = "an ssh folder"
    crosses_network = True
    can_stage = True
    answers_arrival = True
    snapshots_in_send = True
    #: ssh's answer when the run's shared connection could not be opened (SshConnections), or None.
    connect_failure = None
    # The filesystem id the folder must be on for a receive planned on what the job's last run
    # left there (run/folder_forecast.py); None: not checked, the run surveyed first.
    expect_filesystem = None
    # The folder's filesystem id as this run's receive there printed it (None: no receive said it).
    filesystem_seen = None

    def __init__(self, host, path, user=None, port=None, ssh_options=(), sudo=False,
                 ssh_binary="ssh"):
        super().__init__(_checked_target(host, user, port, path, ssh_options))
        self.host = host
        self.user = user
        self.port = port
        self.ssh_options = list(ssh_options)
        self.sudo = sudo
        self.ssh_binary = ssh_binary
        self.control_path = None  # set by SshConnections to share one connection per run
        self.bulk_ciphers = False  # set by SshConnections when ssh_config leaves Ciphers alone
        self.connecting = None  # SshConnections' opening of the shared connection, while it runs

    @classmethod
    def from_location(cls, spec: str, *, ssh_options: Iterable[str] = (), ssh_sudo: bool = False,
                      **_settings) -> SshEndpoint:
        """An `ssh://[user@]host[:port]/path` URL, with the run's ssh options."""
        host, path, user, port = parse_ssh_url(spec)
        return cls(host, path, user=user, port=port, ssh_options=ssh_options, sudo=ssh_sudo)

    @property
    def id(self) -> str:
        # Same shape as btrfs-backup 0.3, so its lock entries keep matching.
        target = "%s@%s" % (self.user, self.host) if self.user else self.host
        if self.port:
            target = "%s:%s" % (target, self.port)
        return "ssh://%s%s" % (target, self.path)

    @property
    def id_aliases(self) -> set:
        return {self.id}

    def connection_key(self) -> tuple:
        """What names ssh's shared connection to this host (the %C of its control socket: host,
        port and user): endpoints with the same key share one."""
        return (self.host, self.port, self.user)

    def ssh_argv(self) -> list[str]:
        """ssh's argv up to the host, once the shared connection is open (SshConnections)."""
        self._connected()
        return self._argv()

    def _connected(self) -> None:
        """Wait until SshConnections has opened this host's shared connection (it opens while the
        run works here): every command goes through it, and its options come from that opening."""
        if self.connecting is not None:
            self.connecting.result()

    def _argv(self) -> list[str]:
        argv = [self.ssh_binary]
        for option in list(self.ssh_options) + list(DEFAULT_SSH_OPTIONS) + self._multiplexing():
            argv += ["-o", option]
        if self.port:
            argv += ["-p", str(self.port)]
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        argv.append("%s@%s" % (self.user, host) if self.user else host)
        return argv

    def _multiplexing(self):
        options = ["Ciphers=%s" % BULK_CIPHERS] if self.bulk_ciphers else []
        if self.control_path:
            options += ["ControlMaster=auto", "ControlPath=%s" % self.control_path,
                        "ControlPersist=60"]
        return options

    def remote_line(self, argv: list[str], privileged: bool = True) -> str:
        """A remote command line with every word quoted (the remote login shell parses it)."""
        import shlex  # here: a run whose ends are all on this machine never quotes for ssh

        words = (["sudo", "-n"] if (privileged and self.sudo) else []) + list(argv)
        return " ".join(shlex.quote(w) for w in words)

    def command(self, argv: list[str], privileged: bool = True) -> list:
        return self.ssh_argv() + ["--", self.remote_line(argv, privileged)]

    def command_pipeline(self, commands: Iterable[tuple[list[str], bool]]) -> list[str]:
        """(argv, privileged) commands joined by pipes at the remote host: its login shell
        connects them (every word is quoted; only the pipe signs are ours)."""
        return self.ssh_argv() + ["--", " | ".join(self.remote_line(a, p) for a, p in commands)]

    def run(self, runner: CommandRunner, argv: list[str], privileged: bool = True,
            input_text: str | None = None) -> CommandResult:
        self._fail_fast(self.id)
        return super().run(runner, argv, privileged, input_text)

    def run_after(self, runner: CommandRunner, first: tuple[list[str], bool], argv: list[str],
                  privileged: bool = True) -> CommandResult:
        self._fail_fast(self.id)
        return runner.run(self._after(first, self.command(argv, privileged)))

    def _after(self, first, command: list[str]) -> list[str]:
        """`command` (an ssh argv) whose remote line runs only once `first` succeeded, in the same
        line: `FIRST && LINE`. `first`: (argv, privileged), or a line quoted already."""
        command[-1] = "%s && %s" % (first if isinstance(first, str) else self.remote_line(*first), command[-1])
        return command

    def run_batch(self, runner: CommandRunner, commands: list[tuple[list[str], bool]]) -> list[CommandResult]:
        """One ssh connection for all commands; each one's exit status is echoed after a marker."""
        self._fail_fast("ssh host")
        marker = "__btrfs_backup_%s__" % os.urandom(16).hex()
        parts = []
        for argv, privileged in commands:
            parts.append("%s; printf '\\n%s %%d\\n' $?" % (self.remote_line(argv, privileged), marker))
        result = runner.run(self.ssh_argv() + ["--", "; ".join(parts)])
        return split_batch_output(result, marker, [argv for argv, _privileged in commands])

    def _fail_fast(self, where):
        """A host whose shared connection could not be opened is not asked again in this run:
        each try would wait for the same failure (a silent host: a connect timeout each)."""
        self._connected()
        if self.connect_failure is not None:
            raise unreachable(where, self.connect_failure)

    def connection_failure(self, result: CommandResult) -> Exception | None:
        # 255 is ssh's own failure: the command never ran there.
        return unreachable(self.id, result.stderr) if result.returncode == 255 else None

    def _copy(self, **changes) -> SshEndpoint:
        """The same endpoint with `changes` (constructor arguments), checked again as a new one."""
        given = dict(host=self.host, path=self.path, user=self.user, port=self.port,
                     ssh_options=self.ssh_options, sudo=self.sudo, ssh_binary=self.ssh_binary)
        given.update(changes)
        return SshEndpoint(**given)

    def with_path(self, path: str) -> SshEndpoint:
        return self._copy(path=path)

    def with_login(self, user: str | None, port: int | None) -> SshEndpoint:
        """A login and port given by the job where the URL names none (the URL's win)."""
        return self._copy(user=self.user or user, port=self.port or port)

    def lock_store(self, runner: CommandRunner, folder: str):
        from ..locks import RemoteLockStore
        return RemoteLockStore(self, runner, folder)

    def sender(self, send_argv: list[str], compress_argv: list[str] | None = None,
               first: tuple[list[str], bool] | None = None) -> tuple:
        if compress_argv is None:
            name, argv = "btrfs send on %s" % self.host, self.command(send_argv)
        else:
            name, argv = ("btrfs send | %s on %s" % (compress_argv[0], self.host),
                          self.command_pipeline([(send_argv, True), (compress_argv, False)]))
        if first is not None:  # `FIRST && SEND | ZSTD`: the pipe starts only once FIRST succeeded
            argv = self._after(first, argv)
        return name, argv

    def snapshot_in_send(self, source_path: str, snapshot_path: str, lock_write: tuple | None = None) -> str:
        from ..snapshot_in_send import snapshot_line  # a pull's only

        folder = posixpath.dirname(snapshot_path)
        create = self.folder_to_create == folder  # a first run: the line makes the folder first
        if create:
            self.folder_to_create = None
        return snapshot_line(self.remote_line, source_path, snapshot_path, create_folder=create, lock_write=lock_write)

    def receiver(self, btrfs_debug: bool = False, decompress_argv: list[str] | None = None,
                 arrival: str | None = None) -> tuple:
        """`arrival`: the name the stream arrives as; once the receive has exited with success,
        the same remote command answers that subvolume's facts (arrival_check), or nothing when
        they cannot be read (then its status is still the receive's)."""
        receive_argv = btrfs.receive_argv(self.path, btrfs_debug)
        if decompress_argv is None:
            argv = self.command(receive_argv)
        else:
            argv = self.command_pipeline([(decompress_argv, False), (receive_argv, True)])
        if arrival is not None:
            from ..arrival_check import ARRIVAL_MARKER, filesystem_argv, show_argv  # at the first send

            # The folder's filesystem too: the next run's receive checks it (expect_filesystem).
            argv[-1] += " && { %s || :; } && printf '\\n%%s\\n' %s && { %s || :; }" % (
                self.remote_line(filesystem_argv(self.path), privileged=False), ARRIVAL_MARKER,
                self.remote_line(show_argv(self.join(arrival))))
        if self.folder_to_create == self.path:  # `mkdir -p -- F && ... btrfs receive F`: one remote line
            argv = self._after((["mkdir", "-p", "--", self.path], True), argv)
        elif self.expect_filesystem is not None:
            from ..arrival_check import filesystem_guard
            argv = self._after(filesystem_guard(self.path, self.expect_filesystem), argv)
        return "btrfs receive on %s" % self.host, argv

    def create_in_next_command(self, folder: str) -> bool:
        self.folder_to_create = folder
        return True

    def stream_command(self, argv: list[str], decompress_argv: list[str] | None = None) -> list:
        if decompress_argv is None:
            return self.command(argv)
        return self.command_pipeline([(decompress_argv, False), (argv, True)])


class SshConnections:
    """One multiplexed ssh connection per host for a whole run: a run makes several short
    calls (listing, send, verify, retention) and should not pay a handshake for each.
    A context manager: `with SshConnections(runner, endpoints):` closes them however it ends."""

    def __init__(self, runner, endpoints=()):
        self.runner = runner
        self._dir = None
        self._opened = {}  # SshEndpoint.connection_key() -> the endpoint whose opening serves that host
        for endpoint in endpoints:
            self.attach(endpoint)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def attach(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint` with its shared connection opening: in the background with a real runner
        (the handshake's round trips pass while the run lists and reads here); its first command
        waits for it (SshEndpoint.ssh_argv)."""
        if not isinstance(endpoint, SshEndpoint):
            return endpoint
        if self._dir is None:
            self._dir = _private_folder("btrfs-backup-ssh-")
        # Endpoints of one host (a pull's source and a destination there) share its connection:
        # two masters opened at once for one socket would race, and the loser never ends.
        first = self._opened.setdefault(endpoint.connection_key(), endpoint)
        opening = self._connect if first is endpoint else functools.partial(self._share, first)
        if not getattr(self.runner, "runs_beside", False):
            opening(endpoint, _nothing)
            return endpoint
        import threading
        from ..overlap import InBackground  # a run with an ssh end only

        started = threading.Event()

        def open_then_say_started(endpoint):
            try:
                opening(endpoint, started.set)
            finally:
                started.set()

        endpoint.connecting = InBackground(open_then_say_started, endpoint)
        # The run goes on once the master's process has started: the run's work meanwhile (its
        # imports above all) would hold the interpreter's lock that the opening needs first,
        # and the handshake's round trips would start 5-10 ms later.
        started.wait(MASTER_START_WAIT)
        return endpoint

    def _connect(self, endpoint, starting):
        """ssh's cipher choice for the host, then its shared connection; `starting()` is called
        just before its master's process starts."""
        endpoint.bulk_ciphers = _bulk_ciphers_fit(endpoint, self.runner)
        # %C is a hash of host, port and user: short enough for a socket path.
        endpoint.control_path = os.path.join(self._dir, "%C")
        self._open_master(endpoint, starting)

    @staticmethod
    def _share(first, endpoint, starting):
        """`endpoint` goes through the connection opened for `first` (the same host, as the same
        user): nothing of its own starts."""
        starting()
        first._connected()  # pylint: disable=protected-access
        endpoint.bulk_ciphers, endpoint.control_path = first.bulk_ciphers, first.control_path
        endpoint.connect_failure = first.connect_failure

    def _open_master(self, endpoint, starting):
        """Open the host's shared connection now, trying again while the server turns
        connections away (a fleet whose timers fire together meets sshd's MaxStartups). The
        master runs no command (-N), so a retry never repeats anything; every later command of
        the run goes through it. When it cannot be opened, each command connects by itself and
        reports the failure as usual (a refused key is not retried)."""
        if _user_multiplexing(endpoint):
            return
        from ...model.ssh_retry import retry_delay, retry_message, turned_away  # a run with an ssh end only

        argv = endpoint._argv()  # pylint: disable=protected-access
        argv = argv[:-1] + ["-N", argv[-1]]
        pause = getattr(self.runner, "pause", None)  # a fake runner does not wait
        failed_try = 0
        starting()
        while True:
            result = self.runner.run(argv)
            failed_try += 1
            reason = turned_away(result.returncode, result.stderr)
            delay = retry_delay(failed_try, _random_fraction()) if reason else None
            if delay is None:
                if result.returncode == 255:
                    # ssh itself failed (timed out, refused, a refused key): the run's commands
                    # for this host fail with that answer instead of each waiting for it again.
                    endpoint.connect_failure = result.stderr or "ssh failed"
                return
            LOG.warning(retry_message(endpoint.host, reason, delay, failed_try + 1))
            if pause is not None:
                pause(delay)

    def close(self) -> None:
        openers = []
        for endpoint in self._opened.values():  # one master each
            try:
                endpoint._connected()  # pylint: disable=protected-access
            except Exception:  # pylint: disable=broad-except
                continue  # its opening failed (raised to the command that waited for it): nothing to close
            if not _user_multiplexing(endpoint):  # the user's own master: their ControlPersist ends it
                openers.append(endpoint)
        # Told over their sockets; where that cannot be (one that does not end), `ssh -O exit` tells each.
        if openers and not (self._dir is not None and terminate_masters(self._dir, len(openers))):
            for endpoint in openers:
                self.runner.run(endpoint.ssh_argv()[:-1] + ["-O", "exit", endpoint.ssh_argv()[-1]])
        if self._dir is not None:
            try:
                os.rmdir(self._dir)  # the masters took their sockets along
            except OSError:
                import shutil
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._opened = {}


def _nothing():
    pass


def _private_folder(prefix: str) -> str:
    """A new folder only this user can enter, in $TMPDIR, else /tmp: tempfile.mkdtemp's, without
    the import of tempfile and what it pulls in, a few ms before every run's first ssh command."""
    tmpdir = os.environ.get("TMPDIR")
    if tmpdir:
        try:
            return _new_folder_in(tmpdir, prefix)
        except OSError:
            pass  # missing or not writable: /tmp, as tempfile would
    return _new_folder_in("/tmp", prefix)


def _new_folder_in(parent: str, prefix: str) -> str:
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _user_multiplexing(endpoint):
    """The user's ssh options decide about connection sharing themselves (ssh keeps the first
    value, and theirs come first)."""
    return any(option_name(o) in ("controlmaster", "controlpath") for o in endpoint.ssh_options)


def _bulk_ciphers_fit(endpoint, runner) -> bool:
    """Whether the host's connection may offer BULK_CIPHERS: only where ssh would use its own
    built-in order (model/ssh_config.py). `ssh -G` is asked unless the config files and the ssh
    program tell it without a process (host/endpoints/ssh_ciphers.py)."""
    from . import ssh_ciphers  # a run with an ssh end only

    config_sets = ssh_ciphers.config_sets_ciphers()
    program = ssh_ciphers.program_path(endpoint.ssh_binary) if config_sets is False else None
    known = ssh_ciphers.known_default_fits(program) if program else None
    verdict = bulk_ciphers_verdict(endpoint.ssh_options, config_sets, known)
    if verdict is not None:
        return verdict
    ciphers = _configured_ciphers(endpoint, runner)
    fits = ciphers == OPENSSH_DEFAULT_CIPHERS
    if program and ciphers is not None and bulk_ciphers_verdict(endpoint.ssh_options, config_sets, fits) == fits:
        # Nobody chose ciphers for this host: what ssh -G showed is the program's own list.
        ssh_ciphers.remember_default_fits(program, fits)
    return fits


def _configured_ciphers(endpoint, runner):
    """The cipher list ssh would use for the host (ssh -G: reads config, no connection)."""
    argv = endpoint._argv()  # pylint: disable=protected-access
    result = runner.run(argv[:-1] + ["-G", argv[-1]])
    for line in result.stdout.splitlines() if result.ok else ():
        if line.startswith("ciphers "):
            return line.split(None, 1)[1].strip()
    return None


def _random_fraction():
    import random  # only runs whose server turned a connection away pay for it
    return random.random()


def unreachable(where: str, stderr: str) -> UnreachableError:
    """The error for an ssh that failed before running anything; a refused key is named as such."""
    detail = (stderr.strip().splitlines() or ["ssh failed"])[-1]
    if "Permission denied" in detail:
        return UnreachableError(
            "cannot reach %s: the server refused this host's key (%s); the key is not "
            "authorised there, or this host was revoked" % (where, detail))
    return UnreachableError("cannot reach %s: %s" % (where, detail))


def split_batch_output(result: CommandResult, marker: str, argvs: list[list[str]]) -> list[CommandResult]:
    """Split a batched remote run's stdout at the markers into one CommandResult per command."""
    if result.returncode == 255 and marker not in result.stdout:
        raise unreachable("ssh host", result.stderr)
    results = []
    rest = result.stdout
    for argv in argvs:
        head, sep, tail = rest.partition("\n%s " % marker)
        if not sep:
            said = result.stderr.strip() or "no output"
            if result.returncode == 255 or result.returncode < 0:
                # ssh's own failure, or the remote shell killed: the connection was lost, the host said nothing.
                raise UnreachableError("the connection to ssh host was lost: remote commands ended early: %s" % said)
            raise EndpointError("remote commands ended early: %s" % said)
        code, _newline, rest = tail.partition("\n")
        try:
            returncode = int(code)
        except ValueError:
            raise EndpointError("unexpected output from remote host: %r" % code)
        results.append(CommandResult(argv, returncode, head, result.stderr))
    return results


def validate_ssh_option(option: str) -> str:
    """An ssh_config option as 'Key=value' (passed to ssh as -o, one argv item)."""
    if not isinstance(option, str) or not re.match(_SSH_OPTION_RE, option) or "\n" in option:
        raise ConfigError("ssh option %r must look like 'Key=value' (an ssh_config option)" % (option,))
    return option
