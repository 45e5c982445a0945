#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module btrfs_snapshot: one read-only snapshot of a subvolume, present or absent."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: btrfs_snapshot
short_description: Create or delete a read-only snapshot of a btrfs subvolume
version_added: 1.0.0
description:
  - Takes a read-only snapshot of a btrfs subvolume into its snapshot folder, named by the
    C(<prefix>YYYYMMDD-HHMMSS) scheme that M(btrfs.backup.btrfs_send_backup) and the C(btrfs-backup)
    command line use, or by an explicit O(name).
  - With O(state=absent), deletes the snapshot called O(name), unless C(.outstanding_transfers) records
    an unfinished transfer of it (or of a transfer that uses it as the incremental parent).
  - The subvolume may be local or on another host (C(ssh://[user@]host[:port]/path)).
author:
  - btrfs.backup maintainers (!UNKNOWN)
options:
  source:
    description:
      - The subvolume to snapshot, as a path or C(ssh://[user@]host[:port]/path).
    type: str
    required: true
  name:
    description:
      - "The snapshot's name: letters, digits and C(. _ + @ : -), not starting with C(.) or C(-)."
      - Without it, a new snapshot named C(<prefix>YYYYMMDD-HHMMSS) is taken on every run; with it,
        a run finds the snapshot already there and changes nothing.
      - Required with O(state=absent).
    type: str
  state:
    description:
      - V(present) ensures the snapshot exists, V(absent) that it does not.
    type: str
    choices: [present, absent]
    default: present
  convert_rw:
    description:
      - With O(state=absent), make the snapshot writable before deleting it (needed where only
        C(user_subvol_rm_allowed) permits the deletion).
    type: bool
    default: false
extends_documentation_fragment:
  - btrfs.backup.attributes
  - btrfs.backup.snapshot_folder
  - btrfs.backup.ssh
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: partial
    details: Idempotent with O(name) or O(state=absent); without O(name), each run takes a new snapshot.
notes:
  - Needs root, or a user allowed to run C(btrfs subvolume snapshot) and C(delete) (see O(ssh_sudo) for remote hosts).
seealso:
  - module: btrfs.backup.btrfs_send_backup
  - module: btrfs.backup.btrfs_backup_locks
"""

EXAMPLES = r"""
- name: Take a timestamped snapshot of /home into /home/snapshot
  btrfs.backup.btrfs_snapshot:
    source: /home

- name: Keep a named snapshot before an upgrade (a second run changes nothing)
  btrfs.backup.btrfs_snapshot:
    source: /
    snapshot_folder: /.snapshots
    name: before-upgrade

- name: Delete it again
  btrfs.backup.btrfs_snapshot:
    source: /
    snapshot_folder: /.snapshots
    name: before-upgrade
    state: absent

- name: Snapshot a subvolume on a file server (pull side)
  btrfs.backup.btrfs_snapshot:
    source: ssh://fileserver/srv/data
    ssh_user: backup
    ssh_sudo: true
  register: snap

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ snap.snapshot.path }} ({{ snap.snapshot.uuid }})"
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot that is (or, in check mode, would be) present, or that was deleted.
    - V(null) with O(state=absent) when there was no such snapshot.
  returned: always
  type: dict
  contains:
    name:
      description: The snapshot's name.
      type: str
      sample: "20261124-120000"
    path:
      description: The snapshot's path on the host of O(source).
      type: str
      sample: /home/snapshot/20261124-120000
    uuid:
      description: The snapshot's btrfs UUID; V(null) in check mode for a snapshot not yet taken.
      type: str
      sample: 0f8a12d7-516c-5140-a220-f623ad8b9d4f
    readonly:
      description: Whether the subvolume is read-only (always V(true) for a snapshot this module made).
      type: bool
      sample: true
    received_uuid:
      description: The subvolume's received UUID, if it was made by C(btrfs receive).
      type: str
      sample: null
plan:
  description: What the run does (or, in check mode, would do), one step per item; empty when nothing is to be done.
  returned: always
  type: list
  elements: str
  sample: ["create read-only snapshot /home/snapshot/20261124-120000 of /home"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.btrfs.backup.plugins.module_utils import module_params
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.errors import BackupError
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.operations import (
    snapshot_absent,
    snapshot_present,
)
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


def argument_spec():
    spec = dict(
        source=dict(type="str", required=True),
        name=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        convert_rw=dict(type="bool", default=False),
        snapshot_folder=dict(type="str", default="snapshot"),
        snapshot_prefix=dict(type="str", default=""),
    )
    spec.update(module_params.SSH_ARGUMENT_SPEC)
    return spec


def engine_arguments(params):
    """The engine call's keyword arguments, every value checked (BadParameter names the culprit)."""
    arguments = dict(
        source=module_params.location(params, "source", params["source"]),
        name=module_params.snapshot_name(params),
        snapshot_folder=module_params.snapshot_folder(params),
        ssh_options=module_params.ssh_options(params),
        ssh_sudo=params["ssh_sudo"],
    )
    if params["state"] == "present":
        arguments["prefix"] = module_params.prefix(params)
    else:
        arguments["convert_rw"] = params["convert_rw"]
    return arguments


def snapshot_diff(state, outcome):
    """Before/after of the one snapshot this task is about."""
    snapshot = outcome["snapshot"]
    shown = {"path": snapshot["path"], "state": "present"} if snapshot else {}
    absent = dict(shown, state="absent") if snapshot else {}
    if not outcome["changed"]:
        return {"before": shown, "after": shown}
    if state == "present":
        return {"before": absent, "after": shown}
    return {"before": shown, "after": absent}


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        arguments = engine_arguments(params)
    except BadParameter as err:
        module.fail_json(msg=str(err))
    operation = snapshot_present if params["state"] == "present" else snapshot_absent
    try:
        outcome = operation(check_mode=module.check_mode, runner=ModuleCommandRunner(module), **arguments)
    except BackupError as err:
        module.fail_json(msg=str(err), snapshot=None, plan=[])
    if module._diff:
        outcome["diff"] = snapshot_diff(params["state"], outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
