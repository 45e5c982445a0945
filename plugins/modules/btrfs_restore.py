#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module btrfs_restore: bring a backup back onto a btrfs filesystem."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: btrfs_restore
short_description: Restore a btrfs backup as a read-only or writable subvolume
version_added: 1.0.0
description:
  - Receives a backup from a backup folder (local, or C(ssh://[user@]host[:port]/path)) into a staging
    folder beside O(target), checks it (read-only, the right C(received_uuid)), and only then places it
    at O(target) as a read-only subvolume or, with O(writable=true), a writable one ready to use.
  - A failed restore leaves neither the staging folder nor a partial subvolume behind.
  - An existing O(target) is never overwritten. With O(force=true) it is renamed aside to
    C(TARGET.before-restore-YYYYMMDD-HHMMSS); nothing is deleted.
  - Running the task again changes nothing. A read-only restore is recognised by its C(received_uuid),
    which it keeps. A writable one records the backup it came from in the extended attribute
    C(user.btrfs-backup.restored-from).
  - A writable restore removes what runs left in its snapshot folders (C(.outstanding_transfers),
    C(.btrfs-backup.*)), which describe the source at the time of the backup; a read-only one keeps
    the backup exactly as it was received.
  - With O(as_source=true), O(target) is a job's lost source, rebuilt from the backup so that the job's next
    run continues incrementally to every destination. The backup (with O(snapshots), older ones too) gets a
    read-only snapshot in the job's O(snapshot_folder), which keeps the backup's C(received_uuid), and the
    source is made as a writable snapshot of it. O(target) must not exist; once it holds the snapshot of that
    backup, the task changes nothing.
author:
  - btrfs.backup maintainers (!UNKNOWN)
options:
  backups:
    description:
      - The backup folder, as a path or C(ssh://[user@]host[:port]/path).
    type: str
    required: true
  target:
    description:
      - Absolute path of the restored subvolume, on a btrfs filesystem of the host the module runs on.
        Its parent folder must exist.
    type: path
    required: true
  snapshot:
    description:
      - Name of the backup to restore. Without it, the newest complete backup named
        C(<snapshot_prefix>YYYYMMDD-HHMMSS) is restored.
    type: str
  snapshot_prefix:
    description:
      - Prefix of the backup names, to pick the newest when O(snapshot) is not given.
    type: str
    default: ""
  writable:
    description:
      - Make the restored subvolume writable (ready to use) instead of read-only.
    type: bool
    default: false
  force:
    description:
      - Rename an existing O(target) aside instead of failing.
    type: bool
    default: false
  as_source:
    description:
      - Rebuild a job's lost source at O(target) (see above). O(writable) and O(force) do not apply.
    type: bool
    default: false
  snapshot_folder:
    description:
      - With O(as_source=true), the job's snapshot folder, absolute or relative to O(target).
    type: str
    default: snapshot
  snapshots:
    description:
      - With O(as_source=true), how many backups to bring back, up to the chosen one (each older one
        received incrementally), so that a destination that missed the last runs continues incrementally too.
    type: int
    default: 1
  job_name:
    description:
      - With O(as_source=true), the job's name in its state (default, the one its runs recorded).
    type: str
extends_documentation_fragment:
  - btrfs.backup.attributes
  - btrfs.backup.ssh
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
"""

EXAMPLES = r"""
- name: Bring back the newest backup of /home, writable, beside the live one
  btrfs.backup.btrfs_restore:
    backups: ssh://nas/srv/backups/web1/home
    # An administrator's restore key on a server set up by the btrfs_backup role
    # (btrfs_backup_server_restore_keys); the receive user's keys cannot restore.
    ssh_user: btrfs-restore
    ssh_identity_file: /root/.ssh/id_restore
    target: /home-restored
    writable: true

- name: The host lost its disk; rebuild /home so that the next run continues incrementally
  btrfs.backup.btrfs_restore:
    backups: ssh://nas/srv/backups/web1/home
    ssh_user: btrfs-restore
    ssh_identity_file: /root/.ssh/id_restore
    target: /home
    as_source: true

- name: Restore one chosen backup read-only from a local disk
  btrfs.backup.btrfs_restore:
    backups: /mnt/backup/home
    snapshot: "20261124-120000"
    target: /srv/restore/home-20261124
"""

RETURN = r"""
snapshot:
  description: Name of the restored backup.
  returned: success
  type: str
  sample: "20261124-120000"
backup:
  description: Path of the backup at its folder.
  returned: success
  type: str
source:
  description: The backup folder's id (a path, or C(ssh://user@host:port/path)).
  returned: success
  type: str
target:
  description: Where the backup was (or, in check mode, would be) restored.
  returned: success
  type: str
writable:
  description: Whether the restored subvolume is writable.
  returned: success, unless O(as_source=true)
  type: bool
moved_aside:
  description: Where an existing O(target) was renamed to (with O(force=true)), or null.
  returned: success, unless O(as_source=true)
  type: str
stale_files_removed:
  description: Files of earlier runs removed from a writable restore's snapshot folders (transfer locks, run state).
  returned: when a writable restore was carried out
  type: list
  elements: str
uuid:
  description: UUID of the restored subvolume.
  returned: when a restore was carried out
  type: str
snapshot_folder:
  description: With O(as_source=true), the job's snapshot folder.
  returned: when O(as_source=true)
  type: str
snapshots:
  description: With O(as_source=true), the backups brought back into the snapshot folder, oldest first.
  returned: when O(as_source=true)
  type: list
  elements: str
received_uuid:
  description: With O(as_source=true), the received UUID of the backup the source was rebuilt from.
  returned: when O(as_source=true)
  type: str
placed:
  description: With O(as_source=true), each snapshot placed in the snapshot folder (name, path, uuid, received_uuid).
  returned: when a rebuild was carried out
  type: list
  elements: dict
state:
  description: With O(as_source=true), the job's state file that records the rebuild.
  returned: when a rebuild was carried out
  type: str
plan:
  description: The steps, as they are (or in check mode would be) carried out; empty when nothing is to do.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.btrfs.backup.plugins.module_utils import module_params
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.errors import BackupError
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.rebuild import rebuild_source
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.restore import restore
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


def argument_spec():
    spec = dict(
        backups=dict(type="str", required=True),
        target=dict(type="path", required=True),
        snapshot=dict(type="str"),
        snapshot_prefix=dict(type="str", default=""),
        writable=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        as_source=dict(type="bool", default=False),
        snapshot_folder=dict(type="str", default="snapshot"),
        snapshots=dict(type="int", default=1),
        job_name=dict(type="str"),
    )
    spec.update(module_params.SSH_ARGUMENT_SPEC)
    return spec


REBUILD_ONLY = ("snapshot_folder", "snapshots", "job_name")


def engine_arguments(params):
    """The engine's arguments: restore's, or with as_source rebuild_source's."""
    if params["as_source"]:
        for parameter in ("writable", "force"):
            if params[parameter]:
                raise BadParameter(parameter, "does not apply with as_source (a rebuilt source is writable "
                                              "and never replaces one)")
        if params["snapshots"] < 1:
            raise BadParameter("snapshots", "must be at least 1, not %d" % params["snapshots"])
        return dict(
            backups=module_params.location(params, "backups", params["backups"]),
            source=params["target"],
            snapshot_folder=module_params.snapshot_folder(params),
            prefix=module_params.prefix(params),
            name=module_params.snapshot_name(params, "snapshot"),
            count=params["snapshots"],
            job_name=params["job_name"],
            ssh_options=module_params.ssh_options(params),
            ssh_sudo=params["ssh_sudo"],
        )
    given = [p for p in REBUILD_ONLY if params[p] != argument_spec()[p].get("default")]
    if given:
        raise BadParameter(given[0], "only with as_source")
    return dict(
        backups=module_params.location(params, "backups", params["backups"]),
        target=params["target"],
        name=module_params.snapshot_name(params, "snapshot"),
        prefix=module_params.prefix(params),
        writable=params["writable"],
        force=params["force"],
        ssh_options=module_params.ssh_options(params),
        ssh_sudo=params["ssh_sudo"],
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        arguments = engine_arguments(module.params)
    except BadParameter as err:
        module.fail_json(msg=str(err))
    try:
        operation = rebuild_source if module.params["as_source"] else restore
        outcome = operation(check_mode=module.check_mode, runner=ModuleCommandRunner(module), **arguments)
    except BackupError as err:
        module.fail_json(msg=str(err), plan=[])
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
