# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The `btrfs-backup` command line: btrfs-backup 0.3's flags and @argfiles over the engine."""

import argparse
import logging
import os
import signal
import sys
import time

from ..host import recording
from ..host.job_source import job_source
from ..model.version import __version__
from .argfiles import expand_argfiles
from ..model import units
from ..model.errors import BackupError, ConfigError
from ..run.job import JobConfig, run_job

LOG = logging.getLogger("btrfs_backup")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_TERMINATED = 0, 1, 2, 3, 143

DESCRIPTION = """\
Incremental, atomic backups of a btrfs subvolume: take a read-only snapshot, send it with
btrfs send/receive to local folders, to ssh:// hosts or into a shell:// command, and keep
only what the retention settings say. A destination is tracked by subvolume UUIDs, so every
destination continues incrementally on its own; a failed transfer is recorded in
.outstanding_transfers and cleaned up and retried by the next run."""

EPILOG = """\
Commands (each has its own --help):
  btrfs-backup restore BACKUPS TARGET   bring a backup back as a subvolume (read-only or -W writable)
  btrfs-backup verify SOURCE BACKUPS    check a backup's UUID chain and content against its snapshot
  btrfs-backup serve --root DIR         the forced command of a source's ssh key on a backup server
  btrfs-backup prune FOLDER ...         a backup server's own retention (beside serve --append-only)
Without a command, btrfs-backup backs up SOURCE to each DEST, as below.

Argument files: any argument written @FILE is replaced by the arguments in FILE, one flag,
'--option value' pair or argument per line (values are not escaped). Lines starting with '#'
are comments; blank lines and indentation are ignored; files may include other files
(relative to the including file); include loops are reported.

Exit status: 0 success, 1 a destination or step failed (the others still ran),
2 bad input (nothing was changed), 3 another run of the same job is in progress,
143 terminated (locks record the unfinished transfer; the next run cleans up)."""


class Terminated(BaseException):
    """Raised from the SIGTERM handler so that cleanup code runs (like KeyboardInterrupt)."""


def _switch(group, *flags, **kwargs):
    """An on/off flag of the backup command."""
    group.add_argument(*flags, action="store_true", **kwargs)


def _backup_retention(group, count_help, buckets_help):
    """-n/--num-backups and --preserve-backups: retention of backups, for a run and for prune."""
    group.add_argument("-n", "--num-backups", type=_whole, default=0, metavar="N", help=count_help)
    group.add_argument("--preserve-backups", default="", metavar="POLICY", help=buckets_help)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup", description=DESCRIPTION, epilog=EPILOG, add_help=False,
        usage="%(prog)s [options] SOURCE [DEST ...]\n       %(prog)s {restore,verify,serve,prune} [options] ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    show = parser.add_argument_group("Display settings")
    show.add_argument("-h", "--help", action="help", help="Show this help message and exit.")
    show.add_argument("--version", action="version", version="btrfs-backup (btrfs.backup) " + __version__)
    show.add_argument("-v", "--verbosity", default="info",
                      choices=["debug", "info", "warning", "error"],
                      help="Set verbosity level. Default is 'info'.")
    _switch(show, "-q", "--quiet", help="Shortcut for '--no-progress --verbosity warning'.")
    _switch(show, "-d", "--btrfs-debug", help="Enable debugging on btrfs send / receive.")
    _switch(show, "-P", "--no-progress", help="Don't display progress (pv) during transfers.")
    _switch(show, "--json", help="Print the run's result as JSON on standard output.")

    keep = parser.add_argument_group("Retention settings")
    keep.add_argument("-N", "--num-snapshots", type=_whole, default=0, metavar="N",
                      help="Only keep the latest N snapshots at the source (0: all).")
    keep.add_argument("--preserve-snapshots", default="", metavar="POLICY",
                      help="Also keep the first snapshot of each of the last periods, "
                           "e.g. '24h 7d 4w 12m *y' (h/d/w/m/y; * = all periods).")
    _backup_retention(keep, "Only keep the latest N backups at each destination (0: all).",
                      "The same time-bucket policy for the backups at each destination.")
    _switch(keep, "--latest-only", help="Deprecated: shortcut for '--num-snapshots 1'.")

    snap = parser.add_argument_group("Snapshot creation settings")
    _switch(snap, "-S", "--no-snapshot", help="Don't take a new snapshot, just transfer existing ones.")
    _switch(snap, "--require-destination",
            help="Take no snapshot unless a destination can take it now. By default the snapshot is "
                 "taken while every destination is unreachable, and sent when one is back.")
    snap.add_argument("--max-unsent-snapshots", type=_whole, default=100, metavar="N",
                      help="Keep at most N snapshots for a destination that cannot be reached: then "
                           "source retention keeps only the newest one it holds (it continues from there "
                           "when back), or, if that is not known or no destination answers, no snapshot "
                           "is taken and the run fails saying so. 0: no limit. Default 100.")
    snap.add_argument("-f", "--snapshot-folder", default="snapshot", metavar="FOLDER",
                      help="Snapshot folder, absolute or relative to the source. Default 'snapshot'.")
    snap.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX",
                      help="Prefix for snapshot names. Default is ''.")

    move = parser.add_argument_group("Transfer related options")
    _switch(move, "-T", "--no-transfer", help="Don't transfer any snapshot.")
    _switch(move, "-I", "--no-incremental", help="Always send full streams (e.g. when piping to files).")
    _switch(move, "--check", help="Dry run: change nothing, print what would be done.")

    stream = parser.add_argument_group("Stream settings")
    stream.add_argument("--compress", default="auto", metavar="MODE",
                        help="auto (the default: zstd level 3 where a stream crosses ssh, both ends "
                             "have zstd and a sample of the data compresses), none, zstd or zstd:LEVEL (1-19).")
    stream.add_argument("--limit-rate", default=None, metavar="RATE",
                        help="Limit each destination's stream to RATE bytes per second, e.g. 20M "
                             "(K, M, G: powers of 1024; compressed bytes where compressed). Needs pv.")
    stream.add_argument("--buffer", default=None, metavar="SIZE",
                        help="Buffer SIZE bytes (e.g. 256M) before each receiver, to smooth a bursty "
                             "send over a slow link. Needs mbuffer.")
    stream.add_argument("--send-protocol", default="auto", choices=["auto", "1", "2"],
                        help="btrfs send protocol; 2 sends extents that btrfs compressed as they are. "
                             "auto (the default): 2 where the source and every receiver support it.")

    ssh = parser.add_argument_group("SSH related options")
    ssh.add_argument("--ssh-opt", action="append", default=[], metavar="OPTION",
                     help="Pass an ssh_config option to ssh(1), e.g. --ssh-opt IdentityFile=/root/id.")
    _switch(ssh, "--ssh-sudo", help="Run btrfs with 'sudo -n' on the remote host.")

    misc = parser.add_argument_group("Miscellaneous options")
    _switch(misc, "-s", "--sync", help="Run 'btrfs subvolume sync' after deleting subvolumes.")
    _switch(misc, "-w", "--convert-rw",
            help="Make read-only snapshots writable before deleting them (for user_subvol_rm_allowed).")
    _switch(misc, "--remove-locks",
            help="Remove the locks of all given destinations. Only use this when no "
                 "partial receive is left at those destinations.")
    _switch(misc, "--skip-fs-checks",
            help="Accepted for compatibility; the checks are part of the one listing "
                 "each run makes, so they are always done.")

    where = parser.add_argument_group("Source and destination")
    _switch(where, "--allow-same-filesystem",
            help="Accept a destination on the source's own btrfs filesystem. By default it is refused: "
                 "such a backup is lost with the source's disk (often an unmounted backup disk).")
    _switch(where, "--locked-dests", help="Add every destination for which locks exist.")
    where.add_argument("source", help="Subvolume to back up: /path or ssh://[user@]host[:port]/path.")
    where.add_argument("dest", nargs="*", default=[],
                       help="Destinations: /path, ssh://[user@]host[:port]/path or "
                            "'shell://cat > some-file'. Any number, or none.")
    return parser


def _whole(text):
    try:
        return units.parse_count(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err))


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
        max_unsent_snapshots=options.max_unsent_snapshots,
        allow_same_filesystem=options.allow_same_filesystem,
        remove_locks=options.remove_locks,
        ssh_options=options.ssh_opt,
        ssh_sudo=options.ssh_sudo,
        convert_rw=options.convert_rw,
        sync=options.sync,
        btrfs_debug=options.btrfs_debug,
        compress=options.compress,
        limit_rate=options.limit_rate,
        buffer=options.buffer,
        send_protocol=options.send_protocol,
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


def build_restore_parser():
    parser = _subcommand_parser(
        "restore", "Bring a backup back: receive it from a backup folder (local or ssh://) "
        "and place it at TARGET on a btrfs filesystem, read-only as received or "
        "writable (-W). An existing TARGET is never overwritten; with --force it is "
        "renamed aside to TARGET.before-restore-<timestamp>.",
        backups="Backup folder: /path or ssh://[user@]host[:port]/path.",
        target="Absolute path of the restored subvolume (must not exist).")
    parser.add_argument("--snapshot", metavar="NAME", help="Which backup (default: the newest).")
    parser.add_argument("-p", "--snapshot-prefix", default="", metavar="PREFIX",
                        help="Prefix of the snapshot names. Default is ''.")
    parser.add_argument("-W", "--writable", action="store_true",
                        help="Make the restored subvolume writable, ready to use.")
    parser.add_argument("--force", action="store_true", help="Rename an existing TARGET aside.")
    _add_common(parser)
    return parser


def build_verify_parser():
    parser = _subcommand_parser(
        "verify", "Check a backup against its source snapshot: the UUID chain (the backup's "
        "received_uuid is the snapshot's uuid, read-only, its incremental parent) "
        "and, unless --no-content, every entry's type, mode, owner, size, link "
        "target and sha256.",
        source="The backed-up subvolume: /path or ssh:// URL.",
        backups="Backup folder: /path or ssh:// URL.")
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


def build_prune_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup prune",
        description="Retention on a backup server (the other half of 'serve --append-only'): "
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
    from ..run.restore import restore
    from ..run.verify import verify
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
            result = restore(options.backups, options.target, name=options.snapshot,
                             prefix=options.snapshot_prefix, writable=options.writable,
                             force=options.force, check_mode=options.check,
                             ssh_options=options.ssh_opt, ssh_sudo=options.ssh_sudo)
            ok = True
        else:
            job, _max_age = recording.check_options(options)
            _source, identity = job_source(options.source, ssh_options=options.ssh_opt,
                                           ssh_sudo=options.ssh_sudo, snapshot_folder=options.snapshot_folder,
                                           prefix=options.snapshot_prefix, job_name=job)
            try:
                result = verify(options.source, options.backups, options.snapshot_folder,
                                options.snapshot_prefix, options.snapshot,
                                content=not options.no_content, ssh_options=options.ssh_opt,
                                ssh_sudo=options.ssh_sudo)
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


def _record_verify(options, identity, report, err):
    """Record a verify in the job's state (not in check mode); False when that failed."""
    from ..host.endpoints import parse_location
    if options.check:
        return True
    if report is None:
        dest = parse_location(options.backups, options.ssh_opt, options.ssh_sudo, allow_shell=False)
        report = {"destination": dest.id, "snapshot": None, "ok": False, "problems": [str(err)]}
    problem = recording.record_verify(report, identity=identity, when=time.time(),
                                      metrics_dir=options.metrics_dir)
    if problem:
        LOG.error("%s", problem)
    return problem is None


SUBCOMMANDS = ("restore", "verify", "prune")


def build_serve_parser():
    parser = argparse.ArgumentParser(
        prog="btrfs-backup serve",
        description="The forced command of a source host's ssh key on a backup server "
                    "(authorized_keys: restrict,command=\"btrfs-backup serve --root DIR\"). "
                    "Runs the command in SSH_ORIGINAL_COMMAND only if it is one that a push "
                    "backup sends, with every path inside DIR; refuses anything else. With --restore, "
                    "the forced command of an administrator's restore key: it only reads backups.")
    parser.add_argument("--root", required=True, help="The only folder this key may use.")
    parser.add_argument("--btrfs", default="btrfs", metavar="PATH",
                        help="The btrfs program (run with sudo -n unless already root).")
    parser.add_argument("--append-only", action="store_true",
                        help="Never delete a complete backup nor make one writable: only partial "
                             "receives may be deleted; 'btrfs-backup prune' on the server "
                             "applies retention.")
    parser.add_argument("--filesystem", metavar="UUID",
                        help="Receive only while DIR is on the btrfs filesystem with this UUID (the one it "
                             "was set up on), never on the system disk when the backup disk did not mount.")
    parser.add_argument("--clock-skew", default="15m", metavar="DURATION",
                        help="Refuse (and delete at once) a received backup whose name lies further "
                             "than this ahead of this server's clock, e.g. '5m', '1h'. Default 15m. "
                             "Names carry the sending host's local time: hosts in another time zone "
                             "need the difference added.")
    parser.add_argument("--quota", metavar="SIZE",
                        help="Refuse receives once DIR's backups reference SIZE (e.g. '50G'), and "
                             "stop a receive that would pass it. DIR must be a subvolume in a "
                             "level-1 qgroup 1/<its id> on a filesystem with quotas enabled.")
    parser.add_argument("--restore", action="store_true",
                        help="An administrator's restore key: accept only what 'btrfs-backup restore "
                             "ssh://...' and btrfs_restore send (the listing and btrfs send of a complete "
                             "backup in DIR), nothing that writes.")
    parser.add_argument("--host", action="append", dest="hosts", metavar="NAME",
                        help="With --restore: only the folder DIR/NAME (repeat for several hosts); "
                             "default: every host's folder in DIR.")
    parser.add_argument("--metrics-file", metavar="PATH",
                        help="Count refusals per host (DIR's name) and kind in this node_exporter textfile "
                             "(btrfs_backup_serve_refusals_total); its folder must be writable.")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from . import serve
        options = build_serve_parser().parse_args(argv[1:])
        return serve.main(options.root, options.btrfs, append_only=options.append_only,
                          quota_size=options.quota, filesystem=options.filesystem,
                          clock_skew=options.clock_skew, metrics_file=options.metrics_file,
                          restore=options.restore, hosts=options.hosts)
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


def run():
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
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    run()
