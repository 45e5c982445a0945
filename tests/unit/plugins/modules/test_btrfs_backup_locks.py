# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""btrfs_backup_locks: query, add, remove; destination ids; check and diff mode, over a fake btrfs host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.btrfs.backup.plugins.modules import btrfs_backup_locks

SNAPSHOT = "20260101-000000"


@pytest.fixture
def folder(host):
    path = host.path("data", "snapshot")
    os.makedirs(path)
    host.snapshot(host.path("data"), os.path.join(path, SNAPSHOT))
    os.makedirs(host.path("backup"))
    return path


def lock_file(folder):
    path = os.path.join(folder, ".outstanding_transfers")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def test_query_without_a_lock_file_is_empty_and_unchanged(run_module, host, folder):
    failed, result = run_module(btrfs_backup_locks, {"source": host.path("data")}, host)
    assert not failed and not result["changed"]
    assert result["locks"] == {} and result["entries"] == [] and result["locked_destinations"] == []


def test_present_adds_once_and_returns_the_locks_as_data(run_module, host, folder):
    params = {"source": host.path("data"), "state": "present", "snapshots": [SNAPSHOT],
              "destinations": [host.path("backup")]}
    failed, first = run_module(btrfs_backup_locks, params, host, diff=True)
    assert not failed and first["changed"]
    assert lock_file(folder) == {SNAPSHOT: {"locks": [host.path("backup")]}}
    assert first["entries"] == [{"snapshot": SNAPSHOT, "destination": host.path("backup"), "kind": "locks"}]
    assert first["locked_destinations"] == [host.path("backup")]
    assert first["diff"] == {"before": {}, "after": first["locks"]}
    second = run_module(btrfs_backup_locks, params, host)[1]
    assert not second["changed"] and second["plan"] == []


def test_absent_by_destination_removes_both_kinds_once(run_module, host, folder):
    with open(os.path.join(folder, ".outstanding_transfers"), "w") as handle:
        json.dump({SNAPSHOT: {"locks": ["/a", "/b"], "parent_locks": ["/a"]}}, handle)
    params = {"source": host.path("data"), "state": "absent", "destinations": ["/a"]}
    failed, first = run_module(btrfs_backup_locks, params, host)
    assert not failed and first["changed"]
    assert lock_file(folder) == {SNAPSHOT: {"locks": ["/b"]}}
    assert first["before"][SNAPSHOT] == {"locks": ["/a", "/b"], "parent_locks": ["/a"]}
    assert not run_module(btrfs_backup_locks, params, host)[1]["changed"]


def test_check_mode_reports_the_change_and_writes_nothing(run_module, host, folder):
    params = {"source": host.path("data"), "state": "present", "snapshots": [SNAPSHOT],
              "destinations": ["/a"], "kind": "parent_locks"}
    failed, result = run_module(btrfs_backup_locks, params, host, check_mode=True)
    assert not failed and result["changed"]
    assert result["locks"] == {SNAPSHOT: {"locks": [], "parent_locks": ["/a"]}}
    assert result["plan"] == ["write %s" % os.path.join(folder, ".outstanding_transfers")]
    assert lock_file(folder) is None


def test_ssh_destinations_are_recorded_with_user_and_port(run_module, host, folder):
    params = {"source": host.path("data"), "state": "present", "snapshots": [SNAPSHOT],
              "destinations": ["ssh://nas/srv/backups"], "ssh_user": "backup", "ssh_port": 2222}
    run_module(btrfs_backup_locks, params, host)
    assert lock_file(folder) == {SNAPSHOT: {"locks": ["ssh://backup@nas:2222/srv/backups"]}}


@pytest.mark.parametrize("params, words", [
    ({"state": "present", "snapshots": [SNAPSHOT]}, ["destinations"]),
    ({"state": "present", "destinations": ["/a"]}, ["snapshots"]),
    ({"state": "absent"}, ["snapshots", "destinations"]),
    ({"kind": "keys"}, ["kind"]),
    ({"state": "absent", "snapshots": ["../x"]}, ["parameter snapshots"]),
    ({"state": "absent", "destinations": ["ssh://nas:x/y"]}, ["parameter destinations"]),
])
def test_incomplete_or_bad_parameters_fail_naming_them(run_module, host, folder, params, words):
    failed, result = run_module(btrfs_backup_locks, dict({"source": host.path("data")}, **params), host)
    assert failed and all(word in result["msg"] for word in words)
    assert host.commands == [] and lock_file(folder) is None


def test_present_for_a_missing_snapshot_fails(run_module, host, folder):
    params = {"source": host.path("data"), "state": "present", "snapshots": ["20990101-000000"],
              "destinations": ["/a"]}
    failed, result = run_module(btrfs_backup_locks, params, host)
    assert failed and "no such snapshot" in result["msg"] and "20990101-000000" in result["msg"]
    assert lock_file(folder) is None


def test_a_corrupt_lock_file_is_an_error_never_a_reset(run_module, host, folder):
    with open(os.path.join(folder, ".outstanding_transfers"), "w") as handle:
        handle.write("{not json")
    failed, result = run_module(btrfs_backup_locks, {"source": host.path("data")}, host)
    assert failed and "corrupt" in result["msg"]
    with open(os.path.join(folder, ".outstanding_transfers")) as handle:
        assert handle.read() == "{not json"
