# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Descriptions of the attributes every module of this collection documents its support for."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode; nothing is changed, and the result holds the plan (what would be
      created, sent with which parent, and deleted and why) and the predicted C(changed).
  diff_mode:
    description: Returns what changed (or would change in check mode) as a before/after diff.
  idempotent:
    description: Running the task a second time with the same parameters reports C(changed=false)
      when the first run left nothing to do.
  action_group:
    description: Part of the action group C(btrfs.backup.btrfs), for setting shared parameters with
      C(module_defaults).
    support: full
    membership:
      - btrfs.backup.btrfs
  platform:
    description: Target systems the module runs on.
    support: full
    platforms: posix
"""
