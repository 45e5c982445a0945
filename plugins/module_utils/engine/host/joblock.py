# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""One run at a time per job: an flock(2) on a file in the job's state folder, held for the whole run (rule 5)."""

from __future__ import annotations

import fcntl
import os
import time

from ..model.errors import BackupError, JobBusyError
from ..model.log import LOG

#: How often a waiting run tries the lock again (seconds).
POLL_SECONDS = 0.5


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
    """Context manager: take the lock, waiting up to `wait` seconds (--wait) for a running run of
    job `job` to end, or raise JobBusyError naming the holder (and how long this run waited)."""

    def __init__(self, path, wait: float = 0, job: str = "this job"):
        self.path = path
        self.wait = wait
        self.job = job
        self._fd = None

    def __enter__(self):
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise BackupError("cannot open the job lock %s: %s" % (self.path, err.strerror))
        started = time.monotonic()
        deadline = started + self.wait
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                now = time.monotonic()
                if now >= deadline:
                    os.close(fd)
                    waited = " after waiting %ds for it" % round(now - started) if self.wait else ""
                    raise JobBusyError("another run of this job is in progress (pid %s holds %s)%s" % (
                        holder, self.path, waited))
                if not said:  # once: a timer's journal should not fill with it
                    LOG.info("waiting for the running run of %s (pid %s), at most %ds", self.job, holder,
                             round(self.wait))
                    said = True
                time.sleep(min(POLL_SECONDS, deadline - now))
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return False


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file ("unknown" before it wrote it)."""
    return os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
