"""Who a job is, decided once: its source id, snapshot folder, name, state and lock paths, metrics file."""

from __future__ import annotations

import collections
import posixpath
import re

from . import names
from .errors import ConfigError

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import Optional

DEFAULT_SNAPSHOT_FOLDER = "snapshot"
STATE_FILE = "last-run.json"
JOB_LOCK_FILE = "lock"
# Where earlier versions kept the state: read once when the new state is missing, then removed.
LEGACY_STATE_FILE_NAME = ".btrfs-backup.last-run.json"
LEGACY_REMOTE_STATE_DIR = "/var/lib/btrfs-backup/state"
# Patterns are kept as text: re compiles each at its first use and keeps it, so start-up pays for none.
_JOB_NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,99}\Z"
_OUTSIDE_NAME_ALPHABET = r"[^A-Za-z0-9_.@-]+"


def _file_name_part(text: str) -> str:
    """`text` in the job name alphabet: other characters become '_', no leading or trailing _ . - @."""
    return re.sub(_OUTSIDE_NAME_ALPHABET, "_", text).strip("_.-@")


def validate_job_name(name: str) -> str:
    """A job name is used in file names and metric labels: a fixed alphabet."""
    if not re.match(_JOB_NAME_RE, name or ""):
        raise ConfigError("job name %r is not allowed: use letters, digits and _ . @ - "
                          "(not starting with . - or @), at most 100 characters" % (name,))
    return name


def default_job_name(source_id: str) -> str:
    """A job's name when none is given: its source, as a file name ('/' is 'root')."""
    path = source_id.rstrip("/").split("/")[-1] if not source_id.startswith("ssh://") else source_id
    name = _file_name_part(path) or "root"
    return name[:100]


def snapshot_folder_path(source_path: str, snapshot_folder: Optional[str]) -> str:
    """The snapshot folder, absolute and normalised: given absolute, or relative to the source's
    path (default 'snapshot'); 'snapshot/', './snapshot' and 'snapshot' are one folder."""
    folder = posixpath.normpath(posixpath.join(source_path, snapshot_folder or DEFAULT_SNAPSHOT_FOLDER))
    # POSIX keeps a leading '//' apart; Linux does not, and one folder must have one id.
    return "/" + folder.lstrip("/") if folder.startswith("//") else folder


def _sha256(data: bytes):
    # Every run names its state folder with this digest: the interpreter's built-in sha256 loads
    # in a fraction of the time hashlib (OpenSSL) takes; both give the same digest.
    try:
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def _digest(source_id: str, folder: str) -> str:
    return _sha256(("%s\0%s" % (source_id, folder)).encode("utf-8")).hexdigest()[:16]


def job_key(source_id: str, folder: str) -> str:
    """The job's state folder name, from its source and snapshot folder: readable, unique."""
    readable = _file_name_part(folder)[-60:].lstrip("_.-@") or "root"
    return "%s-%s" % (readable, _digest(source_id, folder))


def legacy_state_path(source_id: str, folder: str) -> str:
    """Where earlier versions kept the state: in a local snapshot folder, or for a pull job
    under /var/lib/btrfs-backup/state."""
    if source_id.startswith("/"):
        return posixpath.join(folder, LEGACY_STATE_FILE_NAME)
    return posixpath.join(LEGACY_REMOTE_STATE_DIR, "%s.json" % _digest(source_id, folder))


def metrics_file_name(name: str) -> str:
    """The job's file in node_exporter's textfile folder (only *.prom files are read)."""
    return "btrfs_backup_%s.prom" % name


_IDENTITY_FIELDS = (
    "source_id", "snapshot_folder", "name", "prefix", "state_dir", "state_path", "lock_path",
    "legacy_state_path", "metrics_file")


class JobIdentity(collections.namedtuple("JobIdentity", _IDENTITY_FIELDS)):
    """One job, whichever path or spelling named it: the key of its state, lock and metrics.

    The job is its source and snapshot folder (`state_dir`, `state_path`, `lock_path` depend on
    them only); `name` labels its record and metrics; `prefix` names its snapshots."""

    __slots__ = ()

    def named(self, name: Optional[str]) -> JobIdentity:
        """The same job under another name (one given, or the one its runs recorded); None keeps it."""
        if not name or name == self.name:
            return self
        name = validate_job_name(name)
        return self._replace(name=name, metrics_file=metrics_file_name(name))


def job_identity(*, source_id: str, source_path: str, state_root: str,
                 snapshot_folder: Optional[str] = DEFAULT_SNAPSHOT_FOLDER, prefix: str = "",
                 job_name: Optional[str] = None) -> JobIdentity:
    """The identity of the job at `source_path` (already resolved: a symbolic link followed) with
    id `source_id`, its state under `state_root`; ConfigError for a bad name or prefix."""
    folder = snapshot_folder_path(source_path, snapshot_folder)
    name = validate_job_name(job_name) if job_name else default_job_name(source_id)
    state_dir = posixpath.join(state_root, job_key(source_id, folder))
    return JobIdentity(
        source_id=source_id, snapshot_folder=folder, name=name, prefix=names.validate_prefix(prefix or ""),
        state_dir=state_dir, state_path=posixpath.join(state_dir, STATE_FILE),
        lock_path=posixpath.join(state_dir, JOB_LOCK_FILE),
        legacy_state_path=legacy_state_path(source_id, folder), metrics_file=metrics_file_name(name))
