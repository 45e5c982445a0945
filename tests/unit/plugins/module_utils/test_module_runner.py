# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""ModuleCommandRunner: how the engine's commands reach AnsibleModule.run_command, and back."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess

from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


class RecordingModule(object):
    """Just enough of AnsibleModule: run_command records its arguments and answers as told."""

    def __init__(self, answer=(0, "out", "err"), error=None):
        self.calls = []
        self.answer = answer
        self.error = error

    def run_command(self, args, **kwargs):
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return self.answer


def test_commands_run_as_argv_in_the_c_locale_without_expansion():
    module = RecordingModule()
    result = ModuleCommandRunner(module).run(["btrfs", "subvolume", "list", "/srv/$HOME/~x"])
    (args, kwargs), = module.calls
    assert args == ["btrfs", "subvolume", "list", "/srv/$HOME/~x"]
    assert kwargs["expand_user_and_vars"] is False
    assert kwargs["environ_update"] == {"LC_ALL": "C"}
    assert kwargs["data"] is None and kwargs["binary_data"] is False
    assert (result.returncode, result.stdout, result.stderr, result.ok) == (0, "out", "err", True)


def test_input_is_passed_exactly_without_an_added_newline():
    module = RecordingModule()
    ModuleCommandRunner(module).run(["sh", "-c", "cat > x"], input_text='{"a": 1}\n')
    kwargs = module.calls[0][1]
    assert kwargs["data"] == '{"a": 1}\n' and kwargs["binary_data"] is True


def test_a_failing_command_is_a_result_not_an_exception():
    result = ModuleCommandRunner(RecordingModule(answer=(1, "", "ERROR: no"))).run(["btrfs"])
    assert not result.ok and result.stderr == "ERROR: no"


def test_a_missing_program_is_exit_status_127():
    module = RecordingModule(error=OSError(2, "No such file or directory"))
    result = ModuleCommandRunner(module).run(["btrfs", "version"])
    assert result.returncode == 127 and "No such file or directory" in result.stderr
    assert module.calls[0][1]["handle_exceptions"] is False


def test_popen_streams_with_the_c_locale():
    proc = ModuleCommandRunner(RecordingModule()).popen(
        ["sh", "-c", 'printf %s "$LC_ALL"'], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.communicate()[0] == b"C"
