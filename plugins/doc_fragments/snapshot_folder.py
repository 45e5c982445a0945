# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Documentation of where snapshots live and how they are named (btrfs-backup 0.3's -f and -p)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  snapshot_folder:
    description:
      - Folder that holds the snapshots of O(source) and its C(.outstanding_transfers) lock file.
      - An absolute path, or a path relative to O(source). It is created on first use.
    type: str
    default: snapshot
  snapshot_prefix:
    description:
      - Snapshots are named C(<prefix>YYYYMMDD-HHMMSS). Several sources may share one snapshot folder
        or destination if each has its own prefix.
      - Letters, digits and C(. _ + @ -), not starting with C(.) or C(-).
    type: str
    default: ''
"""
