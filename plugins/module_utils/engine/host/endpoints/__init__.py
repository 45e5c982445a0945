# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Where commands run: a local path, `ssh://[user@]host[:port]/path`, or a `shell://` stream sink,
one class per kind behind one interface (base.Endpoint); only this package knows the kinds."""

from .base import Endpoint, check_path
from .local import LocalEndpoint
from .location import KINDS, parse_location
from .shell import ShellEndpoint
from .ssh import (BULK_CIPHERS, DEFAULT_SSH_OPTIONS, OPENSSH_DEFAULT_CIPHERS, SshConnections,
                  SshEndpoint, split_batch_output, unreachable, validate_ssh_option)

__all__ = [
    "BULK_CIPHERS", "DEFAULT_SSH_OPTIONS", "KINDS", "OPENSSH_DEFAULT_CIPHERS", "Endpoint",
    "LocalEndpoint", "ShellEndpoint", "SshConnections", "SshEndpoint", "check_path",
    "parse_location", "split_batch_output", "unreachable", "validate_ssh_option",
]
