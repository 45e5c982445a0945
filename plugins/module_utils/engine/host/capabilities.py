# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""What each end of a run's streams can do (zstd, send protocol 2) and whether an ssh destination
is an append-only serve, asked once per host and run; whether a stream's data compresses, sampled once."""

from __future__ import annotations

import re
import threading

from ..model.errors import BackupError, UnreachableError
from ..model.server_mode import APPEND_ONLY, MODE_PROBE, NOT_SERVE, OPEN, RECEIVE_MAKES_FOLDER, parse_features, parse_mode
from .streams import EndTools
from ..model.log import LOG


SEND_STREAM_VERSION = "/sys/fs/btrfs/features/send_stream_version"
PROTO2_PROGS = (6, 0)  # btrfs-progs that send and receive protocol 2 (and encoded writes)


def progs_version(text: str) -> tuple[int, int] | None:
    """Pure: (major, minor) from `btrfs --version` ("btrfs-progs v6.2"), or None."""
    match = re.search(r"btrfs-progs v(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def end_tools_from(btrfs_version: tuple[int, int] | None, zstd_ok: bool,
                   stream_version: int | None = None) -> EndTools:
    """Pure: the EndTools of a host from its probes; a sender also needs the kernel's protocol 2
    (`stream_version` None: that end only receives)."""
    version = progs_version(btrfs_version)
    proto2 = version is not None and version >= PROTO2_PROGS
    if stream_version is not None:
        proto2 = proto2 and stream_version.strip().isdigit() and int(stream_version) >= 2
    return EndTools(zstd=zstd_ok, proto2=proto2)


#: What a source host is asked: its btrfs and zstd, and its kernel's send protocol.
SOURCE_PROBES = ((["btrfs", "--version"], True), (["zstd", "--version"], False), (["cat", SEND_STREAM_VERSION], False))


def source_tools_from(results) -> EndTools:
    """Pure: a source host's EndTools from the results of SOURCE_PROBES, in their order."""
    btrfs, zstd, stream_version = results
    return end_tools_from(btrfs.stdout if btrfs.ok else "", zstd.ok, stream_version.stdout if stream_version.ok else "")


class EndToolsProbe:
    """`probe(endpoint)`: the EndTools of that endpoint (None: this machine), asked once per run.
    A source is also asked for its kernel's send protocol; a destination for its tools and, in
    the same batch, whether it is `btrfs-backup serve` and in which mode (server_mode: a
    restricted server answers these probes and nothing else)."""

    def __init__(self, runner, source=None):
        self.runner = runner
        self.source = source
        self._known = {}
        self._modes = {}  # ssh endpoint id -> server_mode's answer (None: unknown)
        self._features = {}  # ssh endpoint id -> what its serve accepts beyond every serve's shapes
        self._samples = {}
        self._ahead = {}  # source id -> the sample of its subvolume's files in flight (sample_ahead)
        self._ahead_trees = {}  # snapshot path -> the TreeSize its sample's walk found (None: not all of it)
        self._walks = {}  # snapshot path -> its walk (compressibility.walk_subvolume), for its sample and size
        self._walk_lock = threading.Lock()
        self._no_data_sends = {}  # (source id, snapshot path, parent path) -> its --no-data send read
        self._no_data_lock = threading.Lock()
        self.warned_no_zstd = set()  # ends whose missing zstd was already logged

    def sample(self, source, snapshot_path: str, parent_path: str | None = None) -> tuple[str, int, int]:
        """The compressibility sample of the stream of `snapshot_path` (from `parent_path`) at
        `source`, on this machine (compressibility.sample_stream_data), once."""
        key = (source.id, snapshot_path, parent_path)
        ahead = self._ahead.get(source.id) if parent_path is None else None
        if ahead is not None and key not in self._samples:
            self._samples[key], self._ahead_trees[snapshot_path] = ahead.result()
            del self._ahead[source.id]  # only now: tree_size may ask another thread meanwhile
        if key not in self._samples and parent_path is None:
            from .compressibility import sample_walked  # at the first send: start-up time

            self._samples[key] = sample_walked(self._walked(snapshot_path))
        if key not in self._samples:
            from .compressibility import sample_stream_data  # at the first send: start-up time

            no_data = self.no_data_send(source, snapshot_path, parent_path) if parent_path else None
            self._samples[key] = sample_stream_data(snapshot_path, parent_path, no_data.extents if no_data else None)
        return self._samples[key]

    def sample_ahead(self, source, subvolume_path: str) -> None:
        """Start sampling the files of `subvolume_path` at `source` (on this machine) in the
        background: the next full send's sample from `source` is that one (sample). For a subvolume
        about to be snapshotted and sent in full: its files are the snapshot's."""
        from .compressibility import sample_and_size
        from .overlap import InBackground

        self._ahead[source.id] = InBackground(sample_and_size, subvolume_path)

    def tree_size(self, source, path: str):
        """The TreeSize of the subvolume at `path` at `source` (this machine), None when a bounded
        walk cannot meet all of it (compressibility.walk_subvolume): the walk of the sample started
        ahead for that source if there is one (the snapshot of that subvolume holds its files),
        else one now."""
        if path in self._ahead_trees:
            return self._ahead_trees[path]
        ahead = self._ahead.get(source.id)
        if ahead is not None:
            return ahead.result()[1]
        return self._walked(path).tree

    def _walked(self, path: str):
        """The walk of the snapshot at `path` on this machine, once: a full send's sample (in its
        own thread) and its size bound (sending.py) may ask at the same time."""
        with self._walk_lock:
            if path not in self._walks:
                from .compressibility import walk_subvolume  # at the first full send: start-up time

                self._walks[path] = walk_subvolume(path)
            return self._walks[path]

    def estimate(self, source, snapshot_path: str, parent_path: str | None = None) -> int | None:
        """The estimated size of the stream of `snapshot_path` (from `parent_path`) at `source`."""
        no_data = self.no_data_send(source, snapshot_path, parent_path)
        return no_data.estimate if no_data else None

    def no_data_send(self, source, snapshot_path: str, parent_path: str | None = None):
        """The `--no-data` twin of that stream as read once per run (stream_size.read_no_data_send,
        None: it could not be had): the size estimate and the changed data to sample come from
        the same pass. The file ranges are kept only where a sample reads them (an incremental
        here)."""
        key = (source.id, snapshot_path, parent_path)
        with self._no_data_lock:  # the sample may ask from its own thread (overlap.py): one pass still
            if key not in self._no_data_sends:
                from .stream_size import read_no_data_send  # at the first send: start-up time

                keep_extents = parent_path is not None and source.on_this_machine
                self._no_data_sends[key] = read_no_data_send(source, self.runner, snapshot_path, parent_path,
                                                             keep_extents=keep_extents)
            return self._no_data_sends[key]

    def know_no_data_send(self, source, snapshot_path: str, parent_path: str | None, sizer) -> None:
        """The `--no-data` pass of that stream, read in another command (host/gated_send.py):
        no_data_send() answers it (None: it could not be had)."""
        with self._no_data_lock:
            self._no_data_sends[(source.id, snapshot_path, parent_path)] = sizer

    def __call__(self, endpoint):
        remote = endpoint is not None and endpoint.crosses_network
        key = endpoint.id if remote else None
        if key not in self._known:
            self._known[key] = self._ask(endpoint) if remote else self._ask_here()
        return self._known[key]

    def knows(self, endpoint) -> bool:
        """Whether `endpoint`'s tools are known already (asked, or learned from its survey)."""
        return endpoint.id in self._known

    def refused_mode_probe(self, endpoint) -> None:
        """`endpoint` refused a batch with the mode probe in it (a serve from before that probe):
        its tools are asked without it."""
        self._modes[endpoint.id] = None

    def learn(self, endpoint, tools, mode, features=frozenset()) -> None:
        """What a destination's survey (destination_survey.py) said: its tools, serve mode and
        serve's features (server_mode), so that none is asked again in this run."""
        self._known[endpoint.id] = tools
        self._modes[endpoint.id] = mode
        self._features[endpoint.id] = features

    def append_only(self, endpoint) -> bool:
        """Whether `endpoint` said it is `serve --append-only` (asked with its tools, once)."""
        if endpoint is None or not endpoint.crosses_network:
            return False
        self(endpoint)
        return self._modes.get(endpoint.id) == APPEND_ONLY

    def is_serve(self, endpoint) -> bool:
        """Whether `endpoint` said it is `btrfs-backup serve` (a backup server's key), in any mode."""
        if endpoint is None or not endpoint.crosses_network:
            return False
        self(endpoint)
        return self._modes.get(endpoint.id) in (APPEND_ONLY, OPEN)

    def is_plain_host(self, endpoint) -> bool:
        """Whether `endpoint` said it is a plain ssh host, not serve (unknown, as a serve from before
        the mode probe leaves it: not), so that more than the receive may run in its command."""
        if endpoint is None or not endpoint.crosses_network:
            return False
        self(endpoint)
        return self._modes.get(endpoint.id) == NOT_SERVE

    def receive_makes_folder(self, endpoint) -> bool:
        """Whether a receive's own command may create its missing folder there (`mkdir -p -- F &&
        ... btrfs receive F`): at a plain ssh host, or a serve that said it accepts that form (an
        older serve refuses it: its folder gets a mkdir of its own; unknown: the same)."""
        if self.is_plain_host(endpoint):
            return True
        return self.is_serve(endpoint) and RECEIVE_MAKES_FOLDER in self._features.get(endpoint.id, ())

    def _ask_here(self):
        import shutil  # only here: start-up time of every run

        version = self.runner.run(["btrfs", "--version"])
        try:
            with open(SEND_STREAM_VERSION) as handle:
                stream_version = handle.read()
        except OSError:
            stream_version = ""
        return end_tools_from(version.stdout if version.ok else "", shutil.which("zstd") is not None, stream_version)

    def _ask(self, endpoint):
        is_source = self.source is not None and endpoint.id == self.source.id
        commands = [(list(argv), privileged) for argv, privileged in SOURCE_PROBES[:3 if is_source else 2]]
        try:
            asks_mode = not is_source and endpoint.id not in self._modes
            results = self._ask_with_mode(endpoint, commands) if asks_mode \
                else endpoint.run_batch(self.runner, commands)
        except BackupError as err:
            LOG.info("%s: could not ask what it supports (%s); streams to it are plain", endpoint.id, err)
            return EndTools()
        if is_source:
            return source_tools_from(results)
        btrfs, zstd = results
        return end_tools_from(btrfs.stdout if btrfs.ok else "", zstd.ok)

    def _ask_with_mode(self, endpoint, commands):
        """The results of `commands` at a destination, asking in the same batch what it is."""
        try:
            results = endpoint.run_batch(self.runner, commands + [(MODE_PROBE, False)])
        except UnreachableError:
            raise
        except BackupError:
            # A serve from before the mode probe refuses the whole batch: ask it without.
            return endpoint.run_batch(self.runner, commands)
        self._modes[endpoint.id] = parse_mode(results[-1].stdout) if results[-1].ok else None
        self._features[endpoint.id] = parse_features(results[0].stdout)  # serve's line after btrfs's version
        return results[:-1]
