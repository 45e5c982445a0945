# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""What each end of a run's streams can do (zstd, send protocol 2), asked once per host and run."""

import logging
import re

from .errors import BackupError
from .streams import Ends

LOG = logging.getLogger("btrfs_backup")

SEND_STREAM_VERSION = "/sys/fs/btrfs/features/send_stream_version"
PROTO2_PROGS = (6, 0)  # btrfs-progs that send and receive protocol 2 (and encoded writes)


def progs_version(text):
    """Pure: (major, minor) from `btrfs --version` ("btrfs-progs v6.2"), or None."""
    match = re.search(r"btrfs-progs v(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def ends_from(btrfs_version, zstd_ok, stream_version=None):
    """Pure: the Ends of a host from its probes; a sender also needs the kernel's protocol 2
    (`stream_version` None: that end only receives)."""
    version = progs_version(btrfs_version)
    proto2 = version is not None and version >= PROTO2_PROGS
    if stream_version is not None:
        proto2 = proto2 and stream_version.strip().isdigit() and int(stream_version) >= 2
    return Ends(zstd=zstd_ok, proto2=proto2)


class EndsProbe:
    """`probe(endpoint)`: the Ends of that endpoint (None: this machine), asked once per run.
    A source is also asked for its kernel's send protocol; a destination only for its tools
    (a restricted server answers the version probes and nothing else)."""

    def __init__(self, runner, source=None):
        self.runner = runner
        self.source = source
        self._known = {}
        self.told = set()  # ends whose missing zstd was already logged

    def __call__(self, endpoint):
        remote = endpoint is not None and endpoint.kind == "ssh"
        key = endpoint.id if remote else None
        if key not in self._known:
            self._known[key] = self._ask(endpoint) if remote else self._ask_here()
        return self._known[key]

    def _ask_here(self):
        import shutil  # only here: start-up time of every run

        version = self.runner.run(["btrfs", "--version"])
        try:
            with open(SEND_STREAM_VERSION) as handle:
                stream_version = handle.read()
        except OSError:
            stream_version = ""
        return ends_from(version.stdout if version.ok else "", shutil.which("zstd") is not None, stream_version)

    def _ask(self, endpoint):
        commands = [(["btrfs", "--version"], True), (["zstd", "--version"], False)]
        is_source = self.source is not None and endpoint.id == self.source.id
        if is_source:
            commands.append((["cat", SEND_STREAM_VERSION], False))
        try:
            results = endpoint.run_batch(self.runner, commands)
        except BackupError as err:
            LOG.info("%s: could not ask what it supports (%s); streams to it are plain", endpoint.id, err)
            return Ends()
        btrfs, zstd = results[0], results[1]
        stream_version = (results[2].stdout if results[2].ok else "") if is_source else None
        return ends_from(btrfs.stdout if btrfs.ok else "", zstd.ok, stream_version)
