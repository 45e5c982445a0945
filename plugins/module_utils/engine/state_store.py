"""Effects: where a job's last-run state lives, reading it defensively, writing it and its metrics atomically."""

import json
import os
import re

from .errors import ConfigError

STATE_FILE_NAME = ".btrfs-backup.last-run.json"
# Jobs whose snapshot folder is on another host (pull mode) keep their state on this host.
REMOTE_STATE_DIR = "/var/lib/btrfs-backup/state"
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


def state_path(source_id, folder):
    """Beside the job lock in a local snapshot folder; under REMOTE_STATE_DIR for a remote one."""
    if source_id.startswith("/"):
        return os.path.join(folder, STATE_FILE_NAME)
    import hashlib  # pull jobs only
    digest = hashlib.sha256(("%s\0%s" % (source_id, folder)).encode("utf-8")).hexdigest()[:16]
    return os.path.join(REMOTE_STATE_DIR, "%s.json" % digest)


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


def save_state(path, state):
    """Write the state; a missing snapshot folder is not created (the run could not start there)."""
    folder = os.path.dirname(path)
    if folder == REMOTE_STATE_DIR:
        os.makedirs(folder, exist_ok=True)
    elif not os.path.isdir(folder):
        return False
    # Not fsynced: the rename keeps it whole, and after a crash the previous run's record is shown.
    write_atomically(path, json.dumps(state, indent=1, sort_keys=True) + "\n", durable=False)
    return True


def metrics_path(metrics_dir, job):
    return os.path.join(metrics_dir, "btrfs_backup_%s.prom" % job)


def save_metrics(metrics_dir, job, text):
    """Into node_exporter's textfile directory: only *.prom files are read, so the temp file is safe."""
    write_atomically(metrics_path(metrics_dir, job), text, durable=False)
