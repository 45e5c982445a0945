"""The `btrfs-backup` command line: btrfs-backup 0.3's flags and @argfiles over the engine."""

import argparse
import json
import logging
import signal
import sys
import time

from . import __version__, recording
from .argfiles import expand_argfiles
from .errors import BackupError, ConfigError
from .job import JobConfig, run_job

LOG = logging.getLogger("btrfs_backup")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_TERMINATED = 0, 1, 2, 3, 143

DESCRIPTION = """\
Incremental, atomic backups of a btrfs subvolume: take a read-only snapshot, send it with
btrfs send/receive to local folders, to ssh:// hosts or into a shell:// command, and keep
only what the retention settings say. A destination is tracked by subvolume UUIDs, so every
destination continues incrementally on its own; a failed transfer is recorded in
.outstanding_transfers and cleaned up and retried by the next run."""

EPILOG = """\
Argument files: any argument written @FILE is replaced by the arguments in FILE, one flag,
'--option value' pair or argument per line (values are not escaped). Lines starting with '#'
are comments; blank lines and indentation are ignored; files may include other files
(relative to the including file); include loops are reported.

Exit status: 0 success, 1 a destination or step failed (the others still ran),
2 bad input (nothing was changed), 3 another run of the same job is in progress,
143 terminated (locks record the unfinished transfer; the next run cleans up)."""


class Terminated(BaseException):
    """Raised from the SIGTERM handler so that cleanup code runs (like KeyboardInterrupt)."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup", description=DESCRIPTION, epilog=EPILOG, add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    show = parser.add_argument_group("Display settings")
    show.add_argument("-h", "--help", action="help", help="Show this help message and exit.")
    show.add_argument("--version", action="version", version="btrfs-backup (btrfs.backup) " + __version__)
    show.add_argument("-v", "--verbosity", default="info",
                      choices=["debug", "info", "warning", "error"],
                      help="Set verbosity level. Default is 'info'.")
    show.add_argument("-q", "--quiet", action="store_true",
                      help="Shortcut for '--no-progress --verbosity warning'.")
    show.add_argument("-d", "--btrfs-debug", action="store_true",
                      help="Enable debugging on btrfs send / receive.")
    show.add_argument("-P", "--no-progress", action="store_true",
                      help="Don't display progress (pv) during transfers.")
    show.add_argument("--json", action="store_true",
                      help="Print the run's result as JSON on standard output.")

    keep = parser.add_argument_group("Retention settings")
    keep.add_argument("-N", "--num-snapshots", type=_whole, default=0, metavar="N",
                      help="Only keep the latest N snapshots at the source (0: all).")
    keep.add_argument("-n", "--num-backups", type=_whole, default=0, metavar="N",
                      help="Only keep the latest N backups at each destination (0: all).")
    keep.add_argument("--preserve-snapshots", default="", metavar="POLICY",
                      help="Also keep the first snapshot of each of the last periods, "
                           "e.g. '24h 7d 4w 12m *y' (h/d/w/m/y; * = all periods).")
    keep.add_argument("--preserve-backups", default="", metavar="POLICY",
                      help="The same time-bucket policy for the backups at each destination.")
    keep.add_argument("--latest-only", action="store_true",
                      help="Deprecated: shortcut for '--num-snapshots 1'.")

    snap = parser.add_argument_group("Snapshot creation settings")
    snap.add_argument("-S", "--no-snapshot", action="store_true",
                      help="Don't take a new snapshot, just transfer existing ones.")
    snap.add_argument("--require-destination", action="store_true",
                      help="Take no snapshot unless a destination can take it now. By default "
                           "the snapshot is taken while every destination is unreachable, and "
                           "sent when one is back.")
    snap.add_argument("-f", "--snapshot-folder", default="snapshot", metavar="FOLDER",
                      help="Snapshot folder, absolute or relative to the source. Default 'snapshot'.")
    snap.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX",
                      help="Prefix for snapshot names. Default is ''.")

    move = parser.add_argument_group("Transfer related options")
    move.add_argument("-T", "--no-transfer", action="store_true", help="Don't transfer any snapshot.")
    move.add_argument("-I", "--no-incremental", action="store_true",
                      help="Always send full streams (e.g. when piping to files).")
    move.add_argument("--check", action="store_true",
                      help="Dry run: change nothing, print what would be done.")

    ssh = parser.add_argument_group("SSH related options")
    ssh.add_argument("--ssh-opt", action="append", default=[], metavar="OPTION",
                     help="Pass an ssh_config option to ssh(1), e.g. --ssh-opt IdentityFile=/root/id.")
    ssh.add_argument("--ssh-sudo", action="store_true",
                     help="Run btrfs with 'sudo -n' on the remote host.")

    misc = parser.add_argument_group("Miscellaneous options")
    misc.add_argument("-s", "--sync", action="store_true",
                      help="Run 'btrfs subvolume sync' after deleting subvolumes.")
    misc.add_argument("-w", "--convert-rw", action="store_true",
                      help="Make read-only snapshots writable before deleting them "
                           "(for user_subvol_rm_allowed).")
    misc.add_argument("--remove-locks", action="store_true",
                      help="Remove the locks of all given destinations. Only use this when no "
                           "partial backup is left at those destinations.")
    misc.add_argument("--skip-fs-checks", action="store_true",
                      help="Accepted for compatibility; the checks are part of the one listing "
                           "each run makes, so they are always done.")

    where = parser.add_argument_group("Source and destination")
    where.add_argument("--locked-dests", action="store_true",
                       help="Add every destination for which locks exist.")
    where.add_argument("source", help="Subvolume to back up: /path or ssh://[user@]host[:port]/path.")
    where.add_argument("dest", nargs="*", default=[],
                       help="Destinations: /path, ssh://[user@]host[:port]/path or "
                            "'shell://cat > some-file'. Any number, or none.")
    return parser


def _whole(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("%r must not be negative" % text)
    return value


def config_from_args(options):
    return JobConfig(
        source=options.source,
        destinations=options.dest,
        snapshot_folder=options.snapshot_folder,
        prefix=options.snapshot_prefix,
        num_snapshots=1 if options.latest_only and not options.num_snapshots else options.num_snapshots,
        num_backups=options.num_backups,
        preserve_snapshots=options.preserve_snapshots,
        preserve_backups=options.preserve_backups,
        no_snapshot=options.no_snapshot,
        no_transfer=options.no_transfer,
        no_incremental=options.no_incremental,
        locked_dests=options.locked_dests,
        require_destination=options.require_destination,
        remove_locks=options.remove_locks,
        ssh_options=options.ssh_opt,
        ssh_sudo=options.ssh_sudo,
        convert_rw=options.convert_rw,
        sync=options.sync,
        btrfs_debug=options.btrfs_debug,
        progress=not (options.no_progress or options.quiet or options.json),
        check_mode=options.check,
    )


def _setup_logging(options):
    level = "warning" if options.quiet and options.verbosity == "info" else options.verbosity
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("btrfs-backup: %(levelname)s: %(message)s"))
    LOG.handlers[:] = [handler]
    LOG.setLevel(getattr(logging, level.upper()))
    LOG.propagate = False


def _summary(result):
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
    for step in result.plan:
        lines.append("would %s" % step if result.check_mode else step)
    return lines


def _exit_status(result):
    kinds = set(result.error_types)
    if "JobBusyError" in kinds:
        return EXIT_BUSY
    if "ConfigError" in kinds and not result.changed:
        return EXIT_USAGE
    return EXIT_FAILED if result.failed else EXIT_OK


def _on_sigterm(signum, frame):
    raise Terminated()


def build_restore_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup restore",
        description="Bring a backup back: receive it from a backup folder (local or ssh://) "
                    "and place it at TARGET on a btrfs filesystem, read-only as received or "
                    "writable (-W). An existing TARGET is never overwritten; with --force it is "
                    "renamed aside to TARGET.before-restore-<timestamp>.")
    parser.add_argument("backups", help="Backup folder: /path or ssh://[user@]host[:port]/path.")
    parser.add_argument("target", help="Absolute path of the restored subvolume (must not exist).")
    parser.add_argument("--snapshot", metavar="NAME", help="Which backup (default: the newest).")
    parser.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX")
    parser.add_argument("-W", "--writable", action="store_true",
                        help="Make the restored subvolume writable, ready to use.")
    parser.add_argument("--force", action="store_true", help="Rename an existing TARGET aside.")
    _add_common(parser)
    return parser


def build_verify_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup verify",
        description="Check a backup against its source snapshot: the UUID chain (the backup's "
                    "received_uuid is the snapshot's uuid, read-only, its incremental parent) "
                    "and, unless --no-content, every entry's type, mode, owner, size, link "
                    "target and sha256.")
    parser.add_argument("source", help="The backed-up subvolume: /path or ssh:// URL.")
    parser.add_argument("backups", help="Backup folder: /path or ssh:// URL.")
    parser.add_argument("--snapshot", metavar="NAME",
                        help="Which snapshot (default: the newest the destination holds).")
    parser.add_argument("-f", "--snapshot-folder", default="snapshot", metavar="FOLDER")
    parser.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX")
    parser.add_argument("--no-content", action="store_true", help="Only check the UUID chain.")
    _add_common(parser)
    recording.add_options(parser)
    return parser


def _add_common(parser):
    parser.add_argument("--ssh-opt", action="append", default=[], metavar="OPTION")
    parser.add_argument("--ssh-sudo", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("-v", "--verbosity", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("-q", "--quiet", action="store_true")


def _run_subcommand(command, argv):
    """`restore` and `verify`: one operation each, JSON or a short summary."""
    from .restore import restore
    from .verify import verify
    parser = build_restore_parser() if command == "restore" else build_verify_parser()
    options = parser.parse_args(expand_argfiles(argv))
    _setup_logging(options)
    # As for a backup run: SIGTERM unwinds, so a restore stops its pipeline and removes its
    # staging folder instead of dying with them left behind.
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if command == "restore":
            result = restore(options.backups, options.target, name=options.snapshot,
                             prefix=options.snapshot_prefix, writable=options.writable,
                             force=options.force, check_mode=options.check,
                             ssh_options=options.ssh_opt, ssh_sudo=options.ssh_sudo)
            ok = True
        else:
            job, _max_age = recording.check_options(options, options.source)
            try:
                result = verify(options.source, options.backups, options.snapshot_folder,
                                options.snapshot_prefix, options.snapshot,
                                content=not options.no_content, ssh_options=options.ssh_opt,
                                ssh_sudo=options.ssh_sudo)
            except ConfigError:
                raise
            except BackupError as err:
                _record_verify(options, job, None, err)
                raise
            recorded = _record_verify(options, job, result, None)
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
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    elif command == "restore" and not result["changed"]:
        LOG.info("%s already holds %s from %s: nothing to do", result["target"],
                 result["snapshot"], result["source"])
    elif command == "restore":
        LOG.info("%s %s from %s at %s%s", "would restore" if options.check else "restored",
                 result["snapshot"], result["source"], result["target"],
                 " (previous %s renamed to %s)" % (result["target"], result["moved_aside"])
                 if result["moved_aside"] else "")
    else:
        LOG.info("%s: backup of %s at %s %s", "OK" if ok else "PROBLEM", result["snapshot"],
                 result["destination"], "verified" if ok else "has problems:")
        for problem in result["problems"]:
            LOG.error("  %s", problem)
    return EXIT_OK if ok else EXIT_FAILED


def _record_verify(options, job, report, err):
    """Record a verify in the job's state (not in check mode); False when that failed."""
    from .endpoints import parse_location
    if options.check:
        return True
    origin = parse_location(options.source, options.ssh_opt, options.ssh_sudo, allow_shell=False)
    dest = parse_location(options.backups, options.ssh_opt, options.ssh_sudo, allow_shell=False)
    folder = options.snapshot_folder or "snapshot"
    folder = folder if folder.startswith("/") else origin.path.rstrip("/") + "/" + folder
    if report is None:
        report = {"destination": dest.id, "snapshot": None, "ok": False, "problems": [str(err)]}
    problem = recording.record_verify(report, job=job, prefix=options.snapshot_prefix,
                                      when=time.time(), source_id=origin.id, folder=folder,
                                      metrics_dir=options.metrics_dir)
    if problem:
        LOG.error("%s", problem)
    return problem is None


SUBCOMMANDS = ("restore", "verify")


def build_serve_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup serve",
        description="The forced command of a source host's ssh key on a backup server "
                    "(authorized_keys: restrict,command=\"btrfs-backup serve --root DIR\"). "
                    "Runs the command in SSH_ORIGINAL_COMMAND only if it is one that a push "
                    "backup sends, with every path inside DIR; refuses anything else.")
    parser.add_argument("--root", required=True, help="The only folder this key may use.")
    parser.add_argument("--btrfs", default="btrfs", metavar="PATH",
                        help="The btrfs program (run with sudo -n unless already root).")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from . import serve
        options = build_serve_parser().parse_args(argv[1:])
        return serve.main(options.root, options.btrfs)
    if argv and argv[0] == "status":
        from .status import main as status_main
        return status_main(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        try:
            return _run_subcommand(argv[0], argv[1:])
        except ConfigError as err:
            sys.stderr.write("btrfs-backup %s: error: %s\n" % (argv[0], err))
            return EXIT_USAGE
    parser = build_parser()
    recording.add_options(parser)
    try:
        argv = expand_argfiles(argv)
    except ConfigError as err:
        parser.error(str(err))
    options = parser.parse_args(argv)
    _setup_logging(options)
    if options.skip_fs_checks:
        LOG.info("--skip-fs-checks has no effect: the checks cost nothing extra")
    try:
        job, max_age = recording.check_options(options, options.source)
    except BackupError as err:
        parser.error(str(err))
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.time()
    try:
        result = run_job(config_from_args(options))
    except (KeyboardInterrupt, Terminated):
        LOG.error("terminated: unfinished transfers stay locked in .outstanding_transfers; "
                  "the next run removes their partial backups and sends them again")
        return EXIT_TERMINATED
    if options.json:
        json.dump(result.as_dict(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for line in _summary(result):
            LOG.info("%s", line)
    status = _exit_status(result)
    if status not in (EXIT_BUSY, EXIT_USAGE):  # a busy job or bad input is not a run
        problem = recording.record_run(
            result.as_dict(), job=job, prefix=options.snapshot_prefix, started=started,
            duration=time.time() - started, max_age=max_age, metrics_dir=options.metrics_dir)
        if problem:  # an error of its own unless the run failed already (often for the same cause)
            (LOG.warning if status else LOG.error)("%s", problem)
            status = status or EXIT_FAILED
    return status


if __name__ == "__main__":
    raise SystemExit(main())
