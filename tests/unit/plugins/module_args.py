# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""patch_module_args: ansible-core's own from 2.19 on, an equivalent for 2.17 and 2.18."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from ansible.module_utils import testing as _testing

    patch_module_args = _testing.patch_module_args
except ImportError:  # ansible-core < 2.19
    import contextlib
    import json

    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    @contextlib.contextmanager
    def patch_module_args(args=None):
        """Let AnsibleModule read ARGS as its parameters within the `with` block."""
        previous = basic._ANSIBLE_ARGS
        params = dict(args or {}, _ansible_remote_tmp="/tmp", _ansible_keep_remote_files=False)
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = previous
