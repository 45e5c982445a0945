# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: what ssh_config(5) text says, read as ssh reads it, and whether a run may choose ssh's
cipher order without asking `ssh -G` (a process of ~9 ms before every run's connection).

A run offers AES-GCM first only where nobody chose the ciphers (host/endpoints/ssh.py). When no
config file of the user or the system sets Ciphers and no `--ssh-opt` does, ssh uses its
built-in list, which depends on the ssh program alone: learned once per program, it is known."""

from __future__ import annotations

#: Option names that decide the ciphers or which config ssh reads: given with --ssh-opt, ssh -G
#: is asked (or, for Ciphers itself, the user's order is theirs).
_CONFIG_CHANGING_OPTIONS = ("include", "match", "host")


def directives(text: str) -> list[tuple[str, list[str]]]:
    """(keyword in lower case, its arguments) of each line that says something: `Keyword value`
    or `Keyword=value`; a line whose first character (after blanks) is `#` is a comment, as is
    the rest of a line from an argument that starts with `#`; double quotes group an argument."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, rest = _keyword(line)
        if keyword:
            found.append((keyword.lower(), _arguments(rest)))
    return found


def _keyword(line):
    for index, char in enumerate(line):
        if char in " \t=":
            rest = line[index:].lstrip(" \t")
            if rest.startswith("="):
                rest = rest[1:].lstrip(" \t")
            return line[:index], rest
    return line, ""


def _arguments(rest):
    args, current, quoted, started = [], [], False, False
    for char in rest:
        if char == '"':
            quoted, started = not quoted, True
        elif char in " \t" and not quoted:
            if started:
                args.append("".join(current))
            current, started = [], False
        else:
            if char == "#" and not started and not quoted:
                break
            current.append(char)
            started = True
    if started:
        args.append("".join(current))
    return args


def sets_ciphers(text: str) -> bool:
    """Whether this config text sets Ciphers anywhere (in any Host or Match block)."""
    return any(keyword == "ciphers" for keyword, _args in directives(text))


def includes(text: str) -> list[str]:
    """The patterns of this config text's Include lines, in order."""
    return [pattern for keyword, args in directives(text) if keyword == "include" for pattern in args]


def option_name(option: str) -> str:
    """The lower-case name of an `-o` option, given as `Name=value` or `Name value`."""
    keyword, _rest = _keyword(option.strip())
    return keyword.lower()


def bulk_ciphers_verdict(options, config_sets_ciphers, default_fits) -> bool | None:
    """Whether the run may offer its bulk cipher order (True/False), or None: ask `ssh -G`.
    `options`: the user's --ssh-opt values (theirs come first, and ssh keeps the first value);
    `config_sets_ciphers`: whether a config file of the user or the system sets Ciphers (None:
    it could not be told); `default_fits`: whether this ssh program's built-in list is the one
    the bulk order reorders (None: not known yet)."""
    names = {option_name(option) for option in options}
    if "ciphers" in names:
        return False
    if names.intersection(_CONFIG_CHANGING_OPTIONS) or config_sets_ciphers is not False:
        return None
    return default_fits
