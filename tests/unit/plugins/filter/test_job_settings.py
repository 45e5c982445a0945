# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""job_settings filter: one line per bad job key or value, naming the host, the job, the key and the value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.btrfs.backup.plugins.filter.job_settings import job_settings, setting_of
from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.job_settings import JOB_SETTINGS

_SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "btrfs_backup", "meta", "argument_specs.yml")
with open(_SPEC) as handle:
    JOB_OPTIONS = yaml.safe_load(handle)["argument_specs"]["main"]["options"]["btrfs_backup_jobs"]["options"]

HOME = {"name": "home", "source": "/home"}

# jobs, variables -> the exact problem lines
PROBLEM_CASES = {
    "a good job": ([dict(HOME, limit_rate="20M", max_age="1d 12h", preserve_backups="24h 7d")], {}, []),
    "a typo in a key": (
        [dict(HOME, randomized_dealy="5m")], {},
        ["src1: backup job 'home': unknown key 'randomized_dealy' (did you mean 'randomized_delay'?)"]),
    "a key like no other": (
        [dict(HOME, colour="blue")], {},
        ["src1: backup job 'home': unknown key 'colour' (valid keys: %s)" % ", ".join(sorted(JOB_OPTIONS))]),
    "a size the engine refuses": (
        [dict(HOME, limit_rate="20 MB/s")], {},
        ["src1: backup job 'home': limit_rate '20 MB/s' is not a size (btrfs-backup: limit_rate must be a "
         "positive size such as 20M, 512K or 1.5G (K, M, G, T: powers of 1024), not '20 MB/s')"]),
    "a duration the engine refuses": (
        [dict(HOME, max_age="soon")], {},
        ["src1: backup job 'home': max_age 'soon' is not a duration (btrfs-backup: 'soon' is not a duration: "
         "write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w), or a number of seconds)"]),
    "a retention policy the engine refuses": (
        [dict(HOME, preserve_snapshots="24h 3x")], {},
        ["src1: backup job 'home': preserve_snapshots '24h 3x' is not a retention policy (btrfs-backup: "
         "retention term '3x' is not valid: use <number><unit> or *<unit> with unit h (hourly), d (daily), "
         "w (weekly), m (monthly), y (yearly), e.g. '24h 7d 4w')"]),
    "a compression the engine refuses": (
        [dict(HOME, compress="gzip")], {},
        ["src1: backup job 'home': compress 'gzip' is not a compression setting (btrfs-backup: compress must be "
         "auto, none, zstd or zstd:LEVEL (1-19), not 'gzip')"]),
    "a number that is not one": (
        [dict(HOME, num_snapshots="three")], {},
        ["src1: backup job 'home': key 'num_snapshots' must be of type int, not 'three'"]),
    "a passphrase of the wrong type is named, never shown": (
        [dict(HOME, archive_env=["AWS_SECRET_ACCESS_KEY=s3cr3t"])], {},
        ["src1: backup job 'home': key 'archive_env' must be of type dict, not a list (hidden)"]),
    "a job without a name": ([{"source": "/x"}], {}, ["src1: backup job #1 (no name): missing required arguments: name"]),
    "a job that is not a dictionary": (["home"], {}, ["src1: backup job #1 (no name): is 'home', not a dictionary of job keys"]),
    "a role-wide default the engine refuses": (
        [HOME], {"btrfs_backup_max_age": "36 hours"},
        ["src1: btrfs_backup_max_age '36 hours' is not a duration (btrfs-backup: '36 hours' is not a duration: "
         "write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w), or a number of seconds)"]),
    "a server setting the engine refuses": (
        [], {"btrfs_backup_server_quota": "lots", "btrfs_backup_server_min_age": "7 days"},
        ["src1: btrfs_backup_server_min_age '7 days' is not a minimum age (btrfs-backup: minimum age '7 days' is "
         "not a duration: write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w))",
         "src1: btrfs_backup_server_quota 'lots' is not a quota (btrfs-backup: quota must be a positive size such "
         "as 20M, 512K or 1.5G (K, M, G, T: powers of 1024), not 'lots')"]),
    "a clock skew the engine refuses": (
        [], {"btrfs_backup_server_clock_skew": "a few minutes"},
        ["src1: btrfs_backup_server_clock_skew 'a few minutes' is not a clock skew (btrfs-backup: 'a few minutes' "
         "is not a duration: write 90min, 36h, 7d 12h or 2w (units s, min, h, d, w), or a number of seconds)"]),
    "no clock skew allowed": ([], {"btrfs_backup_server_clock_skew": "0"}, []),
    "snapper's snapshots to the backup server": (
        [dict(HOME, source_snapshots="snapper:home")], {},
        ["src1: backup job 'home': source_snapshots snapper:home cannot go to the backup server (btrfs-backup "
         "serve does not take snapper's snapshots yet): set server: false and give the job destinations"]),
    "snapper's snapshots to destinations of the job's own": (
        [dict(HOME, source_snapshots="snapper:home", server=False, destinations=["/mnt/b"]),
         dict(HOME, name="x", source_snapshots="own")], {}, []),
    "empty values that mean none": (
        [dict(HOME, limit_rate="", buffer="")], {"btrfs_backup_server_quota": "", "btrfs_backup_server_min_age": "",
                                                 "btrfs_backup_preserve_backups": ""}, []),
}


@pytest.mark.parametrize("case", sorted(PROBLEM_CASES))
def test_problems_name_the_host_the_job_the_key_and_the_value(case):
    jobs, variables, expected = PROBLEM_CASES[case]
    assert job_settings(jobs, "src1", JOB_OPTIONS, variables=variables)["problems"] == expected


def test_systemd_values_are_listed_once_each_with_every_place_that_sets_them():
    jobs = [dict(HOME, schedule="daily", randomized_delay="soon"), {"name": "web", "schedule": "daily", "accuracy": "1s"}]
    found = job_settings(jobs, "src1", JOB_OPTIONS, variables={
        "btrfs_backup_schedule": "daily", "btrfs_backup_timeout": "12h",
        "btrfs_backup_server_prune_schedule": "*:*:0/20", "btrfs_backup_verify_enabled": True})
    assert found["systemd"] == [
        {"kind": "calendar", "value": "*:*:0/20", "uses": ["src1: btrfs_backup_server_prune_schedule"]},
        {"kind": "calendar", "value": "daily", "uses": [
            "src1: btrfs_backup_schedule", "src1: backup job 'home': schedule", "src1: backup job 'web': schedule"]},
        {"kind": "timespan", "value": "12h", "uses": ["src1: btrfs_backup_timeout"]},
        {"kind": "timespan", "value": "1s", "uses": ["src1: backup job 'web': accuracy"]},
        {"kind": "timespan", "value": "soon", "uses": ["src1: backup job 'home': randomized_delay"]},
    ]
    assert found["problems"] == []


@pytest.mark.parametrize("variable, setting", [
    ("btrfs_backup_schedule", "schedule"),
    ("btrfs_backup_verify_schedule", "verify_schedule"),
    ("btrfs_backup_server_prune_schedule", "prune_schedule"),
    ("btrfs_backup_server_min_age", "min_age"),
    ("btrfs_backup_max_age", "max_age"),
    ("btrfs_backup_server_quota", "quota"),
    ("btrfs_backup_server_clock_skew", "clock_skew"),
    ("btrfs_backup_verify_enabled", None),
])
def test_a_variable_holds_the_setting_its_name_ends_with(variable, setting):
    assert setting_of(variable) == setting


@pytest.mark.parametrize("setting", [s for s in JOB_SETTINGS if s.role and s.check], ids=lambda s: s.name)
def test_every_checked_job_key_of_the_table_is_checked(setting):
    # A command line is any text but one with an open quote; a URL is shown without its secret part.
    value, shown = {"commands": (["true", "no 'such value"], "no 'such value"),
                    "url": ("ftp://host/secret-token", "ftp://host/…")}.get(setting.type, ("no such value",) * 2)
    problems = job_settings([dict(HOME, **{setting.role: value})], "src1", JOB_OPTIONS)["problems"]
    assert len(problems) == 1 and problems[0].startswith("src1: backup job 'home': %s '%s' is not "
                                                         % (setting.role, shown))
    assert "secret-token" not in problems[0]
