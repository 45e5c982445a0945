# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Fixtures to run a module's main() in-process with given parameters and a FakeHost as its runner."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils import basic

from ansible_collections.btrfs.backup.tests.support.fake_host import FakeHost
from ansible_collections.btrfs.backup.tests.unit.plugins.module_args import patch_module_args


class ModuleExit(Exception):
    """exit_json / fail_json, caught: `result` is what the module returned, `failed` says which."""

    def __init__(self, result, failed):
        super(ModuleExit, self).__init__(result)
        self.result = result
        self.failed = failed


def _exit_json(self, **result):
    raise ModuleExit(result, failed=False)


def _fail_json(self, msg, **result):
    result["msg"] = msg
    raise ModuleExit(result, failed=True)


@pytest.fixture
def host(tmp_path):
    """A fake host whose btrfs mount is a temp dir, with a subvolume `data` in it."""
    fake = FakeHost(tmp_path)
    fake.subvolume(fake.path("data"))
    return fake


@pytest.fixture
def run_module(monkeypatch):
    """run_module(module, params, host, check_mode=False, diff=False) -> (failed, result)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)

    def run(module, params, host=None, check_mode=False, diff=False):
        if host is not None:
            monkeypatch.setattr(module, "ModuleCommandRunner", lambda ansible_module: host)
        params = dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(params):
            with pytest.raises(ModuleExit) as caught:
                module.main()
        return caught.value.failed, caught.value.result

    return run
