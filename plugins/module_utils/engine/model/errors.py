# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Exceptions the engine raises; each message is meant to be shown to a user as is."""


class BackupError(Exception):
    """Base class of every error the engine reports to its caller."""


class ConfigError(BackupError):
    """Bad input: a path, URL, name or number that cannot be used (nothing was changed)."""


class EndpointError(BackupError):
    """An endpoint could not be reached or is not usable (not btrfs, not a subvolume, ...)."""


class UnreachableError(EndpointError):
    """An ssh host could not be reached (refused, silent, no route, authentication): it may
    come back, unlike a path that is missing or not on btrfs."""


class NotBtrfsError(EndpointError):
    """A path is not on a btrfs filesystem (`fstype` names the one it is on)."""

    def __init__(self, path, fstype):
        super().__init__("%s is not on a btrfs filesystem (it is on %s)" % (path, fstype or "an unknown filesystem"))
        self.path = path
        self.fstype = fstype


class MissingPathError(EndpointError):
    """One or more paths do not exist at an endpoint."""

    def __init__(self, paths):
        verb = "does not exist" if len(paths) == 1 else "do not exist"
        super().__init__("%s %s" % (" and ".join(paths), verb))
        self.paths = list(paths)


class CommandError(BackupError):
    """A command failed; carries its argv, exit status and stderr."""

    def __init__(self, message, argv=None, returncode=None, stderr=""):
        detail = (stderr or "").strip()
        if detail:
            message = "%s: %s" % (message, detail.splitlines()[-1])
        super().__init__(message)
        self.argv = list(argv or [])
        self.returncode = returncode
        self.stderr = stderr or ""


class LockFileError(BackupError):
    """The .outstanding_transfers file is unreadable or corrupt (never silently reset)."""


class JobBusyError(BackupError):
    """Another run of the same job holds the job lock."""


class TransferError(BackupError):
    """A send/receive pipeline failed or its result did not verify."""

    detail = None  # the failure itself, without the "sending ... failed" around it
    partial_receive_deleted = None  # what the failed receive left, if it was deleted at once
