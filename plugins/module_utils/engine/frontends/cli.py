# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The `btrfs-backup` command line: btrfs-backup 0.3's flags and @argfiles over the engine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from ..host import recording
from ..host.job_source import job_source
from .argfiles import expand_argfiles
from .job_options import build_parser, settings_from_options, whole_number
from ..model.errors import BackupError, ConfigError
from ..run.job import JobConfig, run_job
from ..model.log import LEVELS, LOG


def _untranslated(message: str) -> str:
    return message


# argparse looks each of its few words up through gettext; the first lookup imports locale and
# searches for catalogs that Python does not ship (a fiftieth of a run with nothing to send).
# Its words stay English, as the engine's own messages are.
argparse._ = _untranslated

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_TERMINATED = 0, 1, 2, 3, 143


class Terminated(BaseException):
    """Raised from the SIGTERM handler so that cleanup code runs (like KeyboardInterrupt)."""


def _backup_retention(group, count_help, buckets_help):
    """-n/--num-backups and --preserve-backups: retention of backups, for a run and for prune."""
    group.add_argument("-n", "--num-backups", type=whole_number, default=0, metavar="N", help=count_help)
    group.add_argument("--preserve-backups", default="", metavar="POLICY", help=buckets_help)


def config_from_args(options: argparse.Namespace):
    """The JobConfig of a backup run's parsed options."""
    settings = settings_from_options(options)
    if options.latest_only and not settings["num_snapshots"]:
        settings["num_snapshots"] = 1
    return JobConfig(source=options.source, progress=not (options.no_progress or options.quiet or options.json),
                     job_name=getattr(options, "job_name", None), **settings)


def _setup_logging(options):
    """Messages at the chosen level and over go to stderr; logging itself is loaded by the first
    of them (model/log.py), so a quiet run with nothing to say never loads it."""
    level = LEVELS["warning" if options.quiet and options.verbosity == "info" else options.verbosity]

    def to_stderr(logger):
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("btrfs-backup: %(levelname)s: %(message)s"))
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False

    LOG.defer(level, to_stderr)


def _summary(result):
    if result.check_mode:
        # Only what would be done, once each: the plan is rendered from the staged steps.
        return ["would " + line for line in result.plan]
    lines = []
    if result.snapshot:
        lines.append("snapshot: %s" % result.snapshot["path"])
    for dest in result.destinations:
        sent = ["%s (%s%s)" % (t["snapshot"], t["mode"],
                               ", %s bytes" % t["bytes"] if t.get("bytes") is not None else "")
                for t in dest.transfers if t["status"] in ("done", "planned")]
        lines.append("%s: %s%s" % (dest.id, dest.status, ", sent " + ", ".join(sent) if sent else
                                   ", up to date" if dest.status == "ok" else ""))
    for section in result.retention:
        for item in section.deleted:
            lines.append("deleted %s at %s: %s" % (item["name"], section.where, item["reason"]))
    return lines


def _exit_status(result):
    kinds = set(result.error_types)
    if "JobBusyError" in kinds:
        return EXIT_BUSY
    if "ConfigError" in kinds and not result.changed:
        return EXIT_USAGE
    return EXIT_FAILED if result.failed else EXIT_OK


def _print_json(result):
    import json  # only here: --json is not the common case, and every run pays for imports
    json.dump(result, sys.stdout, indent=2, sort_keys=True)


def _on_sigterm(signum, frame):
    raise Terminated()


def _subcommand_parser(name, description, **positionals):
    """The parser of `btrfs-backup NAME`, with its positional arguments (name=help) in order."""
    parser = argparse.ArgumentParser(prog="btrfs-backup " + name, description=description)
    for dest, help_text in positionals.items():
        parser.add_argument(dest, help=help_text)
    return parser


def build_restore_parser() -> argparse.ArgumentParser:
    parser = _subcommand_parser(
        "restore", "Bring a backup back: receive it from a backup folder (local or ssh://), or replay "
        "its chain of archives from a borg or restic repository, "
        "and place it at TARGET on a btrfs filesystem, read-only as received or "
        "writable (-W). An existing TARGET is never overwritten; with --force it is "
        "renamed aside to TARGET.before-restore-<timestamp>.",
        backups="Backup folder: /path or ssh://[user@]host[:port]/path; or borg:PATH, "
                "borg+ssh://[user@]host[:port]/PATH, restic:REPOSITORY.",
        target="Absolute path of the restored subvolume (must not exist).")
    _add_archive_options(parser)
    parser.add_argument("--snapshot", metavar="NAME", help="Which backup (default: the newest).")
    parser.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX",
                        help="Prefix of the snapshot names. Default is ''.")
    parser.add_argument("-W", "--writable", action="store_true",
                        help="Make the restored subvolume writable, ready to use.")
    parser.add_argument("--force", action="store_true", help="Rename an existing TARGET aside.")
    rebuild = parser.add_argument_group(
        "Rebuild a lost source (--as-source)",
        "TARGET is the job's source, lost with its filesystem: it is made anew, writable, from the "
        "backup, with the backup (and with --snapshots N, older ones) in the job's snapshot folder, "
        "so that the job's next run continues incrementally to every destination. TARGET must not "
        "exist (run again, nothing is done while it holds that backup's snapshot); its folder must be "
        "on btrfs.")
    rebuild.add_argument("--as-source", action="store_true", help="Rebuild the job's source at TARGET.")
    rebuild.add_argument("-f", "--snapshot-folder", default="snapshot", metavar="FOLDER",
                         help="The job's snapshot folder, absolute or relative to TARGET. Default 'snapshot'.")
    rebuild.add_argument("--snapshots", type=whole_number, default=1, metavar="N",
                         help="Bring back the N newest backups up to the chosen one (default 1).")
    rebuild.add_argument("--job-name", metavar="NAME",
                         help="The job's name in its state (default: the one its runs recorded).")
    _add_common(parser)
    return parser


def _add_archive_options(parser):
    group = parser.add_argument_group("Archive stores (borg, restic)")
    group.add_argument("--archive-key-file", default="", metavar="FILE",
                       help="The file that holds the repository's passphrase.")
    group.add_argument("--archive-env-file", default="", metavar="FILE",
                       help="KEY=VALUE lines for the environment of borg or restic (credentials, options).")
    group.add_argument("--archive-host", default=None, metavar="HOST",
                       help="Read the archives this host stored, where several hosts stored archives of the "
                            "job (default: this host's, or the only host's).")


def _restore(options) -> dict:
    """`restore`: a backup at TARGET, or with --as-source the job's source rebuilt at TARGET."""
    from ..run.restore import restore
    from ..model.archives import is_archive_location
    if is_archive_location(options.backups):
        if options.as_source or options.snapshot_folder != "snapshot" or options.snapshots != 1:
            raise ConfigError("from an archive store, restore brings one snapshot back at TARGET: "
                              "--as-source, -f and --snapshots do not apply")
        from ..run.archive_restore import restore_archive
        return restore_archive(options.backups, options.target, key_file=options.archive_key_file,
                               env_file=options.archive_env_file, job=options.job_name,
                               host=options.archive_host, name=options.snapshot,
                               prefix=options.snapshot_prefix, writable=options.writable, force=options.force,
                               check_mode=options.check, ssh_options=options.ssh_opt)
    if not options.as_source:
        given = [flag for flag, value in (("-f/--snapshot-folder", options.snapshot_folder != "snapshot"),
                                          ("--snapshots", options.snapshots != 1),
                                          ("--job-name", options.job_name)) if value]
        if given:
            raise ConfigError("%s: only with --as-source" % ", ".join(given))
        return restore(options.backups, options.target, name=options.snapshot,
                       prefix=options.snapshot_prefix, writable=options.writable,
                       force=options.force, check_mode=options.check,
                       ssh_options=options.ssh_opt, ssh_sudo=options.ssh_sudo)
    from ..run.rebuild import rebuild_source
    if options.writable or options.force:
        raise ConfigError("--as-source makes a writable source and never replaces one: "
                          "-W and --force do not apply")
    return rebuild_source(options.backups, options.target, snapshot_folder=options.snapshot_folder,
                          prefix=options.snapshot_prefix, name=options.snapshot, count=options.snapshots,
                          job_name=options.job_name, check_mode=options.check,
                          ssh_options=options.ssh_opt, ssh_sudo=options.ssh_sudo)


def _say_rebuilt(result, check):
    if not result["changed"]:
        LOG.info("%s already holds the snapshot of %s from %s: nothing to do", result["target"],
                 result["snapshot"], result["source"])
        return
    if check:
        for line in result["plan"]:
            LOG.info("would %s", line)
        return
    LOG.info("rebuilt %s from %s at %s, with %s in %s: the next run continues incrementally",
             result["target"], result["snapshot"], result["source"], ", ".join(result["snapshots"]),
             result["snapshot_folder"])
    for warning in result.get("warnings") or ():
        LOG.warning("%s", warning)


def build_verify_parser() -> argparse.ArgumentParser:
    parser = _subcommand_parser(
        "verify", "Check a backup against its source snapshot: the UUID chain (the backup's "
        "received_uuid is the snapshot's uuid, read-only, its incremental parent) "
        "and, unless --no-content, every entry's type, mode, owner, size, link "
        "target and sha256.",
        source="The backed-up subvolume: /path or ssh:// URL.",
        backups="Backup folder: /path or ssh:// URL; or a borg or restic repository (borg:PATH, "
                "borg+ssh://..., restic:REPOSITORY): then the store's own check, the snapshot's chain "
                "of archives and its stream parsed by 'btrfs receive --dump' are verified.")
    _add_archive_options(parser)
    parser.add_argument("--read-data-subset", default="5%", metavar="SUBSET",
                        help="A restic repository: the share of its data that its check reads "
                             "(restic check --read-data-subset). Default 5%%.")
    parser.add_argument("--snapshot", metavar="NAME",
                        help="Which snapshot (default: the newest the destination holds).")
    parser.add_argument("-f", "--snapshot-folder", default="snapshot", metavar="FOLDER",
                        help="Snapshot folder, absolute or relative to the source. Default 'snapshot'.")
    parser.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX",
                        help="Prefix of the snapshot names. Default is ''.")
    parser.add_argument("--no-content", action="store_true", help="Only check the UUID chain.")
    _add_common(parser)
    recording.add_options(parser)
    return parser


def build_prune_parser() -> argparse.ArgumentParser:
    parser = _subcommand_parser(
        "prune", "Retention on a backup server (the other half of 'serve --append-only'): "
        "delete the backups in each FOLDER that the policy does not keep. Age, order "
        "and time buckets come from when this server received each backup, never "
        "from its name (a source chose the name). The newest backup received always "
        "stays (the next incremental parent), nothing received less than --min-age "
        "ago is deleted, and a backup whose name is later than when it was received "
        "(beyond --clock-skew) is reported and ranks below every other.")
    parser.add_argument("folders", nargs="+", metavar="FOLDER",
                        help="A folder of backups on this machine (not ssh://: received times are "
                             "known only on the server).")
    _backup_retention(parser, "Keep the newest N backups (0: all).",
                      "Also keep the first backup of each of the last periods, e.g. '24h 7d 4w 12m *y'.")
    parser.add_argument("--min-age", default="", metavar="AGE",
                        help="Delete nothing younger than AGE (e.g. '7d', '36h', '2w').")
    parser.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX",
                        help="Prefix of the backup names. Default is ''.")
    parser.add_argument("--clock-skew", default="15m", metavar="DURATION",
                        help="A backup whose name is later than when this server received it by "
                             "more than this (the hosts' clocks differ a little) is reported and "
                             "ranks below every other, e.g. '5m', '1h'. Default 15m.")
    _add_common(parser)
    return parser


def _prune(options):
    """`prune`: folder retention on each folder; a missing folder is skipped with a warning
    (a job whose first backup has not arrived yet)."""
    from ..model.name_trust import parse_clock_skew
    from ..run.server_prune import local_folder, prune_backups
    results = []
    clock_skew = parse_clock_skew(options.clock_skew, "--clock-skew")
    for folder in options.folders:
        local_folder(folder)
        if not os.path.isdir(folder):
            LOG.warning("%s does not exist yet: nothing to prune", folder)
            continue
        result = prune_backups(folder, prefix=options.snapshot_prefix, count=options.num_backups,
                               preserve=options.preserve_backups, min_age=options.min_age,
                               clock_skew=clock_skew, check_mode=options.check)
        result["folder"] = folder
        results.append(result)
        verb = "would delete" if options.check else "deleted"
        LOG.info("%s: %s %s; kept %d (%s)", folder, verb,
                 ", ".join(d["name"] for d in result["deleted"]) or "nothing",
                 len(result["kept"]), result["policy"])
    return {"folders": results, "changed": any(r["changed"] for r in results)}


def _add_common(parser):
    parser.add_argument("--ssh-opt", action="append", default=[], metavar="OPTION",
                        help="Pass an ssh_config option to ssh(1), e.g. --ssh-opt IdentityFile=/root/id.")
    parser.add_argument("--ssh-sudo", action="store_true", help="Run btrfs with 'sudo -n' on the remote host.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON on standard output.")
    parser.add_argument("--check", action="store_true", help="Dry run: change nothing, say what would be done.")
    parser.add_argument("-v", "--verbosity", default="info",
                        choices=["debug", "info", "warning", "error"], help="Set verbosity level. Default is 'info'.")
    parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and errors.")


def _run_subcommand(command, argv):
    """`restore`, `verify` and `prune`: one operation each, JSON or a short summary."""
    parser = {"restore": build_restore_parser, "verify": build_verify_parser,
              "prune": build_prune_parser}[command]()
    options = parser.parse_args(expand_argfiles(argv))
    _setup_logging(options)
    # As for a backup run: SIGTERM unwinds, so a restore stops its pipeline and removes its
    # staging folder instead of dying with them left behind.
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if command == "prune":
            result, ok = _prune(options), True
        elif command == "restore":
            result, ok = _restore(options), True
        else:
            job, _max_age = recording.check_options(options)
            _source, identity = job_source(options.source, ssh_options=options.ssh_opt,
                                           ssh_sudo=options.ssh_sudo, snapshot_folder=options.snapshot_folder,
                                           prefix=options.snapshot_prefix, job_name=job)
            try:
                result = _verify(options, identity)
            except ConfigError:
                raise
            except BackupError as err:
                _record_verify(options, identity, None, err)
                raise
            recorded = _record_verify(options, identity, result, None)
            ok = result["ok"] and recorded
    except ConfigError as err:
        LOG.error("%s", err)
        return EXIT_USAGE
    except BackupError as err:
        LOG.error("%s", err)
        return EXIT_FAILED
    except (KeyboardInterrupt, Terminated):
        LOG.error("%s terminated", command)
        return EXIT_TERMINATED
    if options.json:
        _print_json(result)
        sys.stdout.write("\n")
    elif command == "prune":
        pass  # each folder was reported as it was pruned
    elif command == "restore" and options.as_source:
        _say_rebuilt(result, options.check)
    elif command == "restore" and not result["changed"]:
        LOG.info("%s already holds %s from %s: nothing to do", result["target"],
                 result["snapshot"], result["source"])
    elif command == "restore":
        LOG.info("%s %s from %s at %s%s", "would restore" if options.check else "restored",
                 result["snapshot"], result["source"], result["target"],
                 " (previous %s renamed to %s)" % (result["target"], result["moved_aside"])
                 if result["moved_aside"] else "")
        for path in result.get("stale_files_removed") or ():
            LOG.info("removed %s: a run's leftover from the source, not data", path)
    else:
        LOG.info("%s: backup of %s at %s %s", "OK" if ok else "PROBLEM", result["snapshot"],
                 result["destination"], "verified" if ok else "has problems:")
        for problem in result["problems"]:
            LOG.error("  %s", problem)
    return EXIT_OK if ok else EXIT_FAILED


def _verify(options, identity) -> dict:
    """`verify` of a backup folder against its source, or of an archive store's newest archive."""
    from ..model.archives import is_archive_location
    if is_archive_location(options.backups):
        from ..run.archive_restore import verify_archive
        return verify_archive(options.backups, key_file=options.archive_key_file, env_file=options.archive_env_file,
                              job=identity.name, host=options.archive_host, name=options.snapshot, prefix=options.snapshot_prefix,
                              read_data_subset=options.read_data_subset, ssh_options=options.ssh_opt)
    from ..run.verify import verify
    return verify(options.source, options.backups, options.snapshot_folder, options.snapshot_prefix,
                  options.snapshot, content=not options.no_content, ssh_options=options.ssh_opt,
                  ssh_sudo=options.ssh_sudo)


def _record_verify(options, identity, report, err):
    """Record a verify in the job's state (not in check mode); False when that failed."""
    from ..host.endpoints.location import parse_location
    from ..model.archives import is_archive_location
    if options.check:
        return True
    if report is None:
        dest = parse_location(options.backups, options.ssh_opt, options.ssh_sudo,
                              allow_shell=is_archive_location(options.backups))
        report = {"destination": dest.id, "snapshot": None, "ok": False, "problems": [str(err)]}
    problem = recording.record_verify(report, identity=identity, when=time.time(),
                                      metrics_dir=options.metrics_dir)
    if problem:
        LOG.error("%s", problem)
    return problem is None


SUBCOMMANDS = ("restore", "verify", "prune")


#: The serve options: (flag, add_argument keywords), in the order --help lists them.
SERVE_OPTIONS = (
    ("--root", dict(required=True, help="The only folder this key may use.")),
    ("--btrfs", dict(default="btrfs", metavar="PATH", help="The btrfs program (run with sudo -n unless already root).")),
    ("--append-only", dict(action="store_true", help="Never delete a complete backup nor make one writable: only partial receives may be deleted; "
                                                     "'btrfs-backup prune' on the server applies retention.")),
    ("--filesystem", dict(metavar="UUID", help="Receive only while DIR is on the btrfs filesystem with this UUID (the one it was set up on), never "
                                               "on the system disk when the backup disk did not mount.")),
    ("--clock-skew", dict(default="15m", metavar="DURATION", help="Refuse (and delete at once) a received backup whose name lies further than this "
                                                                  "ahead of this server's clock, e.g. '5m', '1h'. Default 15m. Names carry the "
                                                                  "sending host's local time: hosts in another time zone need the difference added.")),
    ("--quota", dict(metavar="SIZE", help="Refuse receives once DIR's backups reference SIZE (e.g. '50G'), and stop a receive that would pass it. "
                                          "DIR must be a subvolume in a level-1 qgroup 1/<its id> on a filesystem with quotas enabled.")),
    ("--restore", dict(action="store_true", help="An administrator's restore key: accept only what 'btrfs-backup restore ssh://...' and "
                                                 "btrfs_restore send (the listing and btrfs send of a complete backup in DIR), nothing that writes.")),
    ("--host", dict(action="append", dest="hosts", metavar="NAME", help="With --restore: only the folder DIR/NAME (repeat for several hosts); "
                                                                        "default: every host's folder in DIR.")),
    ("--metrics-file", dict(metavar="PATH", help="Count refusals per host (DIR's name) and kind in this node_exporter textfile "
                                                 "(btrfs_backup_serve_refusals_total); its folder must be writable.")),
    ("--receive-slots", dict(metavar="N", help="At most N receives at once on this server, whichever hosts send them (give every "
                                               "host's key the same N and --slot-folder); a receive beyond them waits for a slot and "
                                               "says so to its source. Default: no limit.")),
    ("--slot-folder", dict(metavar="DIR", help="The folder of the receive slots' lock files (with --receive-slots); writable by "
                                               "the keys' user.")),
    ("--slot-wait", dict(default="1h", metavar="DURATION", help="How long a receive waits for a receive slot before it fails "
                                                                "with nothing received, e.g. '30min'. Default 1h.")),
)


def build_serve_parser() -> argparse.ArgumentParser:
    parser = _subcommand_parser(
        "serve", "The forced command of a source host's ssh key on a backup server "
        "(authorized_keys: restrict,command=\"btrfs-backup serve --root DIR\"). "
        "Runs the command in SSH_ORIGINAL_COMMAND only if it is one that a push "
        "backup sends, with every path inside DIR; refuses anything else. With --restore, "
        "the forced command of an administrator's restore key: it only reads backups.")
    for flag, keywords in SERVE_OPTIONS:
        parser.add_argument(flag, **keywords)
    return parser


def _build_status_parser() -> argparse.ArgumentParser:
    from .status import build_status_parser  # imported by the runs of `status` only
    return build_status_parser()


#: The parser of every command besides a backup run, by name: main() runs these commands and no
#: other; --help and the man page list them from job_options.COMMANDS (a test holds the two equal).
COMMAND_PARSERS = {"restore": build_restore_parser, "verify": build_verify_parser, "status": _build_status_parser,
                   "serve": build_serve_parser, "prune": build_prune_parser}


def build_backup_parser() -> argparse.ArgumentParser:
    """The parser of a backup run: every job setting, and where the run's record goes."""
    parser = build_parser()
    recording.add_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from . import serve
        options = build_serve_parser().parse_args(argv[1:])
        return serve.main(options.root, options.btrfs, append_only=options.append_only,
                          quota_size=options.quota, filesystem=options.filesystem,
                          clock_skew=options.clock_skew, metrics_file=options.metrics_file,
                          restore=options.restore, hosts=options.hosts, receive_slots=options.receive_slots,
                          slot_folder=options.slot_folder, slot_wait=options.slot_wait)
    if argv and argv[0] == "status":
        from .status import main as status_main
        return status_main(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        try:
            return _run_subcommand(argv[0], argv[1:])
        except ConfigError as err:
            sys.stderr.write("btrfs-backup %s: error: %s\n" % (argv[0], err))
            return EXIT_USAGE
    parser = build_backup_parser()
    try:
        argv = expand_argfiles(argv)
    except ConfigError as err:
        parser.error(str(err))
    options = parser.parse_args(argv)
    _setup_logging(options)
    if options.skip_fs_checks:
        LOG.info("--skip-fs-checks has no effect: the checks cost nothing extra")
    try:
        job, max_age = recording.check_options(options)
    except BackupError as err:
        parser.error(str(err))
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.time()
    try:
        result = run_job(config_from_args(options))
    except (KeyboardInterrupt, Terminated):
        LOG.error("terminated: unfinished transfers stay locked in .outstanding_transfers; "
                  "the next run removes their partial receives and sends them again")
        return EXIT_TERMINATED
    if options.json:
        _print_json(result.as_dict())
        sys.stdout.write("\n")
    else:
        for line in _summary(result):
            LOG.info("%s", line)
    status = _exit_status(result)
    if status not in (EXIT_BUSY, EXIT_USAGE) and result.identity:  # a busy job or bad input is not a run
        problem = recording.record_run(
            result.as_dict(), identity=result.identity.named(job), started=started,
            duration=time.time() - started, max_age=max_age, metrics_dir=options.metrics_dir)
        if problem:  # an error of its own unless the run failed already (often for the same cause)
            (LOG.warning if status else LOG.error)("%s", problem)
            status = status or EXIT_FAILED
    return status


def run() -> None:
    """Run main() on sys.argv and leave the process with its exit status."""
    import os
    status = main() or 0
    # Leave without the interpreter's teardown of every module (~4 ms, a tenth of a run with
    # nothing to send): main() has closed what it opened, so only buffered output is left.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 1  # the output could not be written, as sys.exit would have reported
    LOG.shutdown()
    os._exit(status)


if __name__ == "__main__":
    run()
