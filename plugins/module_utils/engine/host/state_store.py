"""Effects: the job state folder, checked safe; the last-run state read defensively, written atomically, and metrics."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import json
import os

from ..model.errors import ConfigError
from ..model.folder_trust import folder_problem, folders_to_check

if TYPE_CHECKING:
    from ..model.job_identity import JobIdentity

# Outside the source: a file in the snapshot folder would be in every snapshot and every backup.
STATE_DIR_ENV = "BTRFS_BACKUP_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/btrfs-backup/jobs"
# Where earlier versions kept the job lock: removed by the next run.
LEGACY_JOB_LOCK_NAME = ".btrfs-backup.lock"


def state_root() -> str:
    """The folder of every job's state: $BTRFS_BACKUP_STATE_DIR, else /var/lib/btrfs-backup/jobs
    for root and ~/.local/state/btrfs-backup/jobs (XDG_STATE_HOME) for another user."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return configured
    if os.geteuid() == 0:
        return DEFAULT_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "btrfs-backup", "jobs")


def require_trusted_folder(path: str) -> str:
    """Refuse a job state folder that someone but root (or the running user) could swap or fill:
    every folder on its way, also where a symbolic link leads, is checked (a missing one is made by
    the run itself). A user who owns a parent could point the run's writes anywhere."""
    euid = os.geteuid()
    for chain in (os.path.abspath(path), os.path.realpath(path)):
        for folder in folders_to_check(os.path.normpath(chain)):
            try:
                info = os.lstat(folder)
            except FileNotFoundError:
                break
            except OSError as err:
                raise ConfigError("cannot check the job state folder %s: %s: %s" % (path, folder, err.strerror))
            problem = folder_problem(folder, info.st_uid, info.st_mode, euid)
            if problem:
                raise ConfigError(
                    "the job state folder %s is not safe: %s; every folder on its way must be owned by "
                    "root and writable by no one else (fix it, e.g. chown root:root and chmod 755, or "
                    "choose another with %s)" % (path, problem, STATE_DIR_ENV))
    return path


def job_lock_path(identity: JobIdentity) -> str:
    """The job lock (rule 5): one per source and snapshot folder, beside its state, in a folder
    checked to be safe (a run takes it before anything else)."""
    require_trusted_folder(identity.state_dir)
    return identity.lock_path


def current_state_path(identity: JobIdentity) -> str:
    """The file that holds the job's state now: the new place, else (not migrated yet) the old one.
    Every reader (status, the info module, the next run) finds the state through this."""
    if not os.path.exists(identity.state_path) and os.path.exists(identity.legacy_state_path):
        return identity.legacy_state_path
    return identity.state_path


def load_state(identity: JobIdentity) -> dict | None:
    """The job's state, None if there is none (see read_state)."""
    return read_state(current_state_path(identity))


def read_state(path: str) -> dict | None:
    """The state at `path`, None if there is none; a corrupt file is an error, never a reset."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError("cannot read the last-run state %s: %s" % (path, err.strerror))
    try:
        state = json.loads(text)
    except ValueError as err:
        raise ConfigError("the last-run state %s is not valid JSON (%s): move it aside" % (path, err))
    if not isinstance(state, dict) or not isinstance(state.get("destinations", {}), dict):
        raise ConfigError("the last-run state %s does not have the expected shape: move it aside" % path)
    return state


def write_atomically(path: str, text: str, durable: bool, mode: int = 0o644) -> None:
    """Write a temp file beside `path`, (fsync,) rename over it: readers see old or new, never half."""
    folder = os.path.dirname(path)
    temp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(temp, path)
    except OSError:
        os.unlink(temp)
        raise


def save_state(identity: JobIdentity, state: dict) -> None:
    """Write the job's state in its state folder; an old-place state file is removed (migrated)."""
    path = identity.state_path
    os.makedirs(require_trusted_folder(identity.state_dir), mode=0o755, exist_ok=True)
    # Not fsynced: the rename keeps it whole, and after a crash the previous run's record is shown.
    write_atomically(path, json.dumps(state, indent=1, sort_keys=True) + "\n", durable=False)
    try:
        os.unlink(identity.legacy_state_path)
    except FileNotFoundError:
        pass
    return path


def read_forecasts(identity: JobIdentity, name: str) -> dict | None:
    """A forecast file `name` in the job's state folder (destination id -> what the job's last run
    left there): {} without one, None when it cannot be read (then every run lists first)."""
    try:
        with open(os.path.join(identity.state_dir, name), encoding="utf-8") as handle:
            recorded = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def update_forecasts(identity: JobIdentity, name: str, entries: dict) -> None:
    """Set each destination's entry in forecast file `name` (None: removed, the next run there lists
    first); a file that cannot be read is started anew. Written whole or not at all, readable by root
    only, and not at all when nothing changed; raises OSError or ConfigError when it cannot be written."""
    before = read_forecasts(identity, name)
    recorded = dict(before or {})
    for dest_id, entry in entries.items():
        if entry is None:
            recorded.pop(dest_id, None)
        else:
            recorded[dest_id] = entry
    if recorded == before:
        return  # a run that changed nothing there writes nothing
    os.makedirs(require_trusted_folder(identity.state_dir), mode=0o755, exist_ok=True)
    write_atomically(os.path.join(identity.state_dir, name), json.dumps(recorded, sort_keys=True) + "\n",
                     durable=False, mode=0o600)


def metrics_path(metrics_dir: str, identity: JobIdentity) -> str:
    return os.path.join(metrics_dir, identity.metrics_file)


def save_metrics(metrics_dir: str, identity: JobIdentity, text: str) -> None:
    """Into node_exporter's textfile directory: only *.prom files are read, so the temp file is safe."""
    write_atomically(metrics_path(metrics_dir, identity), text, durable=False)
