"""engine.model.server_metrics and the server view's settings: a backup server's freshness as metrics, by received time."""

import shutil
import subprocess

import pytest

from engine.model import health
from engine.model.errors import ConfigError
from engine.model.server_metrics import render, samples
from engine.run.server_view import ServerJob, assess_server, with_expected_jobs
from engine.frontends.status import parse_job_max_ages

NOW = 1_800_000_000.0
RECEIVED = 1_799_990_000.5
FRESH = ServerJob(host="web1", job="home", backups=3, newest_backup="20270115-080000", received=RECEIVED)
LYING = ServerJob(host="web1", job="root", backups=4, newest_backup="20270115-070000", received=RECEIVED - 200_000,
                  lying_names=["20991231-000002"])
UNLISTED = ServerJob(host="web1", job="srv", error="Permission denied")
NOT_YET = ServerJob(host="web1", job="new")

SAMPLE_CASES = [
    # jobs, max ages, default max age -> samples
    ([FRESH], {"home": 129600}, None, [
        ("btrfs_backup_server_max_age_seconds", 129600),
        ("btrfs_backup_server_newest_backup_received_timestamp_seconds", RECEIVED),
        ("btrfs_backup_server_backups", 3),
        ("btrfs_backup_server_untrusted_names", 0)]),
    ([LYING], {}, 3600, [
        ("btrfs_backup_server_max_age_seconds", 3600),
        ("btrfs_backup_server_newest_backup_received_timestamp_seconds", RECEIVED - 200_000),
        ("btrfs_backup_server_backups", 4),
        ("btrfs_backup_server_untrusted_names", 1)]),
    # No max age known: no max age sample (the alert then applies 36h).
    ([FRESH], {}, None, [
        ("btrfs_backup_server_newest_backup_received_timestamp_seconds", RECEIVED),
        ("btrfs_backup_server_backups", 3),
        ("btrfs_backup_server_untrusted_names", 0)]),
    # A folder that cannot be listed tells nothing but its max age.
    ([UNLISTED], {"srv": 60}, None, [("btrfs_backup_server_max_age_seconds", 60)]),
    # A configured job whose first backup has not arrived: no received time, 0 backups.
    ([NOT_YET], {"new": 60}, None, [
        ("btrfs_backup_server_max_age_seconds", 60),
        ("btrfs_backup_server_backups", 0),
        ("btrfs_backup_server_untrusted_names", 0)]),
]


@pytest.mark.parametrize("jobs, max_ages, default, expected", SAMPLE_CASES)
def test_samples_are_labelled_by_host_and_job(jobs, max_ages, default, expected):
    found = samples(jobs, max_ages, default)
    assert [(name, value) for name, _labels, value in found] == expected
    assert all(labels == {"source_host": jobs[0].host, "backup_job": jobs[0].job} for _n, labels, _v in found)


def test_the_textfile_passes_promtool():
    text = render([FRESH, LYING, UNLISTED, NOT_YET], {"home": 129600, "root": 86400, "srv": 60, "new": 60})
    assert 'btrfs_backup_server_newest_backup_received_timestamp_seconds{backup_job="home",source_host="web1"} ' \
           '1799990000.5\n' in text
    assert 'btrfs_backup_server_untrusted_names{backup_job="root",source_host="web1"} 1\n' in text
    assert text.count("# TYPE btrfs_backup_server_max_age_seconds gauge") == 1
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) not installed")
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nothing_to_say_is_an_empty_file():
    assert render([], {}) == ""


def test_configured_jobs_without_a_folder_count_as_without_a_backup():
    jobs = with_expected_jobs([FRESH], "web1", {"home": 60, "new": 60})
    assert [(j.host, j.job, j.received) for j in jobs] == [("web1", "home", RECEIVED), ("web1", "new", None)]


def test_each_job_is_judged_by_its_own_max_age():
    verdict = assess_server("/srv/backups", [FRESH, LYING], NOW, 36 * 3600, {"root": 3600})
    levels = {d.destination: d.level for d in verdict.destinations}
    assert levels == {"web1/home": health.OK, "web1/root": health.CRITICAL}
    assert any(r.startswith("web1/root: newest backup") and "(max 1h)" in r for r in verdict.reasons), verdict.reasons


@pytest.mark.parametrize("items, expected", [
    ([], {}),
    (["home=36h", "root=1d 12h"], {"home": 129600, "root": 129600}),
])
def test_job_max_ages(items, expected):
    assert parse_job_max_ages(items) == expected


@pytest.mark.parametrize("item, says", [
    ("home", "must be JOB=DURATION"),
    ("=36h", "must be JOB=DURATION"),
    ("home=soon", "'soon' is not a duration"),
])
def test_a_bad_job_max_age_is_named(item, says):
    with pytest.raises(ConfigError, match=says):
        parse_job_max_ages([item])
