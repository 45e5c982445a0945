"""engine.model.job_settings: one table of job settings, whole and consistent, and JobConfig made from it."""

import pytest

from engine.model import job_settings
from engine.model.job_settings import JOB_SETTINGS, SETTINGS
from engine.model.setting_checks import ENGINE_SETTINGS, setting_problem
from engine.run.job import JobConfig
from support.setting_samples import sample

KINDS = {"bool", "count", "str", "path", "prefix", "policy", "size", "compression", "choice", "locations",
         "ssh_options", "origin", "commands", "duration", "url"}
# A value that no check takes (any text is a command line, but not one with an open quote).
NONSENSE = {"commands": "not a 'command"}


def test_names_flags_parameters_and_keys_are_unique():
    for spelling in ("name", "module", "role"):
        names = [getattr(s, spelling) for s in JOB_SETTINGS if getattr(s, spelling)]
        assert len(names) == len(set(names)), spelling
    flags = [flag for s in JOB_SETTINGS for flag in s.flags]
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize("setting", JOB_SETTINGS, ids=lambda s: s.name)
def test_each_setting_is_complete(setting):
    assert setting.type in KINDS
    assert setting.group in job_settings.GROUPS
    assert setting.help.endswith(".")
    assert setting.flags and all(f.startswith("--") or len(f) == 2 for f in setting.flags if f.startswith("-"))
    assert not setting.check or setting.check in ENGINE_SETTINGS  # a check model/setting_checks.py has
    assert (setting.type == "choice") == bool(setting.choices)
    assert not setting.choices or setting.default in setting.choices
    assert sample(setting) != setting.default  # every kind has a value for the front ends' tests


@pytest.mark.parametrize("setting", [s for s in JOB_SETTINGS if s.check], ids=lambda s: s.name)
def test_each_check_takes_the_default_and_refuses_nonsense(setting):
    assert setting_problem(setting.check, setting.default) is None
    assert setting_problem(setting.check, sample(setting)) is None
    nonsense = NONSENSE.get(setting.type, "not a value %%")
    assert setting.name in setting_problem(setting.check, nonsense, setting.name)
    assert setting.name in setting_problem(setting.check, ["true", nonsense], setting.name)


def test_job_config_has_a_field_for_each_setting_with_its_default():
    config = JobConfig(source="/home")
    assert set(config._fields) == {"source", "progress", "now", "job_name"} | set(SETTINGS)
    for setting in JOB_SETTINGS:
        default = list(setting.default) if setting.is_list else setting.default
        assert getattr(config, setting.name) == default, setting.name


def test_btrfs_backup_03_defaults():
    assert job_settings.defaults() == dict(
        destinations=(), snapshot_folder="snapshot", prefix="", num_snapshots=0, num_backups=0,
        preserve_snapshots="", preserve_backups="", no_snapshot=False, no_transfer=False,
        no_incremental=False, locked_dests=False, remove_locks=False, require_destination=False,
        allow_same_filesystem=False, ssh_options=(), ssh_sudo=False, convert_rw=False, sync=False,
        btrfs_debug=False, check_mode=False, compress="auto", limit_rate=None, buffer=None,
        send_protocol="auto", max_unsent_snapshots=100, source_snapshots="own", wait=0,
        before_snapshot=(), before_snapshot_failure="abort", after_snapshot=(), after_run=(), hook_timeout="5m",
        ping_url="", ntfy_url="", ntfy_on_success=False,
        resumable="auto", resumable_chunk_size="16M",
        archive_key_file="", archive_env_file="", archive_full_every=7)


def test_a_setting_that_may_hold_a_secret_is_no_log_in_the_modules():
    assert {s.name for s in JOB_SETTINGS if s.module_spec().get("no_log")} == {"ping_url", "ntfy_url"}
