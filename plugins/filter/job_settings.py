# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter job_settings: the btrfs_backup role's jobs and settings checked on the controller, one line per problem."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: job_settings
short_description: Check the btrfs_backup role's jobs and settings before anything is written
version_added: 1.0.0
description:
  - Checks each job of O(_input) against the job keys of the role's C(meta/argument_specs.yml)
    (O(job_options)) - an unknown key is named with the closest valid one - and every size,
    duration, retention policy and compression setting, of the jobs and of O(variables), with the
    engine's own parsers.
  - Lists the calendar expressions and time spans that go into systemd units, which only the host's
    own C(systemd-analyze) can check; the role runs it on each host.
  - Each problem is one line that names the host, the job (or the variable), the key and the value.
author:
  - btrfs.backup maintainers (!UNKNOWN)
positional: _input, host, job_options
options:
  _input:
    description: The jobs, as O(btrfs.backup.btrfs_backup#role:main:btrfs_backup_jobs) gives them.
    type: list
    elements: raw
    required: true
  host:
    description: The host's name, which starts every line.
    type: str
    required: true
  job_options:
    description: The argument spec of one job (the C(options) of C(btrfs_backup_jobs) in the role's argument specs).
    type: dict
    required: true
  variables:
    description:
      - Role variables (name to value) whose values end up in a unit or a job's config. The setting
        each holds is known by the end of its name (C(btrfs_backup_server_quota) is a quota,
        C(btrfs_backup_server_prune_schedule) a calendar); others are ignored.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Fail on the first host whose jobs have a typo or a bad size
  ansible.builtin.fail:
    msg: "{{ item }}"
  loop: "{{ checked.problems }}"
  vars:
    checked: >-
      {{ btrfs_backup_jobs | btrfs.backup.job_settings(inventory_hostname, job_options,
                                                       variables={'btrfs_backup_max_age': btrfs_backup_max_age}) }}
"""

RETURN = r"""
_value:
  description: What was found.
  type: dict
  contains:
    problems:
      description:
        - "One line per problem, for example
          V(src1: backup job 'home': unknown key 'randomized_dealy' (did you mean 'randomized_delay'?))."
      type: list
      elements: str
    systemd:
      description:
        - The distinct values that systemd parses, each with its C(kind) (V(calendar) or V(timespan)),
          its C(value), and C(uses), the lines that name where it was set (host, job, key).
      type: list
      elements: dict
"""

import difflib
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.job_settings import JOB_SETTINGS
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.setting_checks import ENGINE_SETTINGS, setting_problem

# The settings that go into systemd units as they are: OnCalendar= expressions and time spans.
SYSTEMD_SETTINGS = {
    "schedule": "calendar",
    "verify_schedule": "calendar",
    "prune_schedule": "calendar",
    "randomized_delay": "timespan",
    "accuracy": "timespan",
    "timeout": "timespan",
}
_SETTINGS = sorted(set(SYSTEMD_SETTINGS) | set(ENGINE_SETTINGS), key=len, reverse=True)
# The engine check of each job key: those of the table's job settings, and the role's own max_age.
_JOB_KEY_CHECKS = dict(((s.role, s.check) for s in JOB_SETTINGS if s.role and s.check), max_age="max_age")


def setting_of(variable):
    """The setting a role variable holds, by the end of its name (the longest that fits), or None."""
    return next((s for s in _SETTINGS if variable == s or variable.endswith("_" + s)), None)


def _job_label(index, job):
    name = job.get("name") if isinstance(job, dict) else None
    return "backup job '%s'" % name if isinstance(name, str) and name else "backup job #%d (no name)" % (index + 1)


def _key_problems(where, job, job_options):
    """Unknown keys (with the closest valid key) and values of the wrong type, as Ansible types them."""
    result = ArgumentSpecValidator(job_options).validate(dict(job))
    lines = []
    for key in sorted(result.unsupported_parameters):
        close = difflib.get_close_matches(key, sorted(job_options), n=1, cutoff=0.6)
        hint = " (did you mean '%s'?)" % close[0] if close else " (valid keys: %s)" % ", ".join(sorted(job_options))
        lines.append("%s: unknown key '%s'%s" % (where, key, hint))
    for error in result.errors:
        if type(error).__name__ == "UnsupportedError":
            continue
        # Ansible's wording of a type error differs between versions (some leave the value out).
        wrong_type = re.match(r"argument '([^']+)' is of type", str(error))
        if type(error).__name__ == "ArgumentTypeError" and wrong_type and wrong_type.group(1) in job:
            key = wrong_type.group(1)
            if key in _JOB_KEY_CHECKS:
                continue  # the engine's own check of the key says it better (job_settings below)
            # A secret (a repository passphrase, a store's credentials) is named, never shown.
            shown = "a %s (hidden)" % type(job[key]).__name__ if job_options[key].get("no_log") else repr(job[key])
            lines.append("%s: key '%s' must be of type %s, not %s"
                         % (where, key, job_options[key].get("type", "str"), shown))
        else:
            lines.append("%s: %s" % (where, str(error).replace("argument '", "key '", 1)))
    return lines


def _sends_snapper_snapshots(job):
    """Whether a job's source_snapshots is a valid snapper:CONFIG (a bad value is reported apart)."""
    value = job.get("source_snapshots")
    return value not in (None, "own") and setting_problem("source_snapshots", value) is None


def job_settings(jobs, host, job_options, variables=None):
    """{'problems': [line, ...], 'systemd': [{'kind', 'value', 'uses'}, ...]} for one host."""
    if not isinstance(jobs, list):
        raise AnsibleFilterError("job_settings: the jobs must be a list, not %s" % type(jobs).__name__)
    problems, systemd = [], {}

    def check(where, name, setting, value):
        if value is None:
            return
        if setting in SYSTEMD_SETTINGS:
            kind = SYSTEMD_SETTINGS[setting]
            entry = systemd.setdefault((kind, str(value)), {"kind": kind, "value": str(value), "uses": []})
            entry["uses"].append("%s: %s" % (where, name))
            return
        problem = setting_problem(setting, value, name)
        if problem:
            problems.append("%s: %s" % (where, problem))

    for name, value in sorted((variables or {}).items()):
        setting = setting_of(name)
        if setting:
            check(host, name, setting, value)
    for index, job in enumerate(jobs):
        where = "%s: %s" % (host, _job_label(index, job))
        if not isinstance(job, dict):
            problems.append("%s: is %r, not a dictionary of job keys" % (where, job))
            continue
        problems.extend(_key_problems(where, job, job_options))
        for key in sorted(job):
            if key in job_options and key in SYSTEMD_SETTINGS:
                check(where, key, key, job[key])
            elif key in job_options and key in _JOB_KEY_CHECKS:
                check(where, key, _JOB_KEY_CHECKS[key], job[key])
        if _sends_snapper_snapshots(job) and job.get("server", True):
            problems.append("%s: source_snapshots %s cannot go to the backup server (btrfs-backup serve does not "
                            "take snapper's snapshots yet): set server: false and give the job destinations"
                            % (where, job["source_snapshots"]))
    return {"problems": problems, "systemd": sorted(systemd.values(), key=lambda e: (e["kind"], e["value"]))}


class FilterModule(object):
    """The btrfs_backup role's settings checks."""

    def filters(self):
        return {"job_settings": job_settings}
