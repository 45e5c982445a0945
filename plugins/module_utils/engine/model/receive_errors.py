# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""btrfs receive's stderr passed on to the client line by line, while its `ERROR:` lines are noted.

btrfs-progs 6.2 prints some errors and still exits 0: with `-m` (serve's tenant confinement), a
clone from a subvolume outside the host's own is skipped with `ERROR: clone: source subvol path
... unreachable from ...`, and the received subvolume looks complete while a file in it is empty.
Its exit status alone cannot tell such a receive from a good one; its stderr can. Only stderr is
read here: the stream itself never passes through Python.
"""

from __future__ import annotations

import threading
TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster
if TYPE_CHECKING:
    from typing import BinaryIO, List

_ERROR_PREFIX = b"ERROR:"
_KEPT_LINES = 20  # enough to say what broke; a stream that makes thousands says no more


def is_error_line(line: bytes) -> bool:
    """Pure: whether a line of btrfs' stderr reports an error (btrfs-progs prefixes them all so)."""
    return line.lstrip().startswith(_ERROR_PREFIX)


def broken_receive_refusal(errors: List[str]) -> str:
    """Pure: why what a receive that printed `errors` but exited 0 made cannot stay."""
    return ("btrfs receive reported an error yet ended with status 0 (%s%s): what it made is not a "
            "whole backup (a crafted or damaged stream)"
            % (errors[0] if errors else "?", "; and %d more" % (len(errors) - 1) if len(errors) > 1 else ""))


class StderrWatch:
    """Copies `pipe` (a child's stderr) to `out` in a thread, keeping the first `ERROR:` lines."""

    def __init__(self, pipe: BinaryIO, out: BinaryIO):
        self.pipe = pipe
        self.out = out
        self.errors: List[str] = []
        self._thread = threading.Thread(target=self._copy, name="receive-stderr", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        for line in iter(self.pipe.readline, b""):
            if is_error_line(line) and len(self.errors) < _KEPT_LINES:
                self.errors.append(line.decode("utf-8", "replace").strip())
            try:
                self.out.write(line)
                self.out.flush()
            except (OSError, ValueError):
                pass  # the client is gone: keep reading, so the child never blocks on its stderr
        self.pipe.close()

    def finish(self) -> List[str]:
        """The `ERROR:` lines, once the child closed its stderr (it has ended)."""
        self._thread.join()
        return self.errors
