# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Module parameters -> engine arguments: the shared ssh options, and each value checked by the engine."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.btrfs.backup.plugins.module_utils.engine.model import names

from ansible_collections.btrfs.backup.plugins.module_utils.engine.host import recording
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.units import parse_duration
from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.endpoints.base import check_path
from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.endpoints.location import (
    parse_location,
)
from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.endpoints.ssh import (
    validate_ssh_option,
)
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model import job_settings as table
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.errors import ConfigError
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.job_identity import validate_job_name
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.retention import parse_buckets

# Documented once in plugins/doc_fragments/ssh.py; every module that reaches hosts takes these.
SSH_ARGUMENT_SPEC = dict(
    ssh_user=dict(type="str"),
    ssh_port=dict(type="int"),
    ssh_identity_file=dict(type="path"),
    ssh_options=dict(type="list", elements="str", default=[]),
    ssh_sudo=dict(type="bool", default=False),
)


class BadParameter(Exception):
    """A parameter value the engine refuses; the message names the parameter (nothing has run yet)."""

    def __init__(self, parameter, problem):
        super(BadParameter, self).__init__("parameter %s: %s" % (parameter, problem))
        self.parameter = parameter


def checked(parameter, check, value):
    """Run one engine check on one parameter's value, turning its ConfigError into BadParameter."""
    try:
        return check(value)
    except ConfigError as err:
        raise BadParameter(parameter, str(err))


def ssh_options(params):
    """`ssh_identity_file` and `ssh_options` as the engine's list of `Key=value` ssh options."""
    ssh_port(params)  # checked even when no location is an ssh:// URL: a typo should not wait
    options = []
    identity = params.get("ssh_identity_file")
    if identity:
        checked("ssh_identity_file", lambda p: check_path(p, "identity file"), identity)
        # ssh_config splits values at blanks unless they are quoted.
        options.append('IdentityFile="%s"' % identity if any(c.isspace() for c in identity)
                       else "IdentityFile=%s" % identity)
    for option in params.get("ssh_options") or []:
        options.append(checked("ssh_options", validate_ssh_option, option))
    return options


def ssh_port(params):
    port = params.get("ssh_port")
    if port is not None and not 0 < port < 65536:
        raise BadParameter("ssh_port", "%d is not a port number (1-65535)" % port)
    return port


def location(params, parameter, value, allow_shell=False):
    """A source or destination as the engine takes it; an ssh:// URL without a user or port
    gets `ssh_user` / `ssh_port` written into it, so that it names the same destination id
    (ssh://user@host:port/path, the key in .outstanding_transfers) as a URL written in full."""
    endpoint = checked(parameter, lambda spec: parse_location(spec, allow_shell=allow_shell), value)
    completed = checked("ssh_user", lambda user: endpoint.with_login(user, ssh_port(params)), params.get("ssh_user"))
    return value if completed is endpoint else completed.id


def locations(params, parameter, values, allow_shell=True):
    return [location(params, parameter, value, allow_shell) for value in values or []]


def snapshot_folder(params, parameter="snapshot_folder"):
    return checked(parameter, lambda p: check_path(p, "snapshot folder"), params[parameter])


def prefix(params, parameter="snapshot_prefix"):
    return checked(parameter, names.validate_prefix, params[parameter] or "")


def snapshot_name(params, parameter="name"):
    value = params.get(parameter)
    return None if value is None else checked(parameter, names.validate_name, value)


def snapshot_names(params, parameter):
    return [checked(parameter, names.validate_name, value) for value in params.get(parameter) or []]


def whole_number(params, parameter):
    """Counts: 0 means no limit; a negative count is refused rather than read as 'all'."""
    value = params[parameter]
    if value < 0:
        raise BadParameter(parameter, "must be a whole number >= 0 (0 keeps all), not %d" % value)
    return value


def retention_terms(params, parameter):
    """A time-bucket policy such as '24h 7d 4w 12m *y', checked now so a typo changes nothing."""
    value = params[parameter] or ""
    checked(parameter, parse_buckets, value)
    return value


# Documented in the module's own DOCUMENTATION, except where a doc fragment does (tests hold them to the table).
def job_argument_spec():
    """The argument spec entries of the job settings that btrfs_send_backup takes (not those of SSH_ARGUMENT_SPEC)."""
    return dict((s.module, s.module_spec()) for s in table.JOB_SETTINGS
                if s.module and s.module not in SSH_ARGUMENT_SPEC)


def job_settings(params, parameters=None, allow_shell=True):
    """{setting: engine value} of every job setting whose parameter is in `params`, each checked
    as the engine takes it (BadParameter names the parameter). `parameters` renames: {setting: parameter}."""
    values = {}
    for setting in table.JOB_SETTINGS:
        parameter = (parameters or {}).get(setting.name, setting.module)
        if parameter and parameter in params:
            values[setting.name] = _setting_value(params, setting, parameter, allow_shell)
    return values


def _setting_value(params, setting, parameter, allow_shell):
    value = params[parameter]
    if setting.module_negated:
        return not value
    if setting.type == table.LOCATIONS:
        return locations(params, parameter, value, allow_shell=allow_shell)
    if setting.type == table.SSH_OPTIONS:
        return ssh_options(params)
    if setting.type == table.PATH:
        return snapshot_folder(params, parameter)
    if setting.type == table.PREFIX:
        return prefix(params, parameter)
    if setting.type == table.COUNT:
        return whole_number(params, parameter)
    if setting.type == table.POLICY:
        return retention_terms(params, parameter)
    return value  # sizes and compression: the engine checks them before the run changes anything


# Documented once in plugins/doc_fragments/run_record.py.
RUN_RECORD_ARGUMENT_SPEC = dict(
    job_name=dict(type="str"),
    max_age=dict(type="str"),
    metrics_dir=dict(type="path"),
)


def run_record(params):
    """Check the run-record options now; returns record(job_result, started) -> problem or None."""
    job = checked("job_name", validate_job_name, params["job_name"]) if params["job_name"] else None
    max_age = checked("max_age", parse_duration, params["max_age"]) if params["max_age"] else None
    if params["metrics_dir"]:
        checked("metrics_dir", _existing_folder, params["metrics_dir"])

    def record(job_result, started):
        if job_result.identity is None:
            return None  # the source was not usable: no job to record
        return recording.record_run(
            job_result.as_dict(), identity=job_result.identity.named(job), started=started,
            duration=time.time() - started, max_age=max_age, metrics_dir=params["metrics_dir"])
    return record


def _existing_folder(path):
    if not os.path.isdir(path):
        raise ConfigError("folder %s does not exist" % path)
    return path
