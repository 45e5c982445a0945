# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""One run at a time per job: an flock(2) held for the whole run (rule 5)."""

import fcntl
import os

from .errors import BackupError, JobBusyError

JOB_LOCK_NAME = ".btrfs-backup.lock"


def lock_path_for_remote(source_id, folder):
    """A local lock file for a job whose snapshot folder is on another host (pull mode)."""
    import hashlib  # pull jobs only; every run pays for module-level imports
    import tempfile
    base = "/run/lock" if os.access("/run/lock", os.W_OK) else tempfile.gettempdir()
    digest = hashlib.sha256(("%s\0%s" % (source_id, folder)).encode("utf-8")).hexdigest()[:16]
    return os.path.join(base, "btrfs-backup-%s.lock" % digest)


class JobLock:
    """Context manager: take the lock without waiting, or raise JobBusyError naming the holder."""

    def __init__(self, path):
        self.path = path
        self._fd = None

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise BackupError("cannot open the job lock %s: %s" % (self.path, err.strerror))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise JobBusyError("another run of this job is in progress (pid %s holds %s)" % (
                holder, self.path))
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return False
