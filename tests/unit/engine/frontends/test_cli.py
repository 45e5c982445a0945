"""engine.frontends.cli: btrfs-backup 0.3.1's flags, the JobConfig they make, and usage errors."""

import logging
import signal

import pytest

from engine.frontends import cli, job_options


def parse(*argv):
    return cli.config_from_args(cli.build_parser().parse_args(list(argv)))


# Each btrfs-backup 0.3.1 flag, short and long, and the JobConfig attribute it sets.
FLAGS = [
    (["-N", "5"], "num_snapshots", 5),
    (["--num-snapshots", "5"], "num_snapshots", 5),
    (["-n", "3"], "num_backups", 3),
    (["--num-backups", "3"], "num_backups", 3),
    (["-p", "home-"], "prefix", "home-"),
    (["--snapshot-prefix", "home-"], "prefix", "home-"),
    (["-f", "/snaps/home"], "snapshot_folder", "/snaps/home"),
    (["--snapshot-folder", ".snapshots"], "snapshot_folder", ".snapshots"),
    (["-S"], "no_snapshot", True),
    (["--no-snapshot"], "no_snapshot", True),
    (["-T"], "no_transfer", True),
    (["--no-transfer"], "no_transfer", True),
    (["-I"], "no_incremental", True),
    (["--no-incremental"], "no_incremental", True),
    (["--locked-dests"], "locked_dests", True),
    (["--remove-locks"], "remove_locks", True),
    (["--ssh-opt", "Cipher=aes256-ctr", "--ssh-opt", "IdentityFile=/root/my key"],
     "ssh_options", ["Cipher=aes256-ctr", "IdentityFile=/root/my key"]),
    (["--ssh-sudo"], "ssh_sudo", True),
    (["-w"], "convert_rw", True),
    (["--convert-rw"], "convert_rw", True),
    (["-s"], "sync", True),
    (["--sync"], "sync", True),
    (["-d"], "btrfs_debug", True),
    (["--btrfs-debug"], "btrfs_debug", True),
    (["-P"], "progress", False),
    (["--no-progress"], "progress", False),
    (["-q"], "progress", False),
    (["--latest-only"], "num_snapshots", 1),
    (["--latest-only", "-N", "4"], "num_snapshots", 4),  # an explicit count wins
]


@pytest.mark.parametrize("flags, attribute, value",
                         [pytest.param(f, a, v, id=" ".join(f)) for f, a, v in FLAGS])
def test_btrfs_backup_031_flag(flags, attribute, value):
    config = parse(*(flags + ["/home", "/backup"]))
    assert getattr(config, attribute) == value
    assert config.source == "/home"
    assert config.destinations == ["/backup"]


def test_defaults_are_btrfs_backup_03s():
    config = parse("/home")
    assert (config.snapshot_folder, config.prefix, config.num_snapshots, config.num_backups) == \
        ("snapshot", "", 0, 0)
    assert config.destinations == []
    assert config.progress is True
    assert not (config.no_snapshot or config.no_transfer or config.no_incremental
                or config.locked_dests or config.remove_locks or config.ssh_sudo)


@pytest.mark.parametrize("flags, attribute, value", [
    pytest.param(["-v", "debug"], "verbosity", "debug", id="-v debug"),
    pytest.param(["--verbosity", "warning"], "verbosity", "warning", id="--verbosity warning"),
    pytest.param(["-q"], "quiet", True, id="-q"),
    pytest.param(["--skip-fs-checks"], "skip_fs_checks", True, id="--skip-fs-checks"),
])
def test_display_and_compatibility_flags_parse(flags, attribute, value):
    options = cli.build_parser().parse_args(flags + ["/home"])
    assert getattr(options, attribute) == value


def test_several_destinations_of_every_kind():
    config = parse("ssh://root@host:2222/home", "/backup", "ssh://nas/b", "shell://cat > /x y")
    assert config.source == "ssh://root@host:2222/home"
    assert config.destinations == ["/backup", "ssh://nas/b", "shell://cat > /x y"]


@pytest.mark.parametrize("argv, words", [
    pytest.param(["-N", "-1", "/home"], ["-N/--num-snapshots", "'-1' must not be negative"],
                 id="-N negative"),
    pytest.param(["-n", "-3", "/home"], ["-n/--num-backups", "'-3' must not be negative"],
                 id="-n negative"),
    pytest.param(["-N", "abc", "/home"], ["-N/--num-snapshots", "'abc' is not a whole number"],
                 id="-N not a number"),
    pytest.param(["--num-backups", "2.5", "/home"], ["-n/--num-backups", "'2.5' is not a whole number"],
                 id="-n fraction"),
    pytest.param(["-v", "loud", "/home"], ["-v/--verbosity", "invalid choice: 'loud'"],
                 id="-v unknown level"),
    pytest.param([], ["the following arguments are required: source"], id="no source"),
    pytest.param(["--no-such-flag", "/home"], ["unrecognized arguments: --no-such-flag"],
                 id="unknown flag"),
])
def test_usage_errors_exit_2_naming_the_option(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    for word in words:
        assert word in stderr


@pytest.fixture
def restore_process_state():
    """main() installs a SIGTERM handler and log handlers; put both back after the test."""
    logger = logging.getLogger("btrfs_backup")
    saved = (signal.getsignal(signal.SIGTERM), list(logger.handlers), logger.level, logger.propagate)
    yield
    signal.signal(signal.SIGTERM, saved[0])
    logger.handlers[:] = saved[1]
    logger.setLevel(saved[2])
    logger.propagate = saved[3]


def test_main_with_a_missing_source_says_so_and_creates_nothing(tmp_path, capsys,
                                                               restore_process_state):
    missing = tmp_path / "missing"
    status = cli.main([str(missing), str(tmp_path / "backup")])
    assert status in (cli.EXIT_FAILED, cli.EXIT_USAGE)
    stderr = capsys.readouterr().err
    assert "source %s does not exist" % missing in stderr
    assert list(tmp_path.iterdir()) == []  # no snapshot folder, no backup folder, no lock file


def test_main_with_a_missing_argfile_is_a_usage_error(tmp_path, capsys, restore_process_state):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["@" + str(tmp_path / "home.conf")])
    assert exit_info.value.code == 2
    assert "cannot read argument file %s" % (tmp_path / "home.conf") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_argfile_flags_reach_the_config(tmp_path):
    conf = tmp_path / "home.conf"
    conf.write_text("-p home\n--num-snapshots 1\n--ssh-opt IdentityFile=/root/my key\n/home\n"
                    "ssh://nas/backup/home\n")
    options = cli.build_parser().parse_args(cli.expand_argfiles(["@" + str(conf), "-q"]))
    config = cli.config_from_args(options)
    assert (config.prefix, config.num_snapshots, config.ssh_options, config.source,
            config.destinations, config.progress) == \
        ("home", 1, ["IdentityFile=/root/my key"], "/home", ["ssh://nas/backup/home"], False)


def test_help_lists_the_commands_that_main_runs():
    listed = {name for name, _, _ in job_options.COMMANDS}
    assert listed == set(cli.COMMAND_PARSERS), \
        "list each command of cli.COMMAND_PARSERS in job_options.COMMANDS (--help and the man page list those)"


@pytest.mark.parametrize("command", list(cli.COMMAND_PARSERS))
def test_main_runs_each_command_and_help_names_it(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: btrfs-backup %s " % command)
    help_text = cli.build_backup_parser().format_help()
    assert "\n  btrfs-backup %s " % command in help_text
    assert command in help_text.split("{", 1)[1].split("}", 1)[0].split(",")  # the usage line
