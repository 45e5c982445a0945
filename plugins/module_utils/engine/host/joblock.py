# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""One run at a time per job: an flock(2) on a file in the job's state folder, held for the whole run (rule 5)."""

from __future__ import annotations

import fcntl
import os

from ..model.errors import BackupError, JobBusyError


def remove_legacy_lock(path: str) -> None:
    """Remove the job lock that earlier versions kept in the snapshot folder (it was in every
    snapshot); a run of such a version that still holds it makes this run wait its turn."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as err:
        raise BackupError("cannot open the old job lock %s: %s" % (path, err.strerror))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JobBusyError("another run of this job is in progress (it holds %s)" % path)
    else:
        os.unlink(path)
    finally:
        os.close(fd)


class JobLock:
    """Context manager: take the lock without waiting, or raise JobBusyError naming the holder."""

    def __init__(self, path):
        self.path = path
        self._fd = None

    def __enter__(self):
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
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
