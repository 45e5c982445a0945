# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""`@argfile` expansion as btrfs-backup 0.3 defines it: one flag, `--opt value` or argument per line."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os

from ..model.errors import ConfigError

if TYPE_CHECKING:
    from typing import Callable, Iterable


def split_line(line: str) -> list[str]:
    """One argfile line to argv items: comments and blank lines vanish, indentation is ignored,
    an option line splits once at the first whitespace, anything else is one argument."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return []
    if stripped.startswith("-"):
        return stripped.split(None, 1)
    return [stripped]


def _read_text(path):
    with open(path, "r") as handle:
        return handle.read()


def expand_argfiles(args: Iterable[str], read_text: Callable[[str], str] = _read_text, _chain=()) -> list[str]:
    """Replace every `@file` with the arguments it holds, recursively.

    Nested includes are relative to the including file's folder; an include loop is an error
    that shows the chain of files.
    """
    expanded = []
    for arg in args:
        if not arg.startswith("@") or len(arg) == 1:
            expanded.append(arg)
            continue
        path = os.path.normpath(os.path.abspath(arg[1:]) if not _chain else arg[1:])
        if path in _chain:
            raise ConfigError("argument file include loop: %s" % " -> ".join(list(_chain) + [path]))
        try:
            text = read_text(path)
        except OSError as err:
            raise ConfigError("cannot read argument file %s: %s" % (path, err.strerror or err))
        except UnicodeDecodeError:
            raise ConfigError("argument file %s is not a text file" % path)
        nested = []
        for line in text.splitlines():
            for item in split_line(line):
                if item.startswith("@") and len(item) > 1:
                    item = "@" + os.path.normpath(os.path.join(os.path.dirname(path), item[1:]))
                nested.append(item)
        expanded.extend(expand_argfiles(nested, read_text, tuple(_chain) + (path,)))
    return expanded
