"""Effects: where a job's last-run state and job lock live, reading the state defensively, writing it and its metrics atomically."""

import json
import os
import re

from ..model.errors import ConfigError
from ..model.folder_trust import folder_problem, folders_to_check

# Outside the source: a file in the snapshot folder would be in every snapshot and every backup.
STATE_DIR_ENV = "BTRFS_BACKUP_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/btrfs-backup/jobs"
STATE_FILE = "last-run.json"
JOB_LOCK_FILE = "lock"
# Where earlier versions kept them: read once when the new state is missing, then removed.
LEGACY_STATE_FILE_NAME = ".btrfs-backup.last-run.json"
LEGACY_JOB_LOCK_NAME = ".btrfs-backup.lock"
LEGACY_REMOTE_STATE_DIR = "/var/lib/btrfs-backup/state"
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,99}\Z")


def validate_job_name(name):
    """A job name is used in file names and metric labels: a fixed alphabet."""
    if not _JOB_NAME_RE.match(name or ""):
        raise ConfigError("job name %r is not allowed: use letters, digits and _ . @ - "
                          "(not starting with . - or @), at most 100 characters" % (name,))
    return name


def default_job_name(source_id):
    """A job's name when none is given: its source, as a file name ('/' is 'root')."""
    path = source_id.rstrip("/").split("/")[-1] if not source_id.startswith("ssh://") else source_id
    name = re.sub(r"[^A-Za-z0-9_.@-]+", "_", path).strip("_.-@") or "root"
    return name[:100]


def state_root():
    """The folder of every job's state: $BTRFS_BACKUP_STATE_DIR, else /var/lib/btrfs-backup/jobs
    for root and ~/.local/state/btrfs-backup/jobs (XDG_STATE_HOME) for another user."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return configured
    if os.geteuid() == 0:
        return DEFAULT_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "btrfs-backup", "jobs")


def require_trusted_folder(path):
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


def _digest(source_id, folder):
    import hashlib  # only where a path is computed
    return hashlib.sha256(("%s\0%s" % (source_id, folder)).encode("utf-8")).hexdigest()[:16]


def job_key(source_id, folder):
    """Pure: the job's folder name, from its identity (source and snapshot folder): readable, unique."""
    readable = re.sub(r"[^A-Za-z0-9_.@-]+", "_", folder).strip("_.-@")[-60:].lstrip("_.-@") or "root"
    return "%s-%s" % (readable, _digest(source_id, folder))


def job_state_dir(source_id, folder):
    """The folder of one job's last-run state and job lock."""
    return os.path.join(state_root(), job_key(source_id, folder))


def trusted_job_state_dir(source_id, folder):
    """The job's state folder, refused (ConfigError) when it is not safe to write in."""
    return require_trusted_folder(job_state_dir(source_id, folder))


def state_path(source_id, folder):
    """Where a run writes the job's last-run state."""
    return os.path.join(job_state_dir(source_id, folder), STATE_FILE)


def job_lock_path(source_id, folder):
    """The job lock (rule 5): one per source and snapshot folder, beside its state (checked: a run
    takes it before anything else)."""
    return os.path.join(trusted_job_state_dir(source_id, folder), JOB_LOCK_FILE)


def legacy_state_path(source_id, folder):
    """Where earlier versions kept the state: in a local snapshot folder, or for a pull job
    under /var/lib/btrfs-backup/state."""
    if source_id.startswith("/"):
        return os.path.join(folder, LEGACY_STATE_FILE_NAME)
    return os.path.join(LEGACY_REMOTE_STATE_DIR, "%s.json" % _digest(source_id, folder))


def current_state_path(source_id, folder):
    """The file that holds the job's state now: the new place, else (not migrated yet) the old one.
    Every reader (status, the info module, the next run) finds the state through this."""
    path = state_path(source_id, folder)
    if not os.path.exists(path):
        legacy = legacy_state_path(source_id, folder)
        if os.path.exists(legacy):
            return legacy
    return path


def load_state(source_id, folder):
    """The job's state, None if there is none (see read_state)."""
    return read_state(current_state_path(source_id, folder))


def read_state(path):
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


def write_atomically(path, text, durable, mode=0o644):
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


def save_state(source_id, folder, state):
    """Write the job's state in its state folder; an old-place state file is removed (migrated)."""
    path = os.path.join(trusted_job_state_dir(source_id, folder), STATE_FILE)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    # Not fsynced: the rename keeps it whole, and after a crash the previous run's record is shown.
    write_atomically(path, json.dumps(state, indent=1, sort_keys=True) + "\n", durable=False)
    try:
        os.unlink(legacy_state_path(source_id, folder))
    except FileNotFoundError:
        pass
    return path


def metrics_path(metrics_dir, job):
    return os.path.join(metrics_dir, "btrfs_backup_%s.prom" % job)


def save_metrics(metrics_dir, job, text):
    """Into node_exporter's textfile directory: only *.prom files are read, so the temp file is safe."""
    write_atomically(metrics_path(metrics_dir, job), text, durable=False)
