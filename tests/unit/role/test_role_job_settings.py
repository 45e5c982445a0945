"""The role's job keys follow the table of job settings: argument_specs types them as the table does, and
every setting, with a value other than its default, reaches the JobConfig of a run of the rendered job.conf.j2
(by its job key, or else by extra_args)."""

from pathlib import Path

import pytest
import yaml

from engine.model.job_settings import JOB_SETTINGS
from support.role_job_config import job_config_of
from support.rst_tables import first_column, literals
from support.setting_samples import config_lines, sample

ROOT = Path(__file__).resolve().parents[3]
SPEC = yaml.safe_load((ROOT / "roles/btrfs_backup/meta/argument_specs.yml").read_text())
JOB_KEYS = SPEC["argument_specs"]["main"]["options"]["btrfs_backup_jobs"]["options"]
JOB = {"name": "home", "source": "/home", "server": False}

# Settings that are no job key: a job gives them in extra_args if it must (the role runs every job
# for real, shows no progress and has its own defaults for the rest).
WITHOUT_KEY = {"btrfs_debug", "no_snapshot", "no_transfer", "no_incremental", "check_mode", "send_protocol",
               "ssh_sudo", "sync", "convert_rw", "remove_locks", "locked_dests"}


def test_the_settings_without_a_job_key():
    assert {s.name for s in JOB_SETTINGS if not s.role} == WITHOUT_KEY


@pytest.mark.parametrize("setting", [s for s in JOB_SETTINGS if s.role], ids=lambda s: s.name)
def test_argument_specs_types_each_job_key_as_the_table(setting):
    spec = JOB_KEYS[setting.role]
    assert spec["type"] == setting.ansible_type
    assert spec.get("elements") == ("str" if setting.is_list else None)
    assert spec.get("choices") == (list(setting.choices) if setting.choices else None)
    if "default" in spec:  # else the role-wide btrfs_backup_* default applies
        assert spec["default"] == setting.module_default


@pytest.mark.parametrize("setting", JOB_SETTINGS, ids=lambda s: s.name)
def test_every_setting_reaches_the_job_config_from_the_rendered_config(setting, tmp_path):
    value = sample(setting)
    job = dict(JOB, **{setting.role: value}) if setting.role else \
        dict(JOB, extra_args=config_lines(setting, value))
    given, default = job_config_of(job, tmp_path), job_config_of(dict(JOB), tmp_path)
    assert getattr(given, setting.name) == value
    assert given._replace(**{setting.name: getattr(default, setting.name)}) == default


def test_the_role_guides_job_table_names_every_job_key_and_no_other():
    listed = set(literals(first_column("role.rst", "Jobs")))
    assert {s.role for s in JOB_SETTINGS if s.role} <= listed
    assert listed == set(JOB_KEYS) - {"name"}
