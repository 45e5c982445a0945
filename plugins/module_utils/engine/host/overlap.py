# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Local work done while the run waits for other work: one thread, whose result (or exception) is handed back."""

from __future__ import annotations

import threading


class InBackground:
    """`work(*args)` started in a thread at once; `result()` waits for it and returns what it
    returned, or raises what it raised. Only for work whose result cannot change what the run
    does meanwhile (it is read when needed, never earlier)."""

    def __init__(self, work, *args):
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(work, args), name="btrfs-backup-overlap", daemon=True)
        self._thread.start()

    def _run(self, work, args):
        try:
            self._value = work(*args)
        # Whatever the work raised is raised again by result(), in its caller's thread.
        except BaseException as err:  # pylint: disable=broad-except
            self._error = err

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
