"""A test sshd whose key logs every command a run asks before running it, so a test sees what the
server saw: the remote commands per run, and the connections sshd accepted."""

from __future__ import annotations

import shlex
import stat

#: The forced command's `then` that runs what a connection asked, as a plain host's shell would.
AS_ASKED = '/bin/sh -c "$SSH_ORIGINAL_COMMAND"'


def logging_forced_command(server, log, then):
    """Make every connection of the server's key log the command it asked for (one line,
    quoted) and then run `then` (a command line that reads $SSH_ORIGINAL_COMMAND)."""
    script = server.workdir / "log-and-run"
    # One write per command: commands that start at once (a survey beside a receive) never mix.
    script.write_text("#!/bin/sh\n"
                      "line=$(printf '%s' \"$SSH_ORIGINAL_COMMAND\" | tr '\\n' ' ')\n"
                      f"printf '%s\\n' \"$line\" >> {shlex.quote(str(log))}\n"
                      f"exec {then}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    key = (server.workdir / "id_ed25519.pub").read_text().strip()
    (server.workdir / "authorized_keys").write_text(f'command="{script}" {key}\n')


class RemoteCommands:
    """The commands a logging forced command saw, and the connections sshd accepted, since the
    last `take()`."""

    def __init__(self, log, server):
        self.log = log
        self.server = server
        self.seen = 0
        self.connections_seen = 0
        self.take()  # not the server's readiness probe

    def take(self) -> list:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        new, self.seen = lines[self.seen:], len(lines)
        accepted = self.server.log_file.read_text(errors="replace").count("Accepted publickey")
        self.connections, self.connections_seen = accepted - self.connections_seen, accepted
        return new


def survey_waits_for_a_receive(server, log, workdir, until, tenths):
    """The server's key from now on: a survey (the batch that asks for zstd's version) waits up to
    `tenths` tenths of a second for a receive to `until` ("start" or "end"), and writes down
    whether one did ("yes"/"no" in the returned file)."""
    mark, said = workdir / ("receive-" + until), workdir / "survey-saw"
    receive = (f': > {shlex.quote(str(mark))}' if until == "start" else
               f'{AS_ASKED}; rc=$?; : > {shlex.quote(str(mark))}; exit $rc')
    logging_forced_command(server, log, "/bin/sh -c " + shlex.quote(
        'case "$SSH_ORIGINAL_COMMAND" in\n'
        f'  *"btrfs receive"*) {receive} ;;\n'
        f'  *"zstd --version"*) i=0; while [ ! -e {shlex.quote(str(mark))} ] && [ $i -lt {tenths} ]; do\n'
        '      sleep 0.1; i=$((i + 1)); done\n'
        f'    if [ -e {shlex.quote(str(mark))} ]; then echo yes; else echo no; fi >> {shlex.quote(str(said))} ;;\n'
        'esac\n'
        'exec ' + AS_ASKED))
    return said
