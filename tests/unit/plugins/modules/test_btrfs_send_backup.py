# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""btrfs_send_backup: parameters -> JobConfig, the result's shape, check mode's plan, over a fake btrfs host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.job_settings import JOB_SETTINGS
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.result import DestinationResult, JobResult
from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.modules import btrfs_send_backup
from ansible_collections.btrfs.backup.tests.support.setting_samples import sample
from ansible_collections.btrfs.backup.tests.unit.plugins.module_docs import documented_options


def params_with(**given):
    """The parameters as AnsibleModule hands them over: every default filled in."""
    params = {name: spec.get("default") for name, spec in btrfs_send_backup.argument_spec().items()}
    params.update(given)
    return params


@pytest.mark.parametrize("flag, field, cli_flag_value", [
    ("snapshot", "no_snapshot", True),
    ("transfer", "no_transfer", True),
    ("incremental", "no_incremental", True),
])
def test_switches_map_to_the_cli_flags(flag, field, cli_flag_value):
    config = btrfs_send_backup.job_config(params_with(source="/home", **{flag: False}), check_mode=False)
    assert getattr(config, field) is cli_flag_value
    default = btrfs_send_backup.job_config(params_with(source="/home"), check_mode=False)
    assert getattr(default, field) is not cli_flag_value


def test_every_parameter_reaches_the_job_config():
    config = btrfs_send_backup.job_config(params_with(
        source="/home", dest=["/backup", "shell://cat > /x"], snapshot_folder="/snaps", snapshot_prefix="home-",
        num_snapshots=3, num_backups=10, preserve_snapshots="24h", preserve_backups="7d 4w",
        locked_dests=True, remove_locks=True, convert_rw=True, sync=True, ssh_sudo=True, max_unsent_snapshots=7,
        ssh_identity_file="/root/.ssh/id", ssh_options=["Compression=no"]), check_mode=True)
    assert (config.source, config.destinations) == ("/home", ["/backup", "shell://cat > /x"])
    assert (config.snapshot_folder, config.prefix) == ("/snaps", "home-")
    assert (config.num_snapshots, config.num_backups, config.max_unsent_snapshots) == (3, 10, 7)
    assert (config.preserve_snapshots, config.preserve_backups) == ("24h", "7d 4w")
    assert config.locked_dests and config.remove_locks and config.convert_rw and config.sync
    assert config.ssh_sudo and config.check_mode and not config.progress
    assert config.ssh_options == ["IdentityFile=/root/.ssh/id", "Compression=no"]


# Every setting of the table that the module takes, with a value other than its default: it reaches the
# JobConfig, and nothing else changes (a setting added to the table without its mapping fails here).
@pytest.mark.parametrize("setting", [s for s in JOB_SETTINGS if s.module], ids=lambda s: s.name)
def test_every_setting_reaches_the_job_config(setting):
    value = sample(setting)
    given = btrfs_send_backup.job_config(
        params_with(source="/home", **{setting.module: not value if setting.module_negated else value}),
        check_mode=False)
    default = btrfs_send_backup.job_config(params_with(source="/home"), check_mode=False)
    assert getattr(given, setting.name) == value
    assert given._replace(**{setting.name: getattr(default, setting.name)}) == default


def test_the_settings_the_module_leaves_out():
    # check mode is Ansible's own; btrfs debug output would go to a stderr that nobody reads.
    assert {s.name for s in JOB_SETTINGS if not s.module} == {"btrfs_debug", "check_mode"}


@pytest.mark.parametrize("setting", [s for s in JOB_SETTINGS if s.module], ids=lambda s: s.name)
def test_documentation_and_argument_spec_follow_the_table(setting):
    spec = btrfs_send_backup.argument_spec()[setting.module]
    assert spec == setting.module_spec()
    documented = documented_options(btrfs_send_backup)[setting.module]
    assert documented["type"] == spec["type"]
    assert documented.get("elements") == spec.get("elements")
    assert documented.get("default") == spec.get("default")
    assert documented.get("choices") == spec.get("choices")
    assert documented.get("aliases") == spec.get("aliases")


def test_every_documented_option_is_in_the_argument_spec():
    assert set(documented_options(btrfs_send_backup)) == set(btrfs_send_backup.argument_spec())


@pytest.mark.parametrize("url, user, port, expected", [
    ("ssh://nas/backups", "backup", 2222, "ssh://backup@nas:2222/backups"),
    ("ssh://nas/backups", None, None, "ssh://nas/backups"),
    ("ssh://root@nas:22/backups", "backup", 2222, "ssh://root@nas:22/backups"),
    ("ssh://[::1]/backups", "backup", None, "ssh://backup@[::1]/backups"),
    ("/local/backups", "backup", 2222, "/local/backups"),
])
def test_ssh_user_and_port_complete_ssh_urls(url, user, port, expected):
    config = btrfs_send_backup.job_config(params_with(source="/home", dest=[url], ssh_user=user, ssh_port=port),
                                          check_mode=False)
    assert config.destinations == [expected]


@pytest.mark.parametrize("given, parameter", [
    ({"num_snapshots": -1}, "num_snapshots"),
    ({"num_backups": -3}, "num_backups"),
    ({"preserve_snapshots": "7x"}, "preserve_snapshots"),
    ({"preserve_backups": "7d 8d"}, "preserve_backups"),
    ({"max_unsent_snapshots": -1}, "max_unsent_snapshots"),
    ({"dest": ["ftp://nas/backups"]}, "dest"),
    ({"dest": ["ssh://nas:port/backups"]}, "dest"),
    ({"dest": ["ssh://nas/backups"], "ssh_user": "no spaces"}, "ssh_user"),
    ({"source": "shell://cat"}, "source"),
    ({"snapshot_prefix": "-x"}, "snapshot_prefix"),
    ({"ssh_options": ["NoEquals"]}, "ssh_options"),
])
def test_bad_values_name_their_parameter(given, parameter):
    with pytest.raises(BadParameter) as caught:
        btrfs_send_backup.job_config(params_with(**dict({"source": "/home"}, **given)), check_mode=False)
    assert caught.value.parameter == parameter
    assert str(caught.value).startswith("parameter %s: " % parameter)


def test_a_bad_parameter_fails_before_any_command(run_module, host):
    failed, result = run_module(btrfs_send_backup, {"source": host.path("data"), "num_snapshots": -1}, host)
    assert failed and result["msg"].startswith("parameter num_snapshots: ")
    assert host.commands == []


def test_a_wrong_type_is_refused_by_the_argument_spec(run_module, host):
    failed, result = run_module(btrfs_send_backup, {"source": host.path("data"), "num_backups": "many"}, host)
    assert failed and "num_backups" in result["msg"]
    assert host.commands == []


@pytest.fixture
def with_snapshots(host):
    """data has snapshots s1 (20260101-000000) and s2 (20260102-000000); /dest holds s1's backup."""
    folder = host.path("data", "snapshot")
    os.makedirs(folder)
    one = host.snapshot(host.path("data"), os.path.join(folder, "20260101-000000"))
    host.snapshot(host.path("data"), os.path.join(folder, "20260102-000000"))
    os.makedirs(host.path("dest"))
    host.subvolume(host.path("dest", "20260101-000000"), readonly=True,
                   received_uuid=host.subvolumes[one]["uuid"])
    return host


def test_check_mode_returns_the_plan_with_parents_and_changes_nothing(run_module, with_snapshots):
    host = with_snapshots
    before = dict(host.subvolumes)
    failed, result = run_module(btrfs_send_backup, {
        "source": host.path("data"), "dest": [host.path("dest"), host.path("fresh")], "num_snapshots": 1},
        host, check_mode=True)
    assert not failed and result["changed"] and result["check_mode"]
    new = result["snapshot"]["name"]
    assert result["plan"][0] == "create snapshot %s of %s" % (result["snapshot"]["path"], host.path("data"))
    dest, fresh = result["destinations"]
    assert [(t["snapshot"], t["parent"], t["status"]) for t in dest["transfers"]] == [
        ("20260102-000000", "20260101-000000", "planned"), (new, "20260102-000000", "planned")]
    assert [(t["snapshot"], t["mode"]) for t in fresh["transfers"]] == [
        ("20260101-000000", "full"), ("20260102-000000", "incremental"), (new, "incremental")]
    assert "create destination folder %s" % host.path("fresh") in result["plan"]
    source = result["retention"][0]
    assert source["where"] == "source"
    assert [d["name"] for d in source["deleted"]] == ["20260101-000000", "20260102-000000"]
    assert host.subvolumes == before
    assert not os.path.exists(host.path("fresh"))
    assert not host.ran("btrfs", "subvolume", "snapshot")


def test_nothing_to_do_is_not_a_change(run_module, with_snapshots):
    host = with_snapshots
    params = {"source": host.path("data"), "dest": host.path("dest"), "snapshot": False, "transfer": False}
    failed, result = run_module(btrfs_send_backup, params, host)
    assert not failed and not result["changed"]
    assert result["snapshot"] is None and result["plan"] == []
    assert "failed" not in result and "warnings" not in result


def test_retention_without_transfer_deletes_and_then_is_idempotent(run_module, with_snapshots):
    host = with_snapshots
    host.snapshot(host.path("data"), host.path("data", "snapshot", "20251231-000000"))
    params = {"source": host.path("data"), "dest": host.path("dest"), "snapshot": False, "transfer": False,
              "num_snapshots": 1}
    failed, first = run_module(btrfs_send_backup, params, host, diff=True)
    assert not failed and first["changed"]
    # 20260101 is kept anyway: it is the newest that /dest holds, the next incremental parent.
    kept = {k["name"]: k["reasons"] for k in first["retention"][0]["kept"]}
    assert set(kept) == {"20260101-000000", "20260102-000000"}
    assert any("next incremental parent" in reason for reason in kept["20260101-000000"])
    assert first["diff"][0]["prepared"] == (
        "- 20251231-000000 at source (not kept by retention policy (newest 1))\n")
    assert "20251231-000000" not in os.listdir(host.path("data", "snapshot"))
    second = run_module(btrfs_send_backup, params, host)[1]
    assert not second["changed"]


def test_a_failed_destination_fails_the_task_naming_it(run_module, with_snapshots):
    host = with_snapshots
    missing = host.path("no", "such", "dest")
    failed, result = run_module(btrfs_send_backup, {
        "source": host.path("data"), "dest": [host.path("dest"), missing], "snapshot": False, "transfer": True},
        host, check_mode=True)
    assert failed
    assert result["msg"].startswith("backup failed at %s: " % missing)
    statuses = {d["id"]: d["status"] for d in result["destinations"]}
    assert statuses == {host.path("dest"): "ok", missing: "failed"}
    assert result["errors"]


def test_module_result_drops_the_keys_ansible_owns():
    job = JobResult(check_mode=True)
    job.warn("something")
    shaped = btrfs_send_backup.module_result(job)
    assert "failed" not in shaped and "warnings" not in shaped
    assert set(shaped) >= {"changed", "snapshot", "destinations", "retention", "locks", "plan", "errors"}


def test_change_summary_lists_creations_sends_and_deletions():
    job = JobResult()
    job.snapshot = {"name": "s3", "path": "/home/snapshot/s3", "uuid": "u"}
    dest = DestinationResult("/backup")
    dest.partial_receives_deleted.append("/backup/s2")
    dest.transfers = [
        {"snapshot": "s2", "parent": "s1", "status": "done"},
        {"snapshot": "s3", "parent": None, "status": "failed"},
    ]
    job.destinations.append(dest)
    job.retention_section("source", _Policy()).deleted.append({"name": "s0", "reason": "old"})
    assert btrfs_send_backup.change_summary(btrfs_send_backup.module_result(job)).splitlines() == [
        "+ snapshot /home/snapshot/s3",
        "- partial backup /backup/s2 at /backup (left by a failed transfer)",
        "+ s2 at /backup (incremental from s1)",
        "- s0 at source (old)",
    ]


def test_failure_message_names_failed_destinations():
    job = JobResult()
    ok, bad = DestinationResult("/a"), DestinationResult("ssh://nas/b")
    bad.fail(Exception("no route"))
    job.destinations = [ok, bad]
    job.errors.append("ssh://nas/b: no route")
    assert btrfs_send_backup.failure_message(job) == "backup failed at ssh://nas/b: ssh://nas/b: no route"


class _Policy(object):
    def describe(self):
        return "newest 1"


def test_archive_destinations_and_their_settings_reach_the_job_config():
    config = btrfs_send_backup.job_config(params_with(
        source="/home", dest=["/backup", "borg:/mnt/usb/borg", "restic:s3:http://127.0.0.1:9000/b"],
        archive_key_file="/etc/btrfs-backup/home.key", archive_env_file="", archive_full_every=3), check_mode=False)
    assert config.destinations == ["/backup", "borg:/mnt/usb/borg", "restic:s3:http://127.0.0.1:9000/b"]
    assert (config.archive_key_file, config.archive_env_file, config.archive_full_every) == \
        ("/etc/btrfs-backup/home.key", "", 3)
