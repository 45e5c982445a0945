# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A job's stream settings, checked (pure): what host/streams.py builds a send's processes from."""

from __future__ import annotations

from .compression import parse_compress
from .errors import ConfigError
from .resumable import parse_chunk_size, parse_mode
from .units import parse_size


class StreamOptions:
    """The user's stream settings: `compress` ("auto", "none", "zstd" or "zstd:N"), `limit_rate`
    (bytes per second, each destination), `buffer` (bytes, before each receiver), `send_protocol`
    ("auto", "1" or "2"), `btrfs_debug` (-vv), `resumable` ("auto", "always", "never") and
    `resumable_chunk_size` (a size); sizes and levels are checked here (rule 7)."""

    __slots__ = ("compress_level", "compress_explicit", "limit_rate", "buffer", "send_protocol", "btrfs_debug",
                 "resumable", "chunk_size")

    def __init__(self, compress="auto", limit_rate=None, buffer=None, send_protocol="auto", btrfs_debug=False,
                 resumable="auto", resumable_chunk_size="16M"):
        self.resumable = parse_mode(resumable)
        self.chunk_size = parse_chunk_size(resumable_chunk_size)
        self.compress_level, self.compress_explicit = parse_compress(compress)
        self.limit_rate = parse_size(limit_rate, "limit_rate") if limit_rate not in (None, "") else None
        self.buffer = parse_size(buffer, "buffer") if buffer not in (None, "") else None
        if str(send_protocol) not in ("auto", "1", "2"):
            raise ConfigError("send_protocol must be auto, 1 or 2, not %r" % (send_protocol,))
        self.send_protocol = str(send_protocol)
        self.btrfs_debug = btrfs_debug
