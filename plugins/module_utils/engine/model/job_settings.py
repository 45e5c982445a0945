# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the one table of job settings (defaults are btrfs-backup 0.3's); the CLI, the modules, the job
config and the role's job keys are made from it or checked against it."""

from __future__ import annotations

import collections

from . import archives, hooks, unsent

# The value kinds of a setting: how each front end types it.
BOOL, COUNT, TEXT, PATH, PREFIX, POLICY, SIZE, COMPRESSION, CHOICE, LOCATIONS, SSH_OPTIONS, ORIGIN = (
    "bool", "count", "str", "path", "prefix", "policy", "size", "compression", "choice", "locations",
    "ssh_options", "origin")
COMMANDS, DURATION, URL = "commands", "duration", "url"  # hook command lines; a timeout; a secret URL
_LISTS = (LOCATIONS, SSH_OPTIONS, COMMANDS)

# The CLI's help groups of the backup command, in the order the help shows them.
DISPLAY = "Display settings"
RETENTION = "Retention settings"
SNAPSHOT = "Snapshot creation settings"
TRANSFER = "Transfer related options"
STREAM = "Stream settings"
SSH = "SSH related options"
MISC = "Miscellaneous options"
HOOKS = "Hooks and notifications"
WHERE = "Source and destination"
ARCHIVE = "Archive destinations (borg, restic)"
GROUPS = (DISPLAY, RETENTION, SNAPSHOT, TRANSFER, STREAM, ARCHIVE, SSH, MISC, HOOKS, WHERE)


# The fields of a setting (a namedtuple: the CLI imports this table on every run, dataclasses cost more).
_FIELDS = (
    "name",  # the JobConfig field
    "type",  # one of the kinds above
    "default",
    "help",  # the CLI's help text
    "group",  # the CLI's help group
    "flags",  # CLI flags, short first; a positional argument's name without dashes
    "metavar",
    "choices",
    "module",  # btrfs_send_backup's parameter, if it has one
    "module_aliases",
    "module_negated",  # the parameter says the opposite (snapshot=true is no_snapshot=false)
    "role",  # the role's job key, if it has one
    "check",  # the name of the engine's check of a value in model/setting_checks.py (setting_problem)
)


class Setting(collections.namedtuple("Setting", _FIELDS,
                                     defaults=(None, (), None, (), False, None, None))):
    """One setting of a backup job (a JobConfig field) and how each front end spells it."""

    __slots__ = ()

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def is_list(self) -> bool:
        return self.type in _LISTS

    @property
    def ansible_type(self) -> str:
        """The type of its module parameter and role job key."""
        return {BOOL: "bool", COUNT: "int"}.get(self.type, "list" if self.is_list else "str")

    @property
    def module_default(self):
        """The module parameter's default (the opposite of the setting's for a negated switch)."""
        if self.module_negated:
            return not self.default
        return list(self.default) if self.is_list else self.default

    def module_spec(self) -> dict:
        """The parameter's entry in an Ansible argument spec."""
        spec = {"type": self.ansible_type}
        if self.is_list:
            spec["elements"] = "str"
        if self.module_default is not None:
            spec["default"] = self.module_default
        if self.choices:
            spec["choices"] = list(self.choices)
        if self.module_aliases:
            spec["aliases"] = list(self.module_aliases)
        if self.type == URL:
            spec["no_log"] = True  # it may hold a secret (a Healthchecks UUID, an ntfy topic)
        return spec


def _switch(name, flags, group, help, **spelling):
    return Setting(name, BOOL, False, help, group, flags, **spelling)


JOB_SETTINGS = (
    _switch("btrfs_debug", ("-d", "--btrfs-debug"), DISPLAY, "Enable debugging on btrfs send / receive."),
    Setting("num_snapshots", COUNT, 0, "Only keep the latest N snapshots at the source (0: all).",
            RETENTION, ("-N", "--num-snapshots"), metavar="N", module="num_snapshots", role="num_snapshots"),
    Setting("preserve_snapshots", POLICY, "", "Also keep the first snapshot of each of the last periods, "
            "e.g. '24h 7d 4w 12m *y' (h/d/w/m/y; * = all periods).", RETENTION, ("--preserve-snapshots",),
            metavar="POLICY", module="preserve_snapshots", role="preserve_snapshots", check="preserve_snapshots"),
    Setting("num_backups", COUNT, 0, "Only keep the latest N backups at each destination (0: all).",
            RETENTION, ("-n", "--num-backups"), metavar="N", module="num_backups", role="num_backups"),
    Setting("preserve_backups", POLICY, "", "The same time-bucket policy for the backups at each destination.",
            RETENTION, ("--preserve-backups",), metavar="POLICY", module="preserve_backups",
            role="preserve_backups", check="preserve_backups"),
    _switch("no_snapshot", ("-S", "--no-snapshot"), SNAPSHOT,
            "Don't take a new snapshot, just transfer existing ones.", module="snapshot", module_negated=True),
    _switch("require_destination", ("--require-destination",), SNAPSHOT,
            "Take no snapshot unless a destination can take it now. By default the snapshot is "
            "taken while every destination is unreachable, and sent when one is back.",
            module="require_destination", role="require_destination"),
    Setting("max_unsent_snapshots", COUNT, unsent.DEFAULT_MAX_UNSENT_SNAPSHOTS,
            "Keep at most N snapshots for a destination that cannot be reached: then "
            "source retention keeps only the newest one it holds (it continues from there "
            "when back), or, if that is not known or no destination answers, no snapshot "
            "is taken and the run fails saying so. 0: no limit. Default 100.",
            SNAPSHOT, ("--max-unsent-snapshots",), metavar="N", module="max_unsent_snapshots",
            role="max_unsent_snapshots"),
    Setting("source_snapshots", ORIGIN, "own",
            "Where the job's snapshots come from: own (the default: each run takes one) or "
            "snapper:CONFIG (the read-only snapshots snapper takes of the source are sent; "
            "no snapshot is taken and snapper's own cleanup deletes them at the source).",
            SNAPSHOT, ("--source-snapshots",), metavar="FROM", module="source_snapshots",
            role="source_snapshots", check="source_snapshots"),
    Setting("snapshot_folder", PATH, "snapshot",
            "Snapshot folder, absolute or relative to the source. Default 'snapshot'.",
            SNAPSHOT, ("-f", "--snapshot-folder"), metavar="FOLDER", module="snapshot_folder",
            role="snapshot_folder"),
    Setting("prefix", PREFIX, "", "Prefix for snapshot names. Default is ''.",
            SNAPSHOT, ("-p", "--snapshot-prefix"), metavar="PREFIX", module="snapshot_prefix", role="prefix"),
    _switch("no_transfer", ("-T", "--no-transfer"), TRANSFER, "Don't transfer any snapshot.",
            module="transfer", module_negated=True),
    _switch("no_incremental", ("-I", "--no-incremental"), TRANSFER,
            "Always send full streams (e.g. when piping to files).", module="incremental", module_negated=True),
    _switch("check_mode", ("--check",), TRANSFER, "Dry run: change nothing, print what would be done."),
    Setting("resumable", CHOICE, "auto",
            "Stage a transfer to an ssh destination in verified chunks, so that a cut one resumes "
            "where it stopped: auto (the default: streams of about 1 GiB or more), always or never.",
            TRANSFER, ("--resumable",), choices=("auto", "always", "never"), module="resumable",
            role="resumable"),
    Setting("resumable_chunk_size", SIZE, "16M",
            "The size of each staged chunk of a resumable transfer (a cut costs at most one chunk). "
            "Default 16M.", TRANSFER, ("--resumable-chunk-size",), metavar="SIZE",
            module="resumable_chunk_size", role="resumable_chunk_size", check="resumable_chunk_size"),
    Setting("compress", COMPRESSION, "auto",
            "auto (the default: zstd level 3 where a stream crosses ssh, both ends "
            "have zstd and a sample of the data compresses), none, zstd or zstd:LEVEL (1-19).",
            STREAM, ("--compress",), metavar="MODE", module="compress", role="compress", check="compress"),
    Setting("limit_rate", SIZE, None,
            "Limit each destination's stream to RATE bytes per second, e.g. 20M "
            "(K, M, G: powers of 1024; compressed bytes where compressed). Needs pv.",
            STREAM, ("--limit-rate",), metavar="RATE", module="limit_rate", role="limit_rate", check="limit_rate"),
    Setting("buffer", SIZE, None,
            "Buffer SIZE bytes (e.g. 256M) before each receiver, to smooth a bursty "
            "send over a slow link. Needs mbuffer.",
            STREAM, ("--buffer",), metavar="SIZE", module="buffer", role="buffer", check="buffer"),
    Setting("send_protocol", CHOICE, "auto",
            "btrfs send protocol; 2 sends extents that btrfs compressed as they are. "
            "auto (the default): 2 where the source and every receiver support it.",
            STREAM, ("--send-protocol",), choices=("auto", "1", "2"), module="send_protocol"),
    Setting("archive_key_file", TEXT, "",
            "The file that holds the passphrase of the borg or restic repositories among the "
            "destinations (borg gets it through BORG_PASSCOMMAND, restic through "
            "RESTIC_PASSWORD_FILE); it never appears on a command line, in a log or a result.",
            ARCHIVE, ("--archive-key-file",), metavar="FILE", module="archive_key_file", role="archive_key_file"),
    Setting("archive_env_file", TEXT, "",
            "A file of KEY=VALUE lines put into the environment of borg and restic: S3 or REST "
            "credentials, BORG_* and RESTIC_* options. Its values are never logged.",
            ARCHIVE, ("--archive-env-file",), metavar="FILE", module="archive_env_file", role="archive_env_file"),
    Setting("archive_full_every", COUNT, archives.DEFAULT_FULL_EVERY,
            "In a borg or restic repository, store every Nth archive as a full stream and the "
            "others incremental from the one before (1: every archive full). A restore replays "
            "at most N archives; retention keeps the parents of every incremental it keeps. "
            "Default %d." % archives.DEFAULT_FULL_EVERY,
            ARCHIVE, ("--archive-full-every",), metavar="N", module="archive_full_every", role="archive_full_every",
            check="archive_full_every"),
    Setting("ssh_options", SSH_OPTIONS, (),
            "Pass an ssh_config option to ssh(1), e.g. --ssh-opt IdentityFile=/root/id.",
            SSH, ("--ssh-opt",), metavar="OPTION", module="ssh_options", role="ssh_options"),
    _switch("ssh_sudo", ("--ssh-sudo",), SSH, "Run btrfs with 'sudo -n' on the remote host.", module="ssh_sudo"),
    _switch("sync", ("-s", "--sync"), MISC, "Run 'btrfs subvolume sync' after deleting subvolumes.", module="sync"),
    _switch("convert_rw", ("-w", "--convert-rw"), MISC,
            "Make read-only snapshots writable before deleting them (for user_subvol_rm_allowed).",
            module="convert_rw"),
    Setting("wait", COUNT, 0,
            "When another run of this job is in progress, wait up to SECONDS for it to end "
            "instead of failing at once (0, the default: do not wait).",
            MISC, ("--wait",), metavar="SECONDS", module="wait", role="wait"),
    _switch("remove_locks", ("--remove-locks",), MISC,
            "Remove the locks of all given destinations. Only use this when no "
            "partial receive is left at those destinations.", module="remove_locks"),
    Setting("before_snapshot", COMMANDS, (),
            "Run COMMAND before the snapshot is taken, e.g. to quiesce an application "
            "(repeat for several, run in order). Split into words as a shell would, but run "
            "without one (write sh -c '...' for one). Its output goes to the log.",
            HOOKS, ("--before-snapshot",), metavar="COMMAND", module="before_snapshot", role="before_snapshot",
            check="before_snapshot"),
    Setting("before_snapshot_failure", CHOICE, hooks.ABORT,
            "What a before-snapshot command that fails (or runs past its timeout) does: abort (the "
            "default: no snapshot, the run fails naming the command, its exit status and the end of "
            "its stderr) or warn (the run goes on).",
            HOOKS, ("--before-snapshot-failure",), choices=hooks.FAILURE_CHOICES,
            module="before_snapshot_failure", role="before_snapshot_failure"),
    Setting("after_snapshot", COMMANDS, (),
            "Run COMMAND right after the snapshot was taken, or was not (a before-snapshot command "
            "failed), e.g. to undo what a before-snapshot command did (fsfreeze --unfreeze) before "
            "the transfers. Repeat for several.",
            HOOKS, ("--after-snapshot",), metavar="COMMAND", module="after_snapshot", role="after_snapshot",
            check="after_snapshot"),
    Setting("after_run", COMMANDS, (),
            "Run COMMAND after the run, also when it failed, with its outcome in the environment "
            "(BTRFS_BACKUP_STATUS success or failed, BTRFS_BACKUP_JOB, _SNAPSHOT, "
            "_FAILED_DESTINATIONS, ...). Repeat for several.",
            HOOKS, ("--after-run",), metavar="COMMAND", module="after_run", role="after_run", check="after_run"),
    Setting("hook_timeout", DURATION, hooks.DEFAULT_TIMEOUT,
            "Kill a hook command (with every process it started) that runs longer than this, "
            "e.g. 30s, 10min. Default 5m.",
            HOOKS, ("--hook-timeout",), metavar="DURATION", module="hook_timeout", role="hook_timeout",
            check="hook_timeout"),
    Setting("ping_url", URL, "",
            "Ping URL/start when the run starts, URL when it succeeded and URL/fail (the end of the log "
            "as the body) when it failed: Healthchecks, Uptime Kuma and the like. A ping that "
            "fails is a warning; the URL is never logged.",
            HOOKS, ("--ping-url",), metavar="URL", module="ping_url", role="ping_url", check="ping_url"),
    Setting("ntfy_url", URL, "",
            "Post a short message to this ntfy topic (https://ntfy.sh/TOPIC) when the run failed.",
            HOOKS, ("--ntfy-url",), metavar="URL", module="ntfy_url", role="ntfy_url", check="ntfy_url"),
    _switch("ntfy_on_success", ("--ntfy-on-success",), HOOKS, "Also post to --ntfy-url when the run succeeded.",
            module="ntfy_on_success", role="ntfy_on_success"),
    _switch("allow_same_filesystem", ("--allow-same-filesystem",), WHERE,
            "Accept a destination on the source's own btrfs filesystem. By default it is refused: "
            "such a backup is lost with the source's disk (often an unmounted backup disk).",
            module="allow_same_filesystem", role="allow_same_filesystem"),
    _switch("locked_dests", ("--locked-dests",), WHERE, "Add every destination for which locks exist.",
            module="locked_dests"),
    Setting("destinations", LOCATIONS, (),
            "Destinations: /path, ssh://[user@]host[:port]/path, "
            "'shell://cat > some-file', borg:PATH, borg+ssh://[user@]host[:port]/PATH or "
            "restic:REPOSITORY. Any number, or none.",
            WHERE, ("dest",), module="dest", role="destinations"),
)

SETTINGS = {setting.name: setting for setting in JOB_SETTINGS}


def defaults() -> dict:
    """Every setting's default, by name."""
    return {setting.name: setting.default for setting in JOB_SETTINGS}
