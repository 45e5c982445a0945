# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Take one of a backup server's receive slots: a flock on a slot file, released by the kernel when its holder ends.

A slot is held through an open file: when serve ends (done, killed, its ssh connection cut) the
kernel drops the lock, so no slot is ever leaked. The file is opened close-on-exec, so the
programs serve starts (btrfs receive, zstd) never hold it on after serve is gone.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import fcntl
import os
import time

from ..model.receive_slots import retry_delay, slot_files

if TYPE_CHECKING:
    from typing import Callable


class NoSlot(Exception):
    """No receive slot came free in time; `busy` is how many slots were taken."""

    def __init__(self, busy: int):
        super().__init__("no receive slot came free")
        self.busy = busy


class SenderGone(Exception):
    """The source hung up while its receive waited for a slot: nothing is left to receive."""


def hung_up(fd: int) -> bool:
    """Whether nobody reads `fd` any more (serve's stdout: sshd's pipe to the source, closed when
    the source's connection ended), so a source killed while waiting gives up its place. Not
    stdin: a small stream may have been sent whole, and its end closed, before a slot came free."""
    import select  # only here: waiting for a slot is rare

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(event & (select.POLLHUP | select.POLLERR) for _fd, event in events)


def _try_slots(folder: str, count: int) -> int | None:
    """An open descriptor holding a free slot, or None when all `count` are taken."""
    for name in slot_files(count):
        fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
        except BaseException:
            os.close(fd)
            raise
    return None


def take_slot(folder: str, count: int, wait: float, on_wait: Callable[[int], None],
              gone: Callable[[], bool] = lambda: False,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
              ) -> tuple[int, float]:
    """(the descriptor that holds a slot: close it to free the slot, seconds waited for it).
    `on_wait(busy)` is called once if every slot is taken; NoSlot after `wait` seconds,
    SenderGone as soon as `gone()` says the source hung up."""
    os.makedirs(folder, 0o700, exist_ok=True)
    started = clock()
    tries = 0
    while True:
        fd = _try_slots(folder, count)
        if fd is not None:
            return fd, (clock() - started) if tries else 0.0
        tries += 1
        if tries == 1:
            on_wait(count)
        left = started + wait - clock()
        if left <= 0:
            raise NoSlot(count)
        if gone():
            raise SenderGone()
        sleep(min(retry_delay(tries), left))
