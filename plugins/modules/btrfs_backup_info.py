#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module btrfs_backup_info: read-only facts about a host's backup jobs and whether their backups are fresh."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: btrfs_backup_info
short_description: Facts about a host's btrfs backup jobs, and whether their backups are fresh
version_added: 1.0.0
description:
  - For each backup job on the host, returns its snapshots, the backups at each destination with
    their ages, the outstanding transfer locks, the last run and the last verify (from the last-run
    state that every run records), and a verdict C(OK), C(WARNING), C(CRITICAL) or C(UNKNOWN) with
    its reasons, the same as C(btrfs-backup status).
  - A job the role installed whose timer is stopped or missing has no next run, and is C(WARNING).
  - The jobs are those the C(btrfs.backup.btrfs_backup) role installed (the C(*.conf) files in
    O(config_dir)), or the one job given by O(source) and O(destinations).
  - Changes nothing anywhere. With O(survey=true) (the default) the snapshot folder and every
    destination are listed now, so that ages are those of the backups that are really there; with
    O(survey=false) only the recorded state is read and no other host is contacted.
author:
  - btrfs.backup maintainers (!UNKNOWN)
options:
  config_dir:
    description:
      - Folder of the job configurations the role writes, one C(NAME.conf) per job.
      - Not used when O(source) is given.
    type: path
    default: /etc/btrfs-backup
  jobs:
    description:
      - Only these jobs (by name) from O(config_dir). Default, every job there.
    type: list
    elements: str
    default: []
  source:
    description:
      - One job given as for M(btrfs.backup.btrfs_send_backup), instead of O(config_dir).
    type: path
  destinations:
    description:
      - The destinations of the job given by O(source).
    type: list
    elements: str
    default: []
  job_name:
    description:
      - The name of the job given by O(source) (the name its runs recorded, C(--job-name)).
      - Default, the name its last run recorded, else one made from the source.
    type: str
  max_age:
    description:
      - A destination whose newest backup is older than this is C(CRITICAL), for example V(36h),
        V(2d), V(90m). Default, each job's own maximum age (the role's job key C(max_age)); a job
        without one is fresh as long as it has a backup.
    type: str
  survey:
    description:
      - List the snapshot folder and every destination now (V(true)), or only read the recorded
        last-run state (V(false)).
    type: bool
    default: true
  server_root:
    description:
      - On a backup server, its root of source hosts' folders (the role's C(btrfs_backup_server_root)).
        Each C(HOST/JOB) folder under it is judged by its newest complete backup, by when this
        server received it (never by the name a source gave it), against O(max_age); the result is
        in RV(server), and RV(fresh), RV(status) and RV(reasons) include it.
      - A host that is both a backup server and a source gets both views in one verdict.
    type: path
extends_documentation_fragment:
  - btrfs.backup.attributes
  - btrfs.backup.snapshot_folder
  - btrfs.backup.ssh
attributes:
  check_mode:
    support: full
    details: The module changes nothing; check mode returns the same facts.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - The ages of a host's own jobs are those of the snapshots the backups were made from (their
    names carry the time); on a backup server (O(server_root)) they are the times the server
    received each backup, which a source cannot forge.
seealso:
  - module: btrfs.backup.btrfs_send_backup
  - module: btrfs.backup.btrfs_backup_locks
"""

EXAMPLES = r"""
- name: How are the backups of this host?
  btrfs.backup.btrfs_backup_info:
  register: backup_info

- name: Every job on every host has a backup younger than 36 hours
  ansible.builtin.assert:
    that: backup_info.fresh
    fail_msg: "{{ backup_info.reasons | join('; ') }}"
    quiet: true

- name: On the backup server, every source host's jobs got a backup in the last 36 hours
  btrfs.backup.btrfs_backup_info:
    server_root: /srv/backups
    max_age: 36h
  register: server_backups

- name: Fail naming the stale host/job
  ansible.builtin.assert:
    that: server_backups.fresh
    fail_msg: "{{ server_backups.reasons | join('; ') }}"
    quiet: true

- name: One job given directly, without contacting the backup server
  btrfs.backup.btrfs_backup_info:
    source: /home
    destinations: [ssh://backup@nas/srv/backups/web1/home]
    max_age: 2d
    survey: false
"""

RETURN = r"""
fresh:
  description: True when every job is C(OK).
  returned: always
  type: bool
  sample: true
status:
  description: The worst verdict of all jobs, V(OK), V(WARNING), V(CRITICAL) or V(UNKNOWN) (no job, or no run recorded).
  returned: always
  type: str
  sample: OK
reasons:
  description: Why a job is not C(OK), one line each.
  returned: always
  type: list
  elements: str
  sample: ["root: newest backup at ssh://btrfs-backup@srv:22/srv/backups/h1/root is 2d 1h old (max 1d 12h)"]
errors:
  description: Job configurations that could not be read.
  returned: always
  type: list
  elements: str
  sample: []
now:
  description: The time the ages are counted from, in seconds since the epoch.
  returned: always
  type: float
  sample: 1796041272.0
server:
  description:
    - With O(server_root), the server's view of its sources, one item per C(HOST/JOB) folder; else null.
  returned: always
  type: dict
  contains:
    root:
      description: The server root.
      type: str
    status:
      description: The worst verdict of its jobs, V(OK), V(WARNING), V(CRITICAL) or V(UNKNOWN).
      type: str
    fresh:
      description: True when every host/job is C(OK).
      type: bool
    reasons:
      description: Why a host/job is not C(OK), naming it.
      type: list
      elements: str
    jobs:
      description:
        - One item per C(HOST/JOB) with C(host), C(job), C(backups) (how many complete ones),
          C(newest_backup) (name), C(newest_backup_received) (seconds since the epoch),
          C(newest_backup_age) (seconds), C(untrusted_names) (backups named later than they were
          received, never counted as newest), C(status) and C(fresh).
      type: list
      elements: dict
  sample:
    root: /srv/backups
    status: CRITICAL
    fresh: false
    reasons: ["web2/root: newest backup 20261201-020000 was received 3d 10h ago (max 1d 12h)"]
jobs:
  description: One item per job.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The job's name.
      type: str
    source:
      description: The backed-up subvolume's id.
      type: str
    snapshot_folder:
      description: The snapshot folder.
      type: str
    config_file:
      description: The job's configuration file, or null for a job given by O(source).
      type: str
    status:
      description: V(OK), V(WARNING), V(CRITICAL) or V(UNKNOWN).
      type: str
    fresh:
      description: True when the status is C(OK).
      type: bool
    reasons:
      description: Why the status is not C(OK).
      type: list
      elements: str
    max_age_seconds:
      description: The maximum age applied, or null.
      type: int
    snapshots:
      description: The snapshots at the source, oldest first, each with C(name), C(time) and C(age) in seconds (null without O(survey)).
      type: list
      elements: dict
    locks:
      description: The lock table of C(.outstanding_transfers) (empty without O(survey)).
      type: dict
    last_run:
      description: The last run as recorded (start, duration, ok, errors, snapshot), or null.
      type: dict
    next_run:
      description: When the job's timer runs it next, as systemd says it, or null (no active timer).
      type: str
    timer:
      description:
        - The job's timer (C(unit), C(installed), C(active)) when the role installed the job's units,
          else null (a job run by hand or by cron, or a host without systemd).
      type: dict
    destinations:
      description: One item per destination.
      type: list
      elements: dict
      contains:
        id:
          description: The destination id.
          type: str
        status:
          description: This destination's verdict, with what concerns the whole job (its last run, its timer).
          type: str
        last_run_status:
          description: V(ok) or V(failed) in the last run that tried it, or null.
          type: str
        error:
          description: The last run's error at this destination, or null.
          type: str
        reachable:
          description: Whether the survey could list it (null without O(survey)).
          type: bool
        backups:
          description: Its backups of this job, oldest first, each with C(name), C(time), C(age) (null when not listed).
          type: list
          elements: dict
        newest_backup:
          description: The newest backup's name.
          type: str
        newest_backup_age:
          description: Its age in seconds.
          type: float
        archive_chain:
          description:
            - For a borg or restic destination, how many archives a restore of the newest backup
              replays (its full stream and each incremental one after it); null where unknown or
              for a btrfs destination.
          type: int
        last_success:
          description: When a run last synced it without error (seconds since the epoch).
          type: float
        locks:
          description: Snapshots locked for it (unfinished transfers).
          type: int
        verify:
          description: The last verify (time, ok, snapshot, problems), or null.
          type: dict
  sample:
    - name: root
      status: OK
      fresh: true
      destinations:
        - id: ssh://btrfs-backup@srv:22/srv/backups/h1/root
          newest_backup: "20261130-020000"
          newest_backup_age: 3600
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.btrfs.backup.plugins.module_utils import module_params
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model import health
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run import server_view
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.units import parse_duration
from ansible_collections.btrfs.backup.plugins.module_utils.engine.frontends.jobspec import job_from_settings, jobs_from_config_dir
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.job_status import job_statuses
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


def argument_spec():
    job = module_params.job_argument_spec()  # the job settings' parameters, as btrfs_send_backup takes them
    spec = dict(
        config_dir=dict(type="path", default="/etc/btrfs-backup"),
        jobs=dict(type="list", elements="str", default=[]),
        source=dict(type="path"),
        destinations=job["dest"],
        job_name=dict(type="str"),
        max_age=dict(type="str"),
        survey=dict(type="bool", default=True),
        server_root=dict(type="path"),
        snapshot_folder=job["snapshot_folder"],
        snapshot_prefix=job["snapshot_prefix"],
    )
    spec.update(module_params.SSH_ARGUMENT_SPEC)
    return spec


def ad_hoc_job(params):
    """The job given by O(source): its settings from the parameters, as btrfs_send_backup reads them."""
    settings = module_params.job_settings(params, parameters={"destinations": "destinations"}, allow_shell=False)
    source = module_params.location(params, "source", params["source"])
    return module_params.checked("source", lambda s: job_from_settings(s, settings, name=params["job_name"]), source)


def _aged(items, now):
    return None if items is None else [dict(i, age=None if i["time"] is None else now - i["time"]) for i in items]


def job_facts(status, now):
    """One job's facts from its JobStatus (spec, verdict of its surveyed state, timer)."""
    spec, state, survey = status.spec, status.judged.state, status.survey
    verdict, timer = status.judged.verdict, status.judged.timer
    destinations = []
    for dest_id, record in sorted((state or {}).get("destinations", {}).items()):
        found = (survey or {}).get("destinations", {}).get(dest_id) or {}
        newest = record.get("newest_backup_time")
        destinations.append({
            "id": dest_id,
            "status": verdict.row_label(dest_id),
            "last_run_status": record.get("status"),
            "error": record.get("error") or record.get("survey_error"),
            "reachable": record.get("reachable"),
            "backups": _aged(found.get("backups"), now),
            "newest_backup": record.get("newest_backup"),
            "newest_backup_time": newest,
            "newest_backup_age": None if newest is None else now - newest,
            "archive_chain": record.get("archive_chain"),
            "last_success": record.get("last_success"),
            "locks": record.get("locks") or 0,
            "verify": record.get("verify"),
        })
    job = spec.identity
    return {
        "name": job.name, "source": job.source_id, "snapshot_folder": job.snapshot_folder,
        "config_file": spec.config_file, "status": verdict.label, "fresh": verdict.level == health.OK,
        "reasons": verdict.reasons,
        "max_age_seconds": status.judged.max_age,
        "snapshots": _aged((survey or {}).get("snapshots"), now),
        "locks": (survey or {}).get("locks") or {},
        "last_run": (state or {}).get("last_run"),
        "next_run": timer.next_run if timer and timer.active else None,
        "timer": None if timer is None or not timer.managed else {
            "unit": timer.unit, "installed": timer.installed, "active": timer.active},
        "destinations": destinations,
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        max_age = module_params.checked("max_age", parse_duration, params["max_age"]) \
            if params["max_age"] else None
        if params["source"]:
            specs, errors = [ad_hoc_job(params)], []
        else:
            specs, errors = jobs_from_config_dir(params["config_dir"])
            unknown = sorted(set(params["jobs"]) - {s.identity.name for s in specs})
            if unknown:
                raise BadParameter("jobs", "no such job in %s: %s" % (params["config_dir"], ", ".join(unknown)))
            if params["jobs"]:
                specs = [s for s in specs if s.identity.name in params["jobs"]]
    except BadParameter as err:
        module.fail_json(msg=str(err))
    runner = ModuleCommandRunner(module)
    now = time.time()
    statuses, read_errors = job_statuses(specs, now=now, max_age=max_age, survey=params["survey"], runner=runner)
    errors.extend(read_errors)
    jobs = [job_facts(status, now) for status in statuses]
    levels = [health.LEVELS.index(j["status"]) for j in jobs]
    reasons = [r for j in jobs for r in j["reasons"]]
    server = None
    if params["server_root"]:
        server = server_view_facts(params["server_root"], now, max_age, errors)
        if server is not None:
            levels.append(health.LEVELS.index(server["status"]))
            reasons.extend(server["reasons"])
    worst = max(levels, default=health.UNKNOWN)
    module.exit_json(
        changed=False, jobs=jobs, now=now, errors=errors, server=server,
        status=health.LEVELS[worst], fresh=bool(levels) and worst == health.OK and not errors,
        reasons=reasons + errors)


def server_view_facts(root, now, max_age, errors):
    """The server's view of its sources (server_view), or None with an error when unreadable."""
    try:
        jobs = server_view.survey_server_root(root)
    except OSError as err:
        errors.append("cannot read the server root %s: %s" % (root, err.strerror))
        return None
    return server_view.server_facts(root, jobs, server_view.assess_server(root, jobs, now, max_age), now, max_age)


if __name__ == "__main__":
    main()
