# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Every kind of endpoint by the URL scheme that names it, and the parser of a location."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import re

from ...model import archives
from ...model.errors import ConfigError
from .local import LocalEndpoint

if TYPE_CHECKING:
    from typing import Iterable
    from .base import Endpoint

#: The schemes that name a kind of endpoint (`scheme://...`); anything else is a local path.
SCHEMES = ("ssh", "shell")


def endpoint_class(scheme: str):
    """The endpoint class a scheme of SCHEMES names, or None; imported only then: a run whose
    ends are all local paths loads neither (start-up time of every run)."""
    if scheme == "ssh":
        from .ssh import SshEndpoint
        return SshEndpoint
    if scheme == "shell":
        from .shell import ShellEndpoint
        return ShellEndpoint
    return None


_SCHEME_RE = r"^[A-Za-z][A-Za-z0-9+.-]*://"


#: The archive stores' endpoint classes (host/endpoints/archive.py), by the prefix that names them
#: (`borg:PATH`, `restic:REPOSITORY`: no `//`).
ARCHIVE_KINDS = {
    archives.BORG_SSH: "BorgEndpoint",
    archives.BORG: "BorgEndpoint",
    archives.RESTIC: "ResticEndpoint",
}


def parse_location(spec: str, ssh_options: Iterable[str] = (), ssh_sudo: bool = False,
                   allow_shell: bool = True, archive=None) -> Endpoint:
    """Turn a command-line location (path, ssh:// URL, shell:// command, borg or restic
    repository) into an Endpoint; `allow_shell` False: a source, which only a kind with a folder
    can be; `archive`: the job's ArchiveSettings, which an archive store is given."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError("empty location")
    for prefix, class_name in ARCHIVE_KINDS.items():
        if spec.startswith(prefix):
            from . import archive as archive_stores  # only where a job has one: every other run starts faster
            store = getattr(archive_stores, class_name)
            return store.from_location(spec, ssh_options=ssh_options, as_source=not allow_shell, archive=archive)
    scheme, sep, _rest = spec.partition("://")
    kind = endpoint_class(scheme) if sep else None
    if kind is not None:
        return kind.from_location(spec, ssh_options=ssh_options, ssh_sudo=ssh_sudo,
                                  as_source=not allow_shell)
    if sep and re.match(_SCHEME_RE, spec):
        raise ConfigError("%r: unknown scheme (use a path, %s, borg:PATH, borg+ssh:// or restic:REPOSITORY)"
                          % (spec, ", ".join("%s://" % name for name in SCHEMES)))
    return LocalEndpoint.from_location(spec)
