# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Documentation of the ssh options shared by every module that can reach another host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  ssh_user:
    description:
      - User to log in as on C(ssh://) locations whose URL names no user.
      - It becomes part of the URL, and so of the destination id recorded in C(.outstanding_transfers)
        (C(ssh://user@host:port/path)), exactly as if it had been written into the URL.
    type: str
  ssh_port:
    description:
      - Port for C(ssh://) locations whose URL names no port; like O(ssh_user), it becomes part of the URL.
    type: int
  ssh_identity_file:
    description:
      - Private key for ssh(1), on the host the module runs on; passed as the ssh option C(IdentityFile).
    type: path
  ssh_options:
    description:
      - Further ssh_config options for ssh(1), each as C(Key=value), for example C(StrictHostKeyChecking=yes).
      - They come before the engine's defaults (C(ConnectTimeout=20), C(ServerAliveInterval=15),
        C(ServerAliveCountMax=4)), so they override them; ssh keeps the first value it is given.
    type: list
    elements: str
    default: []
  ssh_sudo:
    description:
      - Run C(btrfs) (and the other commands that need privileges) as C(sudo -n btrfs ...) on remote hosts.
      - The remote user then needs password-less sudo for C(btrfs).
    type: bool
    default: false
"""
