"""engine.frontends.job_options: every setting of the table reaches JobConfig from the command line,
by each of its flags (btrfs-backup 0.3's short ones too), and changes nothing else."""

import pytest

from engine.frontends import cli, job_options
from engine.model.job_settings import JOB_SETTINGS
from support.rst_tables import first_column, literals
from support.setting_samples import cli_words, sample

SOURCE = "/home"


def _argv(setting, flag, value):
    words = cli_words(setting, flag, value)
    return [SOURCE] + words if setting.positional else words + [SOURCE]


@pytest.mark.parametrize("setting, flag", [(s, f) for s in JOB_SETTINGS for f in s.flags],
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_setting_reaches_the_job_config_from_each_flag(setting, flag):
    value = sample(setting)
    given = cli.config_from_args(job_options.build_parser().parse_args(_argv(setting, flag, value)))
    default = cli.config_from_args(job_options.build_parser().parse_args([SOURCE]))
    assert getattr(given, setting.name) == value
    assert given._replace(**{setting.name: getattr(default, setting.name)}) == default  # nothing else changed


def test_the_parser_has_no_job_option_outside_the_table():
    parser = job_options.build_parser()
    table_flags = {flag for s in JOB_SETTINGS for flag in s.flags}
    command_own = {"-h", "--help", "--version", "-v", "--verbosity", "-q", "--quiet", "-P", "--no-progress",
                   "--json", "--latest-only", "--skip-fs-checks", "source"}
    names = {name for action in parser._actions for name in (action.option_strings or [action.dest])}
    assert names == table_flags | command_own


def test_the_cli_guides_option_table_names_every_flag_and_no_other():
    listed = set(literals(first_column("cli.rst", "Options (btrfs-backup 0.3's, plus a few)")))
    parser = cli.build_backup_parser()  # the job settings and the run record's options
    flags = {flag for action in parser._actions for flag in action.option_strings}
    setting_flags = {flag for s in JOB_SETTINGS if not s.positional for flag in s.flags}
    assert setting_flags <= listed, sorted(setting_flags - listed)
    assert listed <= flags, sorted(listed - flags)
