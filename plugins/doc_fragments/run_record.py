# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see https://opensource.org/licenses/MIT)
"""Documentation of the options that say where a run's record (last-run state, metrics) goes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  job_name:
    description:
      - The job's name in its last-run state and metrics (C(--job-name)). Every run that is not in
        check mode records its result in C(last-run.json) in the job's state folder outside the source
        (C(/var/lib/btrfs-backup/jobs/<folder>-<hash>/), or E(BTRFS_BACKUP_STATE_DIR)), which
        C(btrfs-backup status) and M(btrfs.backup.btrfs_backup_info) read.
      - Default, a name made from the source. Letters, digits and C(_ . @ -).
    type: str
  max_age:
    description:
      - Recorded with the run (C(--max-age)), the age beyond which the newest backup is stale, for
        example V(36h), for C(btrfs-backup status), M(btrfs.backup.btrfs_backup_info) and the alert rules.
    type: str
  metrics_dir:
    description:
      - Also write the job's metrics for node_exporter's textfile collector into this existing folder
        (C(--metrics-dir)), for example C(/var/lib/prometheus/node-exporter).
    type: path
"""
