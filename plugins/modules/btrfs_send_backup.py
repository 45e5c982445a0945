#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module btrfs_send_backup: one whole backup job (snapshot, send to every destination, retention)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: btrfs_send_backup
short_description: Incremental, atomic btrfs backups with snapshots and btrfs send/receive
version_added: 1.0.0
description:
  - Runs one backup job, as the C(btrfs-backup) command line does, with the same engine.
  - Takes a read-only snapshot of O(source) (unless O(snapshot=false)), sends every snapshot that a
    destination is missing with C(btrfs send | btrfs receive), each incrementally from the newest older
    snapshot whose complete backup the destination holds, and then applies retention at the source and
    at each destination.
  - Backups are recognised by UUID (C(received_uuid)), not by name. Only a read-only received subvolume
    with the right C(received_uuid) counts as a backup.
  - A transfer is recorded in C(.outstanding_transfers) in the snapshot folder before the first byte is
    sent. A transfer that fails or is interrupted leaves that lock behind; the next run deletes the
    partial receive it left at the destination and sends the snapshot again.
  - Retention never deletes a locked snapshot, nor the newest snapshot that a destination still holds
    (its next incremental parent).
  - Only one run of a job (a source and snapshot folder) at a time; a second one fails at once.
author:
  - btrfs.backup maintainers (!UNKNOWN)
options:
  source:
    description:
      - The subvolume to back up, as a path or C(ssh://[user@]host[:port]/path) (pull from another host).
    type: str
    required: true
  dest:
    description:
      - Destinations, any number, each one of
      - a local folder on btrfs (C(/backups/web1));
      - C(ssh://[user@]host[:port]/path), a folder on btrfs on another host, which needs only btrfs-progs;
      - C(shell://COMMAND), a shell command that receives the stream on its standard input
        (for example C(shell://cat > /mnt/usb/home.btrfs-stream)); it cannot be listed, so it gets this
        run's snapshot as a full stream, plus a retry of any stream that failed before.
      - C(borg:PATH), C(borg+ssh://[user@]host[:port]/PATH) or C(restic:REPOSITORY) (restic's own
        repository string, a path or C(sftp:), C(rest:), C(s3:), C(rclone:) and so on), an existing
        repository that keeps each snapshot as one encrypted archive, named and labelled with the job,
        the snapshot and their UUIDs; needs O(archive_key_file).
      - Written as one string, several destinations may be separated by commas; give a list when a
        C(shell://) command contains a comma.
      - A missing destination folder is created if its parent folder exists.
    type: list
    elements: str
    default: []
  snapshot:
    description:
      - Take a new snapshot of O(source). With V(false), only existing snapshots are sent (btrfs-backup's C(-S)).
    type: bool
    default: true
  transfer:
    description:
      - Send snapshots to the destinations. With V(false), nothing is sent, but destinations are still
        listed, so that retention at the source protects their incremental parents (btrfs-backup's C(-T)).
    type: bool
    default: true
  incremental:
    description:
      - Send incrementally where a parent is available. V(false) always sends full streams (C(-I)),
        for example into files.
    type: bool
    default: true
  num_snapshots:
    description:
      - Keep only the newest N snapshots at the source (C(-N)); V(0) keeps all.
      - Snapshots that a lock or a destination's incremental chain needs are kept in any case.
    type: int
    default: 0
  num_backups:
    description:
      - Keep only the newest N backups at each destination (C(-n)); V(0) keeps all.
      - Does not apply to C(shell://) destinations.
    type: int
    default: 0
  preserve_snapshots:
    description:
      - Time-bucket retention at the source, btrbk-style, for example C(24h 7d 4w 12m *y); each term keeps
        the first snapshot of each of the last N hours, days, ISO weeks, months or years (C(*) for all).
      - A snapshot stays if O(num_snapshots) or any term keeps it.
    type: str
    default: ''
  preserve_backups:
    description:
      - The same time-bucket retention for the backups at each destination.
    type: str
    default: ''
  compress:
    description:
      - Compression of the stream where it crosses ssh (C(--compress)).
      - V(auto) uses zstd level 3 wherever a stream crosses ssh, both ends have zstd and a quick sample
        of the snapshot's files compresses; a host without zstd gets the plain stream (logged once).
        Local transfers are never compressed.
      - V(none) never compresses; V(zstd) or V(zstd:LEVEL) (1-19) choose the level, and an end without
        zstd is then a warning.
    type: str
    default: auto
  limit_rate:
    description:
      - Limit each destination's stream to this many bytes per second, for example V(20M)
        (C(--limit-rate); K, M, G are powers of 1024; compressed bytes where the stream is compressed).
      - Needs C(pv) on the host that runs the backup.
    type: str
  buffer:
    description:
      - Buffer this many bytes before each receiver (for example V(256M)) to smooth a bursty send
        over a slow link (C(--buffer)). Needs C(mbuffer) on the host that runs the backup.
    type: str
  resumable:
    description:
      - Stage a transfer to an ssh destination in chunks, each verified by its sha256 as it lands, and
        receive it there only once complete (C(--resumable)). A cut transfer (link down, killed run, reboot)
        resumes on the next run with the bytes after the last landed chunk.
      - V(auto) stages streams estimated at 1 GiB or more; V(always) stages every transfer to an ssh
        destination; V(never) sends straight into C(btrfs receive). Local destinations never stage.
    type: str
    choices: [auto, always, never]
    default: auto
  resumable_chunk_size:
    description:
      - The size of each staged chunk (C(--resumable-chunk-size)), for example V(16M); a cut costs at most one.
    type: str
    default: 16M
  archive_key_file:
    description:
      - The file that holds the passphrase of the borg or restic repositories among O(dest)
        (C(--archive-key-file)). borg gets it through C(BORG_PASSCOMMAND), restic through
        C(RESTIC_PASSWORD_FILE); the passphrase never appears on a command line, in a log or in the result.
      - Required when O(dest) names a C(borg:), C(borg+ssh://) or C(restic:) repository.
    type: str
    default: ""
  archive_env_file:
    description:
      - A file of C(KEY=VALUE) lines put into the environment of borg and restic
        (C(--archive-env-file)), for example S3 or REST credentials and C(BORG_*) or C(RESTIC_*)
        options. Its values are never logged.
    type: str
    default: ""
  archive_full_every:
    description:
      - In a borg or restic repository, every Nth archive is a full stream and the others are
        incremental from the one before (C(--archive-full-every)); V(1) stores every archive in full.
        A restore replays at most N archives, and retention keeps the parents of every incremental
        archive it keeps.
    type: int
    default: 7
  send_protocol:
    description:
      - The btrfs send protocol (C(--send-protocol)). V(2) sends extents that btrfs already compressed
        as they are (C(--proto 2 --compressed-data)); V(auto) uses it where the source's kernel and
        btrfs-progs and every receiver's btrfs-progs (6.0 or newer) support it.
    type: str
    choices: [auto, '1', '2']
    default: auto
  allow_same_filesystem:
    description:
      - Accept a destination on the source's own btrfs filesystem (C(--allow-same-filesystem)).
      - By default such a destination is refused with an error that names both paths, since a backup there
        is lost with the source's disk; the usual cause is a backup disk that is not mounted.
    type: bool
    default: false
  require_destination:
    description:
      - Take no snapshot unless at least one destination can take it now (C(--require-destination)).
      - By default a snapshot is taken also while every destination is unreachable (an ssh host that
        refuses or does not answer), and sent when the destination is back; a destination that is
        missing or not on btrfs still stops the run before anything is created.
    type: bool
    default: false
  max_unsent_snapshots:
    description:
      - How many snapshots are kept for a destination that cannot be reached
        (C(--max-unsent-snapshots)). V(0) sets no limit.
      - Source retention deletes nothing while a destination cannot be listed (its next incremental
        parent is unknown), so without a limit a destination that is gone for good, or a revoked
        host, makes the snapshots grow at every run. At the limit, source retention keeps for it only
        the newest snapshot the last run that reached it saw it hold, and the other destinations still
        get every backup; when it is back it continues incrementally from there and misses the
        snapshots deleted meanwhile. When that snapshot is not known, or no destination answers, no
        snapshot is taken, every one is kept, and the task fails naming the destination and since
        when it is unreachable.
    type: int
    default: 100
  source_snapshots:
    description:
      - Where the job's snapshots come from (C(--source-snapshots)). V(own) takes one at each run.
      - V(snapper:CONFIG) sends the read-only snapshots that snapper takes of O(source) with its
        configuration CONFIG (C(SOURCE/.snapshots/N/snapshot)), named C(<prefix><date>_<N>) from
        snapper's date and number; no snapshot is taken, and snapper's cleanup keeps them at the source
        (O(num_snapshots) and O(preserve_snapshots) are ignored). O(source) must be a local path.
    type: str
    default: own
  wait:
    description:
      - When another run of the same job holds its lock, wait up to this many seconds for it to end
        (C(--wait)) instead of failing at once. V(0) does not wait.
    type: int
    default: 0
  before_snapshot:
    description:
      - Commands run, in order, before the snapshot is taken (C(--before-snapshot)), for example to
        quiesce an application (V(psql -c CHECKPOINT), V(fsfreeze --freeze /srv/db)).
      - Each item is one command line, split into words as a POSIX shell splits them, but run without a
        shell; write V(sh -c "...") where one is wanted. Their output goes to the run's log.
      - They run only when the job takes a snapshot, under the job's lock, and not in check mode.
    type: list
    elements: str
    default: []
  before_snapshot_failure:
    description:
      - What a before-snapshot command that fails or runs past O(hook_timeout) does
        (C(--before-snapshot-failure)).
      - V(abort) takes no snapshot, sends nothing and fails the task with an error that names the
        command, its exit status and the end of its stderr (the run's record says it failed); V(warn)
        only warns and the run goes on.
    type: str
    choices: [abort, warn]
    default: abort
  after_snapshot:
    description:
      - Commands run right after the snapshot was taken (C(--after-snapshot)), before any transfer, also
        when it was not taken because a before-snapshot command failed - to undo what a before-snapshot
        command did, for example V(fsfreeze --unfreeze /srv/db). Split and run as O(before_snapshot);
        C(BTRFS_BACKUP_SNAPSHOT) holds the snapshot's path (empty when none was taken). One that fails
        is a warning.
    type: list
    elements: str
    default: []
  after_run:
    description:
      - Commands run after the run, also when it failed (C(--after-run)), for example to undo what a
        before-snapshot command did. Split and run as O(before_snapshot); one that fails is a warning.
      - Their environment tells the outcome - C(BTRFS_BACKUP_STATUS) (V(success) or V(failed)),
        C(BTRFS_BACKUP_JOB), C(BTRFS_BACKUP_SOURCE), C(BTRFS_BACKUP_SNAPSHOT) (the path of the snapshot
        this run took, empty if none), C(BTRFS_BACKUP_SNAPSHOT_NAME), C(BTRFS_BACKUP_DESTINATIONS),
        C(BTRFS_BACKUP_FAILED_DESTINATIONS) and C(BTRFS_BACKUP_ERRORS) (one item a line).
    type: list
    elements: str
    default: []
  hook_timeout:
    description:
      - How long one hook command may run (C(--hook-timeout)), for example V(30s) or V(10min). Past it
        the command's process group (it and every process it started) gets SIGTERM, then SIGKILL.
    type: str
    default: 5m
  ping_url:
    description:
      - A Healthchecks or Uptime Kuma style ping URL (C(--ping-url)). The run requests C(URL/start) when
        it starts, C(URL) when it succeeded and C(URL/fail), with the end of its log as the body, when
        it failed.
      - Each request waits a few seconds at most and is tried a few times; one that is not delivered
        is a warning, never a failure; each request delays the run by 15 seconds at most.
      - The URL may hold a secret; it is never logged nor returned (logs show C(https://host/…)).
    type: str
    default: ""
  ntfy_url:
    description:
      - An ntfy topic URL (C(--ntfy-url), for example C(https://ntfy.sh/TOPIC)) that gets a short
        message when the run failed (and, with O(ntfy_on_success), when it succeeded). Sent and kept
        secret as O(ping_url).
    type: str
    default: ""
  ntfy_on_success:
    description:
      - Also post to O(ntfy_url) when the run succeeded (C(--ntfy-on-success)).
    type: bool
    default: false
  locked_dests:
    description:
      - Also send to every destination that has a lock in C(.outstanding_transfers) (C(--locked-dests)),
        so that a destination dropped from O(dest) still gets its unfinished transfers completed.
    type: bool
    default: false
  remove_locks:
    description:
      - Remove the locks of the given destinations (C(--remove-locks)) before anything else.
      - Only for when no partial receive is left at those destinations, because the lock is how a later run
        finds and deletes one.
    type: bool
    default: false
  convert_rw:
    description:
      - Make read-only snapshots and backups writable before deleting them (C(-w)), for filesystems where
        only C(user_subvol_rm_allowed) permits the deletion.
    type: bool
    default: false
  sync:
    description:
      - Wait with C(btrfs subvolume sync) after deleting subvolumes (C(-s)), so their space is free when the
        task ends.
    type: bool
    default: false
extends_documentation_fragment:
  - btrfs.backup.attributes
  - btrfs.backup.snapshot_folder
  - btrfs.backup.ssh
  - btrfs.backup.run_record
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists what was (or would be) created, sent and deleted, and the lock file before and after.
  idempotent:
    support: partial
    details: >-
      With O(snapshot=false), a second run finds every snapshot at every destination and reports C(changed=false);
      with O(snapshot=true), every run takes (and sends) a new snapshot.
notes:
  - Source and destinations must be on btrfs. Use another filesystem for the destination than for the source.
  - The C(btrfs-backup) command line runs the same job from a timer on hosts without Ansible;
    both use the same snapshot names, lock file and destination ids as btrfs-backup 0.3.
  - If the module is terminated during a transfer, the lock stays, and the next run cleans up and sends again.
seealso:
  - module: btrfs.backup.btrfs_snapshot
  - module: btrfs.backup.btrfs_retention
  - module: btrfs.backup.btrfs_backup_locks
"""

EXAMPLES = r"""
- name: Back up /home to a local disk and a NAS, keeping 3 snapshots and 10 backups
  btrfs.backup.btrfs_send_backup:
    source: /home
    dest:
      - /mnt/backup/home
      - ssh://nas/srv/backups/web1/home
    num_snapshots: 3
    num_backups: 10
    ssh_user: backup
    ssh_identity_file: /root/.ssh/backup_ed25519
    ssh_sudo: true

- name: Time-bucket retention at the destination
  btrfs.backup.btrfs_send_backup:
    source: /home
    dest: /mnt/backup/home
    num_snapshots: 5
    preserve_snapshots: 24h 7d
    preserve_backups: 14d 8w 12m *y

- name: Pull from a server into local backups
  btrfs.backup.btrfs_send_backup:
    source: ssh://root@server/srv/data
    dest: /mnt/backups/server-data

- name: Only catch up on existing snapshots (changed=false when every destination has them)
  btrfs.backup.btrfs_send_backup:
    source: /home
    dest: ssh://backup@nas:2222/srv/backups/web1
    snapshot: false

- name: A full stream into a file on a USB disk
  btrfs.backup.btrfs_send_backup:
    source: /home
    dest: "shell://cat > /mnt/usb/home.btrfs-stream"
    incremental: false

- name: What would happen? (check mode returns the plan)
  btrfs.backup.btrfs_send_backup:
    source: /home
    dest: /mnt/backup/home
    num_snapshots: 3
  check_mode: true
  register: backup_plan
"""

RETURN = r"""
source:
  description: The source's id (its real path, or its C(ssh://) URL).
  returned: always
  type: str
  sample: /home
snapshot_folder:
  description: The snapshot folder's path on the source host.
  returned: always
  type: str
  sample: /home/snapshot
max_unsent_snapshots:
  description: The run's O(max_unsent_snapshots), recorded with each destination in the last-run state.
  returned: always
  type: int
  sample: 100
snapshot:
  description: The snapshot this run took (in check mode, would take); V(null) when none was taken.
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
      sample: "20261124-120000"
    path:
      description: Its path on the source host.
      type: str
      sample: /home/snapshot/20261124-120000
    uuid:
      description: Its btrfs UUID (V(null) in check mode).
      type: str
      sample: 0f8a12d7-516c-5140-a220-f623ad8b9d4f
destinations:
  description: One entry per destination.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The destination id, as recorded in C(.outstanding_transfers).
      type: str
      sample: ssh://backup@nas:22/srv/backups/web1
    status:
      description: V(ok) or V(failed).
      type: str
      sample: ok
    error:
      description: Why the destination failed, or V(null).
      type: str
      sample: null
    transfers:
      description: The snapshots sent (in check mode, to be sent), oldest first.
      type: list
      elements: dict
      contains:
        snapshot:
          description: The snapshot's name.
          type: str
        parent:
          description: The incremental parent's name, or V(null) for a full send.
          type: str
        mode:
          description: V(full) or V(incremental).
          type: str
        bytes:
          description: Bytes sent (V(null) in check mode).
          type: int
        seconds:
          description: Duration of the transfer (V(null) in check mode).
          type: float
        status:
          description: V(planned) (check mode), V(done), V(failed) or V(interrupted).
          type: str
      sample:
        - {snapshot: "20261124-120000", parent: "20261123-120000", mode: incremental, bytes: 52428,
           seconds: 0.41, status: done}
    partial_receives_deleted:
      description: Partial receives of failed transfers (earlier ones, or one of this run) that were deleted.
      type: list
      elements: str
    partials_deleted:
      description: The same list as RV(destinations[].partial_receives_deleted), under its earlier name.
      type: list
      elements: str
    locks_cleared:
      description: Snapshots whose locks for this destination were settled.
      type: list
      elements: str
    conflicts:
      description: Subvolumes that carry a snapshot's name but are not its backup; they are left alone.
      type: list
      elements: str
    unsent_snapshots:
      description:
        - Snapshots at the source that this destination has not received yet (kept for it); null for a
          C(shell://) sink. For a destination that could not be listed, counted from its newest backup
          that the last-run state knows; see O(max_unsent_snapshots).
      type: int
    unsent_ceiling:
      description:
        - For a destination out of reach at O(max_unsent_snapshots), what the run did - V(released)
          (the snapshot was taken; source retention keeps for it only the snapshot it continues from)
          or V(stopped) (no snapshot was taken); null otherwise.
      type: str
retention:
  description: Retention at the source (V(where=source)) and at each destination that has a policy.
  returned: always
  type: list
  elements: dict
  contains:
    where:
      description: V(source) or the destination id.
      type: str
    policy:
      description: The policy, in words.
      type: str
      sample: newest 3, daily 7
    kept:
      description: Every snapshot or backup kept, with the reasons.
      type: list
      elements: dict
      sample: [{name: "20261124-120000", reasons: ["one of the newest 3"]}]
    deleted:
      description: Every snapshot or backup deleted (in check mode, to be deleted), with the reason.
      type: list
      elements: dict
      sample: [{name: "20261120-120000", reason: "not kept by retention policy (newest 3)"}]
locks:
  description: "C(.outstanding_transfers) after the run: C({snapshot: {locks: [dest_id], parent_locks: [dest_id]}})."
  returned: always
  type: dict
  sample: {}
locks_removed:
  description: The locks that O(remove_locks) removed, as C({snapshot, destination}) items.
  returned: always
  type: list
  elements: dict
plan:
  description: In check mode, every step the run would take, in order; empty otherwise.
  returned: always
  type: list
  elements: str
  sample:
    - create snapshot /home/snapshot/20261124-120000 of /home
    - send 20261124-120000 to /mnt/backup/home (incremental from 20261123-120000)
    - delete /home/snapshot/20261120-120000 at source (retention)
check_mode:
  description: Whether this was a check mode run.
  returned: always
  type: bool
errors:
  description: What went wrong, one item per failed destination or step (the task then fails).
  returned: always
  type: list
  elements: str
"""

import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.btrfs.backup.plugins.module_utils import module_params
from ansible_collections.btrfs.backup.plugins.module_utils.engine.run.job import JobConfig, run_job
from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.locks import serialize_locks
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.module_utils.module_runner import ModuleCommandRunner


class Terminated(BaseException):
    """Raised from the SIGTERM handler, so that the engine stops its transfer processes."""


def argument_spec():
    spec = dict(source=dict(type="str", required=True))
    spec.update(module_params.job_argument_spec())
    spec.update(module_params.SSH_ARGUMENT_SPEC)
    spec.update(module_params.RUN_RECORD_ARGUMENT_SPEC)
    return spec


def job_config(params, check_mode):
    """The engine's JobConfig, the same one the CLI builds from its flags; BadParameter names a bad value."""
    return JobConfig(
        source=module_params.location(params, "source", params["source"]),
        progress=False,  # nobody watches a module's stderr
        check_mode=check_mode,
        job_name=params.get("job_name"),
        **module_params.job_settings(params)
    )


def module_result(job_result):
    """The engine's JobResult.as_dict(), minus the keys Ansible sets itself (failed, warnings)."""
    shaped = job_result.as_dict()
    shaped.pop("failed")
    shaped.pop("warnings")
    return shaped


def change_summary(shaped):
    """What was (or would be) created, sent and deleted, one line each, for --diff."""
    lines = []
    if shaped["snapshot"]:
        lines.append("+ snapshot %s" % shaped["snapshot"]["path"])
    for dest in shaped["destinations"]:
        for path in dest["partial_receives_deleted"]:
            lines.append("- partial backup %s at %s (left by a failed transfer)" % (path, dest["id"]))
        for transfer in dest["transfers"]:
            if transfer["status"] in ("done", "planned"):
                lines.append("+ %s at %s (%s)" % (transfer["snapshot"], dest["id"], (
                    "incremental from %s" % transfer["parent"] if transfer["parent"] else "full")))
    for section in shaped["retention"]:
        for item in section["deleted"]:
            lines.append("- %s at %s (%s)" % (item["name"], section["where"], item["reason"]))
    return "".join(line + "\n" for line in lines)


def job_diff(job_result, shaped):
    """Two diffs: the changes as a list, and the lock file before and after."""
    return [
        {"prepared": change_summary(shaped)},
        {"before_header": ".outstanding_transfers (before)",
         "after_header": ".outstanding_transfers (after)",
         "before": serialize_locks(job_result.locks_before),
         "after": serialize_locks(job_result.locks_after)},
    ]


def failure_message(job_result):
    failed = [d.id for d in job_result.destinations if d.status == "failed"]
    if failed:
        return "backup failed at %s: %s" % (", ".join(failed), "; ".join(job_result.errors))
    return "; ".join(job_result.errors)


def _on_sigterm(signum, frame):
    raise Terminated()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        config = job_config(module.params, module.check_mode)
        record = module_params.run_record(module.params)
    except BadParameter as err:
        module.fail_json(msg=str(err))
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.time()
    try:
        job_result = run_job(config, runner=ModuleCommandRunner(module))
    except Terminated:
        module.fail_json(msg="terminated: unfinished transfers stay locked in .outstanding_transfers; "
                             "the next run removes their partial receives and sends them again")
    shaped = module_result(job_result)
    problem = record(job_result, started)
    if problem:
        job_result.warn(problem)
    if module._diff:
        shaped["diff"] = job_diff(job_result, shaped)
    for warning in job_result.warnings:
        module.warn(warning)
    if job_result.failed:
        module.fail_json(msg=failure_message(job_result), **shaped)
    module.exit_json(**shaped)


if __name__ == "__main__":
    main()
