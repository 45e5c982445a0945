# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Every kind of endpoint by the URL scheme that names it, and the parser of a location."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import re

from ...model.errors import ConfigError
from .local import LocalEndpoint
from .shell import ShellEndpoint
from .ssh import SshEndpoint

if TYPE_CHECKING:
    from typing import Iterable
    from .base import Endpoint

#: The kinds a location names with a scheme (`scheme://...`); anything else is a local path.
KINDS = {
    "ssh": SshEndpoint,
    "shell": ShellEndpoint,
}

_SCHEME_RE = r"^[A-Za-z][A-Za-z0-9+.-]*://"


def parse_location(spec: str, ssh_options: Iterable[str] = (), ssh_sudo: bool = False,
                   allow_shell: bool = True) -> Endpoint:
    """Turn a command-line location (path, ssh:// URL, shell:// command) into an Endpoint;
    `allow_shell` False: a source, which only a kind with a folder can be."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError("empty location")
    scheme, sep, _rest = spec.partition("://")
    kind = KINDS.get(scheme) if sep else None
    if kind is not None:
        return kind.from_location(spec, ssh_options=ssh_options, ssh_sudo=ssh_sudo,
                                  as_source=not allow_shell)
    if sep and re.match(_SCHEME_RE, spec):
        raise ConfigError("%r: unknown scheme (use a path, %s)"
                          % (spec, " or ".join("%s://" % name for name in KINDS)))
    return LocalEndpoint.from_location(spec)
