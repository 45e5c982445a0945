# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""btrfs_backup_info: the job given by its parameters, built from the settings table as btrfs_send_backup's is."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


import pytest

from ansible_collections.btrfs.backup.plugins.module_utils.module_params import BadParameter
from ansible_collections.btrfs.backup.plugins.modules import btrfs_backup_info
from ansible_collections.btrfs.backup.tests.unit.plugins.module_docs import documented_options


def params_with(**given):
    params = {name: spec.get("default") for name, spec in btrfs_backup_info.argument_spec().items()}
    params.update(given)
    return params


def test_the_parameters_make_the_job():
    job = btrfs_backup_info.ad_hoc_job(params_with(
        source="/home", destinations=["/mnt/b1", "ssh://nas/srv/b"], snapshot_folder="snaps",
        snapshot_prefix="home-", ssh_user="backup", ssh_port=2222, ssh_sudo=True,
        ssh_options=["Compression=no"], job_name="home"))
    assert (job.identity.name, job.source, job.identity.source_id, job.identity.snapshot_folder, job.identity.prefix) == (
        "home", "/home", "/home", "/home/snaps", "home-")
    assert job.destinations == ["/mnt/b1", "ssh://backup@nas:2222/srv/b"]
    assert (job.ssh_options, job.ssh_sudo) == (["Compression=no"], True)


def test_defaults_are_the_engines():
    job = btrfs_backup_info.ad_hoc_job(params_with(source="/home"))
    assert (job.identity.snapshot_folder, job.identity.prefix, job.destinations, job.ssh_options, job.ssh_sudo) == (
        "/home/snapshot", "", [], [], False)
    assert job.identity.name  # made from the source


@pytest.mark.parametrize("given, parameter", [
    ({"destinations": ["shell://cat > /x"]}, "destinations"),
    ({"snapshot_prefix": "-bad"}, "snapshot_prefix"),
    ({"snapshot_folder": "../up"}, "snapshot_folder"),
    ({"job_name": "no spaces"}, "source"),
])
def test_bad_values_name_their_parameter(given, parameter):
    with pytest.raises(BadParameter) as raised:
        btrfs_backup_info.ad_hoc_job(params_with(source="/home", **given))
    assert raised.value.parameter == parameter


def test_documentation_follows_the_argument_spec():
    documented = documented_options(btrfs_backup_info)
    spec = btrfs_backup_info.argument_spec()
    assert set(documented) == set(spec)
    for name, entry in spec.items():
        for key in ("type", "elements", "default", "choices"):
            assert documented[name].get(key) == entry.get(key), (name, key)


def test_an_archive_destination_gives_the_chain_a_restore_of_its_newest_replays():
    from types import SimpleNamespace

    state = {"destinations": {
        "borg:/mnt/usb/borg": {"status": "ok", "newest_backup": "20261205-020000", "newest_backup_time": 100.0,
                               "archive_chain": 3},
        "/mnt/backup": {"status": "ok", "newest_backup": "20261205-020000", "newest_backup_time": 100.0}}}
    verdict = SimpleNamespace(row_label=lambda dest_id: "OK", label="OK", level=0, reasons=[])
    status = SimpleNamespace(
        spec=SimpleNamespace(identity=SimpleNamespace(name="home", source_id="/home", snapshot_folder="/home/snapshot"),
                             config_file=None),
        judged=SimpleNamespace(state=state, verdict=verdict, timer=None, max_age=None), survey=None)
    facts = btrfs_backup_info.job_facts(status, now=160.0)
    chains = {d["id"]: d["archive_chain"] for d in facts["destinations"]}
    assert chains == {"borg:/mnt/usb/borg": 3, "/mnt/backup": None}
