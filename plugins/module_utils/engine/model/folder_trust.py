# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: whether a folder on the way to the job state may be trusted with a run's files."""

from __future__ import annotations

import stat


def folder_problem(path: str, owner: int, mode: int, euid: int) -> str | None:
    """Why `path` (its lstat owner and mode) lets someone other than the running user decide where
    a run writes its state and lock, or None: it must be owned by root or the running user (a
    symbolic link too: whoever owns it points it), and a folder writable by no one else unless it
    is sticky (then only an entry's owner can replace that entry, as in /tmp)."""
    if owner not in (0, euid):
        return f"{path} is owned by uid {owner}, not by root"
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        return None
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        return f"{path} is writable by {'others' if mode & stat.S_IWOTH else 'its group'} (mode {mode & 0o7777:04o})"
    return None


def folders_to_check(path: str) -> list:
    """Pure: every folder from / down to `path` (absolute, normalised): each can swap the next."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
