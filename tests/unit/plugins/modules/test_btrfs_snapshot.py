# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""btrfs_snapshot: parameters, results, check and diff mode, over a fake btrfs host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

import pytest

from ansible_collections.btrfs.backup.plugins.modules import btrfs_snapshot


@pytest.mark.parametrize("params, parameter", [
    ({"source": "data/../etc"}, "source"),
    ({"source": "shell://cat"}, "source"),
    ({"source": "ftp://host/data"}, "source"),
    ({"name": "../escape"}, "name"),
    ({"name": "a/b"}, "name"),
    ({"snapshot_prefix": "home/"}, "snapshot_prefix"),
    ({"snapshot_folder": "../elsewhere"}, "snapshot_folder"),
    ({"ssh_options": ["-oProxyCommand=touch /tmp/x"]}, "ssh_options"),
    ({"ssh_port": 70000}, "ssh_port"),
    ({"state": "absent"}, "name"),
    ({"state": "gone"}, "state"),
])
def test_bad_parameters_fail_naming_the_parameter_and_run_nothing(run_module, host, params, parameter):
    params = dict({"source": host.path("data")}, **params)
    failed, result = run_module(btrfs_snapshot, params, host)
    assert failed
    assert parameter in result["msg"]
    assert host.commands == []


def test_a_new_snapshot_is_named_by_the_scheme_and_read_only(run_module, host):
    failed, result = run_module(btrfs_snapshot, {"source": host.path("data"), "snapshot_prefix": "home-"}, host)
    assert not failed and result["changed"]
    snapshot = result["snapshot"]
    assert re.match(r"^home-\d{8}-\d{6}$", snapshot["name"])
    assert snapshot["path"] == host.path("data", "snapshot", snapshot["name"])
    assert snapshot["readonly"] is True
    assert snapshot["uuid"] == host.subvolumes[snapshot["path"]]["uuid"]
    assert host.ran("btrfs", "subvolume", "snapshot", "-r")


def test_a_named_snapshot_is_taken_once(run_module, host):
    params = {"source": host.path("data"), "name": "before-upgrade", "snapshot_folder": host.path("data", "snaps")}
    first = run_module(btrfs_snapshot, params, host)[1]
    second = run_module(btrfs_snapshot, params, host)[1]
    assert first["changed"] and not second["changed"]
    assert second["snapshot"] == first["snapshot"]
    assert second["plan"] == []
    assert len(host.ran("btrfs", "subvolume", "snapshot")) == 1


def test_a_writable_subvolume_under_the_name_is_refused(run_module, host):
    os.makedirs(host.path("data", "snapshot"))
    host.subvolume(host.path("data", "snapshot", "mine"))
    failed, result = run_module(btrfs_snapshot, {"source": host.path("data"), "name": "mine"}, host)
    assert failed and "writable" in result["msg"]


def test_check_mode_plans_and_creates_nothing(run_module, host):
    failed, result = run_module(btrfs_snapshot, {"source": host.path("data"), "name": "s1"}, host, check_mode=True)
    assert not failed and result["changed"]
    assert result["snapshot"]["uuid"] is None
    assert result["plan"] == [
        "create snapshot folder %s" % host.path("data", "snapshot"),
        "create read-only snapshot %s of %s" % (host.path("data", "snapshot", "s1"), host.path("data")),
    ]
    assert list(host.subvolumes) == [host.path("data")]
    assert not os.path.exists(host.path("data", "snapshot"))


@pytest.fixture
def existing(host):
    os.makedirs(host.path("data", "snapshot"))
    return host.snapshot(host.path("data"), host.path("data", "snapshot", "s1"))


def test_absent_deletes_once(run_module, host, existing):
    params = {"source": host.path("data"), "name": "s1", "state": "absent"}
    failed, first = run_module(btrfs_snapshot, params, host)
    assert not failed and first["changed"] and first["snapshot"]["path"] == existing
    assert existing not in host.subvolumes
    second = run_module(btrfs_snapshot, params, host)[1]
    assert not second["changed"] and second["snapshot"] is None


def test_absent_in_check_mode_keeps_the_snapshot(run_module, host, existing):
    params = {"source": host.path("data"), "name": "s1", "state": "absent"}
    failed, result = run_module(btrfs_snapshot, params, host, check_mode=True)
    assert not failed and result["changed"] and result["plan"] == ["delete snapshot %s" % existing]
    assert existing in host.subvolumes


def test_absent_refuses_a_locked_snapshot(run_module, host, existing):
    with open(host.path("data", "snapshot", ".outstanding_transfers"), "w") as handle:
        json.dump({"s1": {"locks": ["/backup"]}}, handle)
    failed, result = run_module(btrfs_snapshot, {"source": host.path("data"), "name": "s1", "state": "absent"}, host)
    assert failed and "unfinished" in result["msg"] and "/backup" in result["msg"]
    assert existing in host.subvolumes


def test_absent_with_convert_rw_makes_it_writable_first(run_module, host, existing):
    params = {"source": host.path("data"), "name": "s1", "state": "absent", "convert_rw": True}
    run_module(btrfs_snapshot, params, host)
    assert host.ran("btrfs", "property", "set", "-ts", existing, "ro", "false")


@pytest.mark.parametrize("state, before, after", [("present", "absent", "present"), ("absent", "present", "absent")])
def test_diff_shows_the_snapshot_state(run_module, host, state, before, after):
    if state == "absent":
        os.makedirs(host.path("data", "snapshot"))
        host.snapshot(host.path("data"), host.path("data", "snapshot", "s1"))
    params = {"source": host.path("data"), "name": "s1", "state": state}
    diff = run_module(btrfs_snapshot, params, host, diff=True)[1]["diff"]
    assert diff["before"]["state"] == before and diff["after"]["state"] == after


def test_ssh_parameters_reach_ssh(run_module, host):
    host.answer(["ssh"], 255, stderr="ssh: connect to host nas port 2222: Connection refused")
    params = {"source": "ssh://nas/srv/data", "ssh_user": "backup", "ssh_port": 2222,
              "ssh_identity_file": "/keys/id backup", "ssh_options": ["StrictHostKeyChecking=yes"]}
    failed, result = run_module(btrfs_snapshot, params, host)
    assert failed and "Connection refused" in result["msg"]
    listing = [argv for argv in host.ran("ssh") if "-G" not in argv][0]
    assert "backup@nas" in listing
    assert listing[listing.index("-p") + 1] == "2222"
    options = [listing[i + 1] for i, word in enumerate(listing) if word == "-o"]
    assert options[:2] == ['IdentityFile="/keys/id backup"', "StrictHostKeyChecking=yes"]
