#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module btrfs_retention: the count and time-bucket policies applied to one folder of snapshots or backups."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: btrfs_retention
short_description: Delete old btrfs snapshots or backups by count and time buckets
version_added: 1.0.0
description:
  - Applies a retention policy to the snapshots (or received backups) named C(<prefix>YYYYMMDD-HHMMSS) in
    one folder, a snapshot folder or a backup destination, local or C(ssh://).
  - The policy keeps the newest O(count) and, btrbk-style, the first snapshot of each of the last N
    hours, days, ISO weeks, months or years (O(preserve)). An item stays if any rule keeps it.
  - The newest item always stays (it is the next incremental parent). In a snapshot folder, snapshots that
    C(.outstanding_transfers) locks (an unfinished transfer, or the parent of one) stay too.
  - Returns every item kept with the reasons, and every item deleted with the reason.
  - This module only knows the one folder. To keep, at the source, the newest snapshot that each
    destination holds, use M(btrfs.backup.btrfs_send_backup) with O(btrfs.backup.btrfs_send_backup#module:num_snapshots),
    which lists the destinations first (with O(btrfs.backup.btrfs_send_backup#module:snapshot=false) and
    O(btrfs.backup.btrfs_send_backup#module:transfer=false) it does nothing else).
author:
  - btrfs.backup maintainers (!UNKNOWN)
options:
  path:
    description:
      - The folder, as a path or C(ssh://[user@]host[:port]/path).
    type: str
    required: true
  count:
    description:
      - Keep the newest N (V(0) sets no count limit).
    type: int
    default: 0
  preserve:
    description:
      - Time buckets, for example C(24h 7d 4w 12m *y) (h, d, w, m, y; C(*) for every period).
    type: str
    default: ''
  snapshot_prefix:
    description:
      - Only items named C(<prefix>YYYYMMDD-HHMMSS) are considered; other subvolumes are never touched.
    type: str
    default: ''
  convert_rw:
    description:
      - Make items writable before deleting them (for C(user_subvol_rm_allowed)).
    type: bool
    default: false
  sync:
    description:
      - Wait with C(btrfs subvolume sync) after deleting, so that the space is free when the task ends.
    type: bool
    default: false
extends_documentation_fragment:
  - btrfs.backup.attributes
  - btrfs.backup.ssh
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The names in the folder before and after.
  idempotent:
    support: full
notes:
  - With neither O(count) nor O(preserve), everything is kept.
  - Time buckets are counted back from the time of the run on the host that runs the module.
seealso:
  - module: btrfs.backup.btrfs_send_backup
"""

EXAMPLES = r"""
- name: Keep the newest 5 snapshots, and one a day for a week
  btrfs.backup.btrfs_retention:
    path: /home/snapshot
    count: 5
    preserve: 7d

- name: Thin out the backups on a NAS
  btrfs.backup.btrfs_retention:
    path: ssh://nas/srv/backups/web1
    ssh_user: backup
    ssh_sudo: true
    preserve: 14d 8w 12m *y

- name: Only look at what would go
  btrfs.backup.btrfs_retention:
    path: /mnt/backup/home
    count: 10
  check_mode: true
  register: would_delete
"""

RETURN = r"""
policy:
  description: The policy, in words.
  returned: always
  type: str
  sample: newest 5, daily 7
kept:
  description: Every item kept, oldest first, with every reason it is kept.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The item's name.
      type: str
    reasons:
      description: Why it is kept.
      type: list
      elements: str
  sample: [{name: "20261124-120000", reasons: ["one of the newest 5", "first of its daily period 2026-11-24"]}]
deleted:
  description: Every item deleted (in check mode, to be deleted), with the reason.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The item's name.
      type: str
    reason:
      description: Why it is deleted.
      type: str
  sample: [{name: "20261101-120000", reason: "not kept by retention policy (newest 5, daily 7)"}]
plan:
  description: The deletions, one per item, as they are (or in check mode would be) carried out.
  returned: always
  type: list
  elements: str
  sample: ["delete /home/snapshot/20261101-120000 (retention)"]
before:
  description: The names of the items in the folder before the run.
  returned: always
  type: list
  elements: str
after:
  description: The names of the items in the folder after the run.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.btrfs.backup.plugins.module_utils import module_params
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.errors import BackupError
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.operations import apply_retention
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


def argument_spec():
    spec = dict(
        path=dict(type="str", required=True),
        count=dict(type="int", default=0),
        preserve=dict(type="str", default=""),
        snapshot_prefix=dict(type="str", default=""),
        convert_rw=dict(type="bool", default=False),
        sync=dict(type="bool", default=False),
    )
    spec.update(module_params.SSH_ARGUMENT_SPEC)
    return spec


def engine_arguments(params):
    return dict(
        path=module_params.location(params, "path", params["path"]),
        prefix=module_params.prefix(params),
        count=module_params.whole_number(params, "count"),
        preserve=module_params.retention_terms(params, "preserve"),
        ssh_options=module_params.ssh_options(params),
        ssh_sudo=params["ssh_sudo"],
        convert_rw=params["convert_rw"],
        sync=params["sync"],
    )


def retention_diff(outcome):
    return {"before": {"items": outcome["before"]}, "after": {"items": outcome["after"]}}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        arguments = engine_arguments(module.params)
    except BadParameter as err:
        module.fail_json(msg=str(err))
    try:
        outcome = apply_retention(check_mode=module.check_mode, runner=ModuleCommandRunner(module),
                                  **arguments)
    except BackupError as err:
        module.fail_json(msg=str(err))
    if module._diff:
        outcome["diff"] = retention_diff(outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
