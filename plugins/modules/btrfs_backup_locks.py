#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module btrfs_backup_locks: list, add and remove the locks in a snapshot folder's .outstanding_transfers."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: btrfs_backup_locks
short_description: List, add or remove the transfer locks of btrfs backups
version_added: 1.0.0
description:
  - A snapshot folder's C(.outstanding_transfers) file records, per snapshot, the destinations to which a
    transfer is unfinished (C(locks)) and those for which the snapshot is the parent of an unfinished
    incremental transfer (C(parent_locks)), in btrfs-backup 0.3's JSON shape.
  - A lock makes the next M(btrfs.backup.btrfs_send_backup) run to that destination look for a partial
    receive of the snapshot there and delete it; the run then clears the lock. A complete backup of the
    snapshot (recognised by UUID) is kept and not sent again; a snapshot missing at the destination is
    sent by that run anyway. Until then the lock keeps retention from deleting the snapshot.
  - V(query) returns the locks (what btrfs-backup's C(--locked-dests) would add as destinations);
    V(absent) removes locks (btrfs-backup's C(--remove-locks), but without running a backup);
    V(present) adds locks, for example to mark a transfer that was cut by hand as unfinished, so that the
    next run cleans up after it. To have a complete backup sent again, delete it at the destination; a
    lock alone does not do that.
  - The file is rewritten atomically; a corrupt file is an error, never silently reset.
author:
  - btrfs.backup maintainers (!UNKNOWN)
options:
  source:
    description:
      - The backed-up subvolume, as a path or C(ssh://[user@]host[:port]/path); the lock file is in its
        O(snapshot_folder).
    type: str
    required: true
  state:
    description:
      - V(query) changes nothing; V(present) adds a lock for each of O(snapshots) and each of
        O(destinations); V(absent) removes the locks of O(destinations) (of all snapshots, or only of
        O(snapshots)), or every lock of O(snapshots) when no destination is given.
    type: str
    choices: [query, present, absent]
    default: query
  snapshots:
    description:
      - Snapshot names. Required with O(state=present), which also requires that they exist.
    type: list
    elements: str
  destinations:
    description:
      - Destinations, written as for M(btrfs.backup.btrfs_send_backup); they are compared by their
        destination id (the real path of a local folder, C(ssh://user@host:port/path) for ssh).
      - Required with O(state=present).
    type: list
    elements: str
  kind:
    description:
      - Which kind of lock O(state=present) adds. O(state=absent) removes both kinds.
    type: str
    choices: [locks, parent_locks]
    default: locks
  snapshot_folder:
    description:
      - The snapshot folder, absolute or relative to O(source).
    type: str
    default: snapshot
extends_documentation_fragment:
  - btrfs.backup.attributes
  - btrfs.backup.ssh
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The lock table before and after.
  idempotent:
    support: full
notes:
  - Remove a lock only when no partial receive is left at that destination, or delete the partial yourself,
    because the lock is how a later run finds it.
seealso:
  - module: btrfs.backup.btrfs_send_backup
"""

EXAMPLES = r"""
- name: Which transfers are unfinished?
  btrfs.backup.btrfs_backup_locks:
    source: /home
  register: home_locks

- name: Give up on a destination that is gone for good
  btrfs.backup.btrfs_backup_locks:
    source: /home
    state: absent
    destinations:
      - ssh://backup@old-nas:22/srv/backups/web1

- name: Mark a transfer that was stopped by hand as unfinished, so the next run cleans up after it
  btrfs.backup.btrfs_backup_locks:
    source: /home
    state: present
    snapshots: ["20261124-120000"]
    destinations: [/mnt/backup/home]
"""

RETURN = r"""
locks:
  description: "The lock table after the run (in check mode, as it would be): C({snapshot: {locks: [...], parent_locks: [...]}})."
  returned: always
  type: dict
  sample: {"20261124-120000": {"locks": ["/mnt/backup/home"], "parent_locks": []}}
entries:
  description: The same locks as a list, one item per snapshot, destination and kind.
  returned: always
  type: list
  elements: dict
  contains:
    snapshot:
      description: The snapshot's name.
      type: str
    destination:
      description: The destination id.
      type: str
    kind:
      description: V(locks) (unfinished transfer of this snapshot) or V(parent_locks) (parent of one).
      type: str
  sample: [{snapshot: "20261124-120000", destination: /mnt/backup/home, kind: locks}]
locked_destinations:
  description: Every destination with a lock of either kind (what C(--locked-dests) adds to a run).
  returned: always
  type: list
  elements: str
  sample: [/mnt/backup/home]
before:
  description: The lock table before the run.
  returned: always
  type: dict
  sample: {}
plan:
  description: The write of the lock file, when anything changes (in check mode, would change).
  returned: always
  type: list
  elements: str
  sample: ["write /home/snapshot/.outstanding_transfers"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.btrfs.backup.plugins.module_utils import module_params
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.errors import BackupError
from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.locks import LOCK_KINDS
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.operations import manage_locks
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


def argument_spec():
    spec = dict(
        source=dict(type="str", required=True),
        state=dict(type="str", choices=["query", "present", "absent"], default="query"),
        snapshots=dict(type="list", elements="str"),
        destinations=dict(type="list", elements="str"),
        kind=dict(type="str", choices=list(LOCK_KINDS), default="locks"),
        snapshot_folder=dict(type="str", default="snapshot"),
    )
    spec.update(module_params.SSH_ARGUMENT_SPEC)
    return spec


def engine_arguments(params):
    return dict(
        source=module_params.location(params, "source", params["source"]),
        snapshot_folder=module_params.snapshot_folder(params),
        state=params["state"],
        snapshots=module_params.snapshot_names(params, "snapshots") or None,
        destinations=module_params.locations(params, "destinations", params["destinations"]) or None,
        kind=params["kind"],
        ssh_options=module_params.ssh_options(params),
        ssh_sudo=params["ssh_sudo"],
    )


def lock_entries(table):
    """{snapshot: {kind: [dest]}} as a flat list, handy for loops and `selectattr`."""
    return [{"snapshot": name, "destination": dest, "kind": kind}
            for name in sorted(table) for kind in LOCK_KINDS for dest in table[name].get(kind, [])]


def locked_destinations(table):
    return sorted({entry["destination"] for entry in lock_entries(table)})


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[
            ("state", "present", ("snapshots", "destinations")),
            ("state", "absent", ("snapshots", "destinations"), True),
        ],
        supports_check_mode=True,
    )
    try:
        arguments = engine_arguments(module.params)
    except BadParameter as err:
        module.fail_json(msg=str(err))
    try:
        outcome = manage_locks(check_mode=module.check_mode, runner=ModuleCommandRunner(module), **arguments)
    except BackupError as err:
        module.fail_json(msg=str(err))
    outcome.pop("after")  # the same as `locks`
    outcome["entries"] = lock_entries(outcome["locks"])
    outcome["locked_destinations"] = locked_destinations(outcome["locks"])
    if module._diff:
        outcome["diff"] = {"before": outcome["before"], "after": outcome["locks"]}
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
