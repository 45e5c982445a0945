"""engine.host.job_source: a job's source as this host finds it, and its identity from it."""

import pytest

from engine.host.job_source import job_source
from engine.model.errors import ConfigError


def test_a_source_named_through_a_symbolic_link_is_the_real_folder_and_the_same_job(tmp_path):
    real = tmp_path / "pool" / "real"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)

    by_link, job = job_source(str(tmp_path / "link"), snapshot_folder="snapshot/")
    by_real, same = job_source(str(real))

    assert by_link.path == by_real.path == str(real)
    assert job == same and job.snapshot_folder == str(real / "snapshot") and job.name == "real"


def test_a_pull_source_is_taken_as_written(tmp_path):
    source, job = job_source("ssh://root@db:22/var/lib/pg/", snapshot_folder="./snapshot", job_name="pg")
    assert source.id == job.source_id == "ssh://root@db:22/var/lib/pg"
    assert (job.snapshot_folder, job.name) == ("/var/lib/pg/snapshot", "pg")


@pytest.mark.parametrize("settings, problem", [
    (dict(snapshot_folder="../elsewhere"), "'..' is not allowed"),
    (dict(prefix="a/b"), "snapshot prefix"),
    (dict(job_name=".hidden"), "job name"),
])
def test_bad_settings_are_refused_before_anything_runs(settings, problem):
    with pytest.raises(ConfigError, match=problem):
        job_source("/home", **settings)
