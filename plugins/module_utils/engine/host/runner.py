# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The one seam through which the engine starts processes (replaced by a fake in unit tests)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os
from ..model.log import LOG

if TYPE_CHECKING:
    import subprocess


# btrfs output is parsed: force the C locale for every command.
_ENV = dict(os.environ, LC_ALL="C")


class CommandResult:
    """Exit status and output of a finished command."""

    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandRunner:
    """Runs argv lists (never through a shell); `popen` is used for streaming pipelines."""

    # This runner stands for the real machine, so local listings may ask its kernel directly
    # (listing.list_folder); a fake runner leaves this out and is asked through commands.
    kernel_listing = True
    # Its commands may run from several threads at once (an ssh connection opened while the run
    # works here); a fake runner, which records one order of commands, leaves this out.
    runs_beside = True

    def __init__(self, timeout=None):
        self.timeout = timeout

    def run(self, argv: list[str], input_text: str | None = None) -> CommandResult:
        import subprocess  # here: a run with nothing to do starts no process (start-up time)

        LOG.debug("running: %s", argv)
        try:
            # The engine runs without Ansible too (the CLI on every host): no run_command there.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                argv,
                input=input_text,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                universal_newlines=True,
                env=_ENV,
                timeout=self.timeout,
                check=False,  # the caller judges the exit status
            )
        except FileNotFoundError:
            return CommandResult(argv, 127, "", "%s: command not found" % argv[0])
        except subprocess.TimeoutExpired:
            return CommandResult(argv, 124, "", "%s: timed out after %ss" % (argv[0], self.timeout))
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)

    def pause(self, seconds: float) -> None:
        """Wait (before another try of a connection the server turned away)."""
        import time

        time.sleep(seconds)

    def popen(self, argv: list[str], stdin=None, stdout=None, stderr=None, pass_fds=()) -> subprocess.Popen:
        import subprocess

        LOG.debug("starting: %s", argv)
        # A pipeline stage streams into the next one: run_command only returns finished output.
        # `pass_fds`: the pipes a tee writes to besides its standard output.
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=_ENV,  # pylint: disable=ansible-bad-function
                                pass_fds=pass_fds)
