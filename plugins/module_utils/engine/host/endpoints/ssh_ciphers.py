# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Effects for model/ssh_config.py's verdict: whether this user's or the system's ssh config
files set Ciphers (read as ssh reads them, Include lines followed), and, per ssh program, whether
its built-in cipher list is the one the bulk order reorders, remembered in the state folder
(ssh-programs.json) once `ssh -G` told it. A program that changed (size, time, inode) is asked again."""

from __future__ import annotations

import json
import os

from ...model import ssh_config
from ..state_store import state_root, write_atomically

SYSTEM_CONFIG = "/etc/ssh/ssh_config"
MEMO_NAME = "ssh-programs.json"
MAX_INCLUDE_DEPTH = 16  # ssh's own limit
MAX_PROGRAMS = 16  # entries the memo keeps (a machine has one or two ssh programs)


class _CannotTell(Exception):
    """A config file that cannot be read, or an Include that cannot be followed as ssh would."""


def config_sets_ciphers(home: str | None = None, system_config: str = SYSTEM_CONFIG) -> bool | None:
    """Whether ~/.ssh/config or the system's config (or a file either includes) sets Ciphers;
    None when that cannot be told. `home`: the user's home as ssh takes it (from the password
    database, not $HOME)."""
    if home is None:
        import pwd
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            return None
    user_folder = os.path.join(home, ".ssh")
    try:
        return (_sets(os.path.join(user_folder, "config"), user_folder, home, 0)
                or _sets(system_config, os.path.dirname(system_config), None, 0))
    except _CannotTell:
        return None


def _sets(path, folder, home, depth):
    """Whether the config file at `path` or one it includes sets Ciphers. `folder`: where its
    relative Include patterns start (~/.ssh for the user's files, /etc/ssh for the system's);
    `home`: for `~` in the user's patterns (None: the system's, where ssh does not expand it)."""
    if depth > MAX_INCLUDE_DEPTH:
        raise _CannotTell
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return False  # ssh reads no such file either
    except OSError as err:
        raise _CannotTell from err
    if ssh_config.sets_ciphers(text):
        return True
    for pattern in ssh_config.includes(text):
        for included in _included(pattern, folder, home):
            if _sets(included, folder, home, depth + 1):
                return True
    return False


def _included(pattern, folder, home):
    if "%" in pattern or "$" in pattern:
        raise _CannotTell  # tokens and environment variables: ssh -G knows what they become
    if pattern.startswith("~"):
        if home is None or not (pattern == "~" or pattern.startswith("~/")):
            raise _CannotTell
        pattern = home + pattern[1:]
    elif not pattern.startswith("/"):
        pattern = os.path.join(folder, pattern)
    if not _wildcard(pattern):
        return [pattern]
    folder, name = os.path.split(pattern)
    if _wildcard(folder):
        import glob  # wildcards in folders too: rare enough to pay for glob's import
        return sorted(glob.glob(pattern))
    # The usual case (Debian's /etc/ssh/ssh_config.d/*.conf): the folder's names, as glob(3)
    # matches them (a name starting with a dot only by a pattern that does).
    import fnmatch
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise _CannotTell from err
    return [os.path.join(folder, found) for found in sorted(names)
            if fnmatch.fnmatchcase(found, name) and (name.startswith(".") or not found.startswith("."))]


def _wildcard(text):
    return any(char in text for char in "*?[")


def program_path(name: str) -> str | None:
    """The file that running `name` starts (PATH searched as exec does), or None."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(folder or ".", name) for folder in os.environ.get("PATH", os.defpath).split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return None


def _identity(path):
    facts = os.stat(path)
    return [facts.st_size, facts.st_mtime_ns, facts.st_ino]


def _memo_path():
    return os.path.join(state_root(), MEMO_NAME)


def _read_memo(path):
    """The memo's entries, or {} when it is missing, not this user's, or not readable as one."""
    try:
        with open(path, encoding="utf-8") as handle:
            if os.fstat(handle.fileno()).st_uid != os.geteuid():
                return {}
            memo = json.load(handle)
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def known_default_fits(program: str) -> bool | None:
    """What `ssh -G` told of `program`'s built-in cipher list (see model/ssh_config.py), if it
    told it of this very program; None otherwise."""
    entry = _read_memo(_memo_path()).get(program)
    try:
        if isinstance(entry, dict) and entry.get("identity") == _identity(program):
            fits = entry.get("default_fits")
            return fits if isinstance(fits, bool) else None
    except OSError:
        pass
    return None


def remember_default_fits(program: str, fits: bool) -> None:
    """Keep what `ssh -G` told of `program`, when the state folder exists and can be written: a
    memo that cannot be kept only costs the next run the same question."""
    path = _memo_path()
    if not os.path.isdir(os.path.dirname(path)):
        return
    try:
        memo = _read_memo(path)
        memo[program] = {"identity": _identity(program), "default_fits": fits}
        kept = dict(list(memo.items())[-MAX_PROGRAMS:])
        write_atomically(path, json.dumps(kept, indent=1, sort_keys=True) + "\n", durable=False)
    except OSError:
        pass
