# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The backup command's argparse parser, made from the table of job settings, and its options as settings."""

from __future__ import annotations

import argparse

from ..model import job_settings, units
from ..model.errors import ConfigError
from ..model.job_settings import JOB_SETTINGS, Setting
from ..model.version import __version__

DESCRIPTION = """\
Incremental, atomic backups of a btrfs subvolume: take a read-only snapshot, send it with
btrfs send/receive to local folders, to ssh:// hosts or into a shell:// command, and keep
only what the retention settings say. A destination is tracked by subvolume UUIDs, so every
destination continues incrementally on its own; a failed transfer is recorded in
.outstanding_transfers and cleaned up and retried by the next run."""

#: The commands besides a backup run, as --help and the man page list them: (name, its arguments,
#: what it does). cli.COMMAND_PARSERS holds their parsers; a test holds the two equal.
COMMANDS = (
    ("restore", "BACKUPS TARGET", "bring a backup back as a subvolume (read-only or -W writable)"),
    ("verify", "SOURCE BACKUPS", "check a backup's UUID chain and content against its snapshot"),
    ("status", "[--config-dir DIR]", "each job's newest backups and their age, last run, locks, next run"),
    ("serve", "--root DIR", "the forced command of a source's ssh key on a backup server"),
    ("prune", "FOLDER ...", "a backup server's own retention (beside serve --append-only)"),
)


def _command_lines() -> str:
    """The list of commands of --help, one aligned line each."""
    calls = ["btrfs-backup %s %s" % command[:2] for command in COMMANDS]
    width = max(len(call) for call in calls) + 3
    return "\n".join("  " + call.ljust(width) + command[2] for call, command in zip(calls, COMMANDS))


EPILOG = """\
Commands (each has its own --help):
""" + _command_lines() + """
Without a command, btrfs-backup backs up SOURCE to each DEST, as below.

Argument files: any argument written @FILE is replaced by the arguments in FILE, one flag,
'--option value' pair or argument per line (values are not escaped). Lines starting with '#'
are comments; blank lines and indentation are ignored; files may include other files
(relative to the including file); include loops are reported.

Exit status: 0 success, 1 a destination or step failed (the others still ran),
2 bad input (nothing was changed), 3 another run of the same job is in progress,
143 terminated (locks record the unfinished transfer; the next run cleans up)."""


def whole_number(text: str) -> int:
    """argparse type of a count: a whole number >= 0 (the units grammar's count)."""
    try:
        return units.parse_count(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err))


def add_setting(group, setting: Setting):
    """One job setting as a flag (or the positional argument) of `group`."""
    if setting.type == job_settings.BOOL:
        group.add_argument(*setting.flags, action="store_true", help=setting.help)
        return
    spelling = {"help": setting.help}
    if setting.metavar:
        spelling["metavar"] = setting.metavar
    if setting.choices:
        spelling["choices"] = list(setting.choices)
    if setting.type == job_settings.COUNT:
        spelling["type"] = whole_number
    if setting.positional:
        spelling["nargs"] = "*" if setting.is_list else None
    elif setting.is_list:
        spelling["action"] = "append"
    group.add_argument(*setting.flags, default=list(setting.default) if setting.is_list else setting.default,
                       **spelling)


def option_dest(setting: Setting) -> str:
    """The attribute of the parsed options that holds `setting` (argparse's own naming)."""
    if setting.positional:
        return setting.flags[0]
    flag = next((f for f in setting.flags if f.startswith("--")), setting.flags[0])
    return flag.lstrip("-").replace("-", "_")


def _switch(group, *flags, **kwargs):
    """An on/off flag of the backup command that is not a job setting."""
    group.add_argument(*flags, action="store_true", **kwargs)


def _display_options(group):
    group.add_argument("-h", "--help", action="help", help="Show this help message and exit.")
    group.add_argument("--version", action="version", version="btrfs-backup (btrfs.backup) " + __version__)
    group.add_argument("-v", "--verbosity", default="info", choices=["debug", "info", "warning", "error"],
                       help="Set verbosity level. Default is 'info'.")
    _switch(group, "-q", "--quiet", help="Shortcut for '--no-progress --verbosity warning'.")


# The command's own options (how it shows a run; 0.3's flags that are no setting), before and
# after the job settings of their group.
_BEFORE = {job_settings.DISPLAY: _display_options}
_AFTER = {
    job_settings.DISPLAY: lambda group: (
        _switch(group, "-P", "--no-progress", help="Don't display progress (pv) during transfers."),
        _switch(group, "--json", help="Print the run's result as JSON on standard output.")),
    job_settings.RETENTION: lambda group: _switch(
        group, "--latest-only", help="Deprecated: shortcut for '--num-snapshots 1'."),
    job_settings.MISC: lambda group: _switch(
        group, "--skip-fs-checks", help="Accepted for compatibility; the checks are part of the one listing "
                                        "each run makes, so they are always done."),
    # The source is no setting: it is what a job is of.
    job_settings.WHERE: lambda group: group.add_argument(
        "source", help="Subvolume to back up: /path or ssh://[user@]host[:port]/path."),
}


def build_parser() -> argparse.ArgumentParser:
    """The backup command's parser: every job setting of the table, in its help group."""
    parser = argparse.ArgumentParser(
        prog="btrfs-backup", description=DESCRIPTION, epilog=EPILOG, add_help=False,
        usage="%(prog)s [options] SOURCE [DEST ...]\n       %(prog)s {" + ",".join(command[0] for command in COMMANDS)
              + "} [options] ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for title in job_settings.GROUPS:
        group = parser.add_argument_group(title)
        _BEFORE.get(title, lambda group: None)(group)
        settings = [s for s in JOB_SETTINGS if s.group == title]
        for setting in settings:
            if not setting.positional:
                add_setting(group, setting)
        _AFTER.get(title, lambda group: None)(group)
        for setting in settings:  # positional arguments last: after SOURCE
            if setting.positional:
                add_setting(group, setting)
    return parser


def settings_from_options(options) -> dict:
    """Every job setting's value from parsed options, by setting name."""
    return {setting.name: getattr(options, option_dest(setting)) for setting in JOB_SETTINGS}
