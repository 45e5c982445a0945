"""Run the real `bin/btrfs-backup` and look at what it left behind the way a user would.

Nothing here imports the engine: the tests judge the engine by its exit status, its --json
result and the subvolumes that `btrfs` itself reports, never by the engine's own parsers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from support.btrfs_loop import pipeline, run
from support.trees import assert_same_tree

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "bin" / "btrfs-backup"
OLD_CLI = REPO / ".venv" / "bin" / "btrfs-backup"  # btrfs-backup 0.3.1, for the compat tests

#: Snapshot names are `<prefix>%Y%m%d-%H%M%S`.
TIMESTAMP_RE = r"\d{8}-\d{6}"
LOCK_FILE = ".outstanding_transfers"
#: Where versions before 1.x kept the job lock and the last-run state: in the snapshot folder.
JOB_LOCK = ".btrfs-backup.lock"
LAST_RUN_RECORD = ".btrfs-backup.last-run.json"
#: Where every job keeps them now: one folder per job under $BTRFS_BACKUP_STATE_DIR.
STATE_DIR_ENV = "BTRFS_BACKUP_STATE_DIR"


def job_state_folders() -> List[Path]:
    """The folders of every job's state and lock under this test's state folder."""
    root = Path(os.environ[STATE_DIR_ENV])
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def job_state_folder() -> Path:
    """The one job's folder (a test that ran one job)."""
    found = job_state_folders()
    assert len(found) == 1, found
    return found[0]


# -- running the command line -------------------------------------------------------------


class CliRun(NamedTuple):
    """One run of the CLI: exit status, the parsed --json result (None if nothing was printed), stderr."""

    code: int
    result: Optional[dict]
    stderr: str

    def explain(self) -> str:
        """Everything needed to understand a failed assertion."""
        shown = json.dumps(self.result, indent=1)[:6000] if self.result is not None else "(no JSON)"
        return "exit status %d\n--- stderr ---\n%s\n--- result ---\n%s" % (self.code, self.stderr, shown)


def run_raw(*args, env: Optional[dict] = None, timeout: float = 180, program: Path = CLI,
            cwd=None) -> subprocess.CompletedProcess:
    """Run the CLI (the executable itself, as a user or a timer would) and capture its output."""
    argv = [str(program)] + [os.fspath(a) for a in args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=full_env, timeout=timeout, cwd=cwd)


def run_cli(*args, env: Optional[dict] = None, timeout: float = 180, cwd=None, program: Path = CLI) -> CliRun:
    """`btrfs-backup --json ARGS...`: (exit status, parsed result, stderr)."""
    return _parsed(run_raw("--json", *args, env=env, timeout=timeout, cwd=cwd, program=program))


def _parsed(proc: subprocess.CompletedProcess) -> CliRun:
    """A --json run as CliRun; output that is not JSON fails the test, showing both streams."""
    result = None
    if proc.stdout.strip():
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("--json printed something that is not JSON:\n%s\n--- stderr ---\n%s"
                                 % (proc.stdout[:3000], proc.stderr))
    return CliRun(proc.returncode, result, proc.stderr)


def ok(*args, **kwargs) -> CliRun:
    """Run the CLI and insist that it succeeded."""
    done = run_cli(*args, **kwargs)
    assert done.code == 0, done.explain()
    assert done.result is not None and not done.result["failed"], done.explain()
    return done


def ssh_args(*servers) -> List[str]:
    """`--ssh-opt` flags that reach every given test sshd.

    ssh keeps the first value of most options, so the per-server identity files are all listed
    (IdentityFile accumulates) and the known_hosts files are joined into one option.
    """
    options, identities, known = [], [], []
    for server in servers:
        for option in server.ssh_options():
            key, value = option.split("=", 1)
            if key == "IdentityFile":
                identities.append(option)
            elif key == "UserKnownHostsFile":
                known.append(value)
            elif option not in options:
                options.append(option)
    options = identities + ["UserKnownHostsFile=" + " ".join(known)] + options
    flags = []
    for option in options:
        flags += ["--ssh-opt", option]
    return flags


def wait_next_second():
    """btrfs-backup 0.3.1 cannot take two snapshots within one second: wait for the next one."""
    time.sleep(1.02 - (time.time() % 1.0))


# -- reading the --json result ---------------------------------------------------------------


def destination(result: dict, dest_id) -> dict:
    """The result of one destination, by its id (a realpath, or an ssh:// / shell:// id)."""
    dest_id = os.fspath(dest_id)
    for dest in result["destinations"]:
        if dest["id"] == dest_id:
            return dest
    raise AssertionError("no destination %r in the result; there are %r"
                         % (dest_id, [d["id"] for d in result["destinations"]]))


def sent(result: dict, dest_id) -> List[tuple]:
    """(snapshot, mode, parent) of every transfer to a destination, in order."""
    return [(t["snapshot"], t["mode"], t["parent"]) for t in destination(result, dest_id)["transfers"]]


def retention(result: dict, where: str) -> dict:
    """{'kept': {name: reasons}, 'deleted': {name: reason}} of one retention section."""
    for section in result["retention"]:
        if section["where"] == where:
            return {"kept": {k["name"]: k["reasons"] for k in section["kept"]},
                    "deleted": {d["name"]: d["reason"] for d in section["deleted"]}}
    raise AssertionError("no retention section for %r in %r"
                         % (where, [s["where"] for s in result["retention"]]))


def kept_reasons(result: dict, where: str, name: str) -> List[str]:
    """Why retention at `where` kept `name` ([] if it made no decision there)."""
    return [reason for section in result["retention"] if section["where"] == where
            for kept in section["kept"] if kept["name"] == name for reason in kept["reasons"]]


# -- what btrfs says about a folder ------------------------------------------------------------


class Subvol(NamedTuple):
    name: str
    path: Path
    uuid: str
    parent_uuid: Optional[str]
    received_uuid: Optional[str]
    readonly: bool

    @property
    def complete_backup(self) -> bool:
        """What a finished `btrfs receive` leaves: read-only with a received UUID."""
        return self.readonly and self.received_uuid is not None


def _uuid(value: str) -> Optional[str]:
    return None if value.strip() in ("-", "") else value.strip()


def show(path) -> Subvol:
    """`btrfs subvolume show PATH` parsed: uuid, parent uuid, received uuid, read-only flag."""
    fields = {}
    out = run(["btrfs", "subvolume", "show", path], env=dict(os.environ, LC_ALL="C")).stdout
    for line in out.splitlines()[1:]:
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    path = Path(path)
    return Subvol(path.name, path, fields["UUID"], _uuid(fields.get("Parent UUID", "-")),
                  _uuid(fields.get("Received UUID", "-")), "readonly" in fields.get("Flags", ""))


def is_subvolume(path) -> bool:
    # A subvolume's root directory is always inode 256 (btrfs-backup 0.3 checks it this way too).
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_ino == 256 and os.path.isdir(path) and not os.path.islink(path)


def subvolumes(folder) -> Dict[str, Subvol]:
    """Every subvolume directly inside `folder`, by name ({} when the folder does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {entry.name: show(entry) for entry in sorted(folder.iterdir()) if is_subvolume(entry)}


def snapshot_names(folder, prefix: str = "") -> List[str]:
    """Names of the `<prefix><timestamp>` subvolumes in `folder`, oldest first."""
    pattern = re.compile("^%s%s$" % (re.escape(prefix), TIMESTAMP_RE))
    return sorted(n for n in subvolumes(folder) if pattern.match(n))


def folder_state(folder) -> Dict[str, object]:
    """Names and file contents of a folder (one level), to prove that nothing changed."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    state = {}
    for entry in sorted(folder.iterdir()):
        if entry.name == JOB_LOCK:
            continue  # the job lock file holds the pid of the last run; it is not data
        if entry.name == LAST_RUN_RECORD:
            continue  # every run, also a refused one, leaves its record (rule 11); it is not data
        state[entry.name] = entry.read_bytes() if entry.is_file() else "<dir>"
    return state


def assert_backup(dest_folder, snapshot_path, parent_name: Optional[str] = None) -> Subvol:
    """The backup of a source snapshot is complete at `dest_folder`, matched by UUID.

    With `parent_name`, it must have been received incrementally on top of that backup:
    its parent_uuid is the uuid of the backup `parent_name` at the same destination.
    Without it, it must be a full receive (no parent).
    """
    snap = show(snapshot_path)
    backups = subvolumes(dest_folder)
    name = Path(snapshot_path).name
    assert name in backups, "%s has no %s: %s" % (dest_folder, name, sorted(backups))
    backup = backups[name]
    assert backup.complete_backup, "%s is not a complete backup: %r" % (backup.path, backup)
    assert backup.received_uuid == (snap.received_uuid or snap.uuid), (backup, snap)
    if parent_name is None:
        assert backup.parent_uuid is None, "%s was expected to be a full receive: %r" % (name, backup)
    else:
        assert backup.parent_uuid == backups[parent_name].uuid, (
            "%s was expected to be received on top of %s: parent_uuid %s, %s has uuid %s"
            % (name, parent_name, backup.parent_uuid, parent_name, backups[parent_name].uuid))
    return backup


def assert_no_partial(dest_folder):
    """No writable or unfinished subvolume is left at a destination."""
    partial = [s for s in subvolumes(dest_folder).values() if not s.complete_backup]
    assert not partial, "partial backups left at %s: %r" % (dest_folder, partial)


def read_locks(snapshot_folder) -> dict:
    """The .outstanding_transfers file as JSON ({} when there is none)."""
    path = Path(snapshot_folder) / LOCK_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_locks_03(snapshot_folder, locks: dict):
    """Write the lock file exactly as btrfs-backup 0.3 does (`json.dumps(lock_dict, indent=4)`)."""
    (Path(snapshot_folder) / LOCK_FILE).write_text(json.dumps(locks, indent=4))


def live_locks(snapshot_folder) -> dict:
    """Lock entries that still hold something (an entry with empty lists means no lock)."""
    return {name: {k: v for k, v in entry.items() if v}
            for name, entry in read_locks(snapshot_folder).items() if any(entry.values())}


# -- making situations by hand ---------------------------------------------------------------


def take_snapshot(source, folder, name) -> Path:
    """A read-only snapshot made by hand (e.g. with a past timestamp in its name)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    target = Path(folder) / name
    run(["btrfs", "subvolume", "snapshot", "-r", source, target])
    return target


def leave_partial_receive(snapshot_path, dest_folder, nbytes: int = 20000) -> Subvol:
    """A receive that died mid-stream (`btrfs send | head -c N | btrfs receive`), as a crash leaves it."""
    Path(dest_folder).mkdir(parents=True, exist_ok=True)
    pipeline(["btrfs", "send", "-q", snapshot_path], ["head", "-c", str(nbytes)],
             ["btrfs", "receive", dest_folder], check=False)
    partial = subvolumes(dest_folder)[Path(snapshot_path).name]
    assert not partial.readonly and partial.received_uuid is None, partial
    return partial


def failing_receive_env(workdir, nbytes: int = 20000, only=None) -> dict:
    """An environment whose `btrfs` cuts the stream of `btrfs receive` after `nbytes` bytes.

    With `only`, just receives into that folder are cut. Every other btrfs command runs the
    real btrfs; the receive fails like one whose connection dropped, leaving a partial
    subvolume behind for the caller to clean up.
    """
    real = shlex.quote(shutil.which("btrfs"))
    target = shlex.quote(os.fspath(only) if only is not None else "")
    bindir = Path(workdir) / "failing-receive-bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "btrfs"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Test stand-in: 'btrfs receive' gets only the first %d bytes of its stream.\n"
        'if [ "$1" = receive ]; then\n'
        "    for folder; do :; done  # the receiving folder is the last argument\n"
        '    if [ -z %s ] || [ "$folder" = %s ]; then\n'
        '        head -c %d | %s "$@"\n'
        "        exit $?\n"
        "    fi\n"
        "fi\n"
        'exec %s "$@"\n' % (nbytes, target, target, nbytes, real, real))
    wrapper.chmod(0o755)
    return {"PATH": "%s:%s" % (bindir, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))}


# -- getting the data back ---------------------------------------------------------------------


def restore(backup_path, into) -> Path:
    """What a user does to get a backup back: `btrfs send BACKUP | btrfs receive` into another fs."""
    target = Path(tempfile.mkdtemp(prefix="restore-", dir=into))
    pipeline(["btrfs", "send", "-q", backup_path], ["btrfs", "receive", target])
    return target / Path(backup_path).name


def assert_restores(backup_path, original, into):
    """Restoring `backup_path` into the filesystem `into` gives back exactly the tree `original`."""
    assert_same_tree(original, restore(backup_path, into))


# -- the restore and verify subcommands --------------------------------------------------------


def run_subcommand(command: str, *args, env: Optional[dict] = None, timeout: float = 180,
                   program: Path = CLI) -> CliRun:
    """`btrfs-backup COMMAND --json ARGS...` (restore, verify): exit status, result, stderr."""
    return _parsed(run_raw(command, "--json", *args, env=env, timeout=timeout, program=program))
