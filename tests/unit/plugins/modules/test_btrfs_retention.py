# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""btrfs_retention: parameters, kept/deleted with reasons, check and diff mode, over a fake btrfs host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.btrfs.backup.plugins.modules import btrfs_retention

NAMES = ["20260101-000000", "20260102-000000", "20260103-000000", "20260104-000000"]


@pytest.fixture
def folder(host):
    """A snapshot folder with four snapshots a day apart, plus a subvolume that is not ours."""
    path = host.path("data", "snapshot")
    os.makedirs(path)
    for name in NAMES:
        host.snapshot(host.path("data"), os.path.join(path, name))
    host.snapshot(host.path("data"), os.path.join(path, "manual-copy"))
    return path


@pytest.mark.parametrize("params, parameter", [
    ({"count": -1}, "count"),
    ({"preserve": "3q"}, "preserve"),
    ({"preserve": "2d 3d"}, "preserve"),
    ({"snapshot_prefix": "a b"}, "snapshot_prefix"),
    ({"path": "shell://cat"}, "path"),
    ({"ssh_options": ["=x"]}, "ssh_options"),
])
def test_bad_parameters_fail_naming_the_parameter_and_run_nothing(run_module, host, folder, params, parameter):
    failed, result = run_module(btrfs_retention, dict({"path": folder}, **params), host)
    assert failed and result["msg"].startswith("parameter %s: " % parameter)
    assert host.commands == []


def test_count_deletes_the_oldest_with_reasons_then_nothing(run_module, host, folder):
    failed, first = run_module(btrfs_retention, {"path": folder, "count": 2}, host)
    assert not failed and first["changed"]
    assert first["deleted"] == [{"name": n, "reason": "not kept by retention policy (newest 2)"} for n in NAMES[:2]]
    assert first["kept"] == [{"name": n, "reasons": ["one of the newest 2"]} for n in NAMES[2:]]
    assert sorted(os.listdir(folder)) == sorted(NAMES[2:] + ["manual-copy"])
    assert first["plan"] == ["delete %s (retention)" % os.path.join(folder, n) for n in NAMES[:2]]
    second = run_module(btrfs_retention, {"path": folder, "count": 2}, host)[1]
    assert not second["changed"] and second["deleted"] == [] and second["plan"] == []


def test_check_mode_reports_the_same_decisions_and_deletes_nothing(run_module, host, folder):
    failed, result = run_module(btrfs_retention, {"path": folder, "count": 1}, host, check_mode=True, diff=True)
    assert not failed and result["changed"]
    assert [d["name"] for d in result["deleted"]] == NAMES[:3]
    assert result["diff"] == {"before": {"items": NAMES}, "after": {"items": NAMES[3:]}}
    assert not host.ran("btrfs", "subvolume", "delete")
    assert len(os.listdir(folder)) == 5


def test_locked_snapshots_are_kept_with_the_lock_as_reason(run_module, host, folder):
    with open(os.path.join(folder, ".outstanding_transfers"), "w") as handle:
        json.dump({NAMES[0]: {"locks": ["/backup"]}, NAMES[1]: {"parent_locks": ["/backup"]}}, handle)
    result = run_module(btrfs_retention, {"path": folder, "count": 1}, host)[1]
    kept = {k["name"]: k["reasons"] for k in result["kept"]}
    assert kept[NAMES[0]] == ["transfer to /backup is unfinished (locked)"]
    assert kept[NAMES[1]] == ["parent of an unfinished transfer to /backup"]
    assert [d["name"] for d in result["deleted"]] == [NAMES[2]]


def test_no_policy_keeps_everything(run_module, host, folder):
    result = run_module(btrfs_retention, {"path": folder}, host)[1]
    assert not result["changed"] and result["policy"] == "keep all"
    assert all(k["reasons"] == ["retention keeps everything (no policy set)"] for k in result["kept"])


def test_sync_and_convert_rw_reach_btrfs(run_module, host, folder):
    run_module(btrfs_retention, {"path": folder, "count": 3, "sync": True, "convert_rw": True}, host)
    assert host.ran("btrfs", "property", "set", "-ts", os.path.join(folder, NAMES[0]), "ro", "false")
    assert host.ran("btrfs", "subvolume", "sync", folder)


def test_a_missing_folder_fails_with_the_engines_message(run_module, host):
    failed, result = run_module(btrfs_retention, {"path": host.path("nowhere"), "count": 1}, host)
    assert failed and "does not exist" in result["msg"]
