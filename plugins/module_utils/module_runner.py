# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The engine's command runner for modules: short commands through AnsibleModule.run_command."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import time

from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.runner import CommandResult

# btrfs output is parsed: every command runs in the C locale, as with the engine's own runner.
_LOCALE = {"LC_ALL": "C"}


class ModuleCommandRunner(object):
    """Same interface as engine.host.runner.CommandRunner: run() for short commands, popen() for streams.

    run() goes through run_command so that Ansible logs and reports commands the usual way;
    the send | receive stream needs connected pipes, which run_command cannot give, so popen()
    starts those processes itself (argv lists, never a shell).
    """

    kernel_listing = True  # the real machine, as with the engine's runner

    def __init__(self, module):
        self.module = module

    def run(self, argv, input_text=None):
        # expand_user_and_vars=False: a path with '~' or '$' is a path, not something to expand.
        # binary_data=True: lock file content goes to stdin exactly as given (no extra newline).
        # handle_exceptions=False: a missing program is an ordinary failed command for the engine
        # (exit status 127, like its own runner), not an immediate fail_json.
        try:
            returncode, stdout, stderr = self.module.run_command(
                list(argv), data=input_text, binary_data=input_text is not None,
                expand_user_and_vars=False, environ_update=_LOCALE, handle_exceptions=False)
        except OSError as err:
            return CommandResult(argv, 127, "", "%s: %s" % (argv[0], err.strerror or err))
        return CommandResult(argv, returncode, stdout, stderr)

    def pause(self, seconds):
        """Wait (before another try of a connection the server turned away)."""
        time.sleep(seconds)

    def popen(self, argv, stdin=None, stdout=None, stderr=None, pass_fds=()):
        env = dict(os.environ, **_LOCALE)
        # A pipeline stage streams into the next one: run_command only returns finished output.
        # `pass_fds`: the pipes a tee writes to besides its standard output (one send, many destinations).
        return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env,  # pylint: disable=ansible-bad-function
                                pass_fds=pass_fds)
