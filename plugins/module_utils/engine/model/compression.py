# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: the compress setting (auto, none, zstd or zstd:LEVEL) as a stream reads it."""

from __future__ import annotations

from .errors import ConfigError

ZSTD = "zstd"
DEFAULT_LEVEL = 3  # measured: on 2 cores zstd -3 -T0 keeps up with ~1 GB/s of incompressible data
COMPRESS_CHOICES = "auto, none, zstd or zstd:LEVEL (1-19)"


def parse_compress(value: str | None) -> tuple[int | None, bool]:
    """(zstd level or None, whether the user asked for zstd by name); ConfigError if unknown."""
    text = str(value if value is not None else "auto").strip().lower()
    if text == "auto":
        return DEFAULT_LEVEL, False
    if text in ("none", "no", "off"):
        return None, False
    if text == ZSTD:
        return DEFAULT_LEVEL, True
    if text.startswith(ZSTD + ":"):
        level = text[len(ZSTD) + 1:]
        if level.isdigit() and 1 <= int(level) <= 19:
            return int(level), True
    raise ConfigError("compress must be %s, not %r" % (COMPRESS_CHOICES, value))


# `auto`: a sample that zlib's fastest level cannot shrink by 10 % is not worth zstd's CPU at both
# ends (on a fast link compressing such data is slower than sending it as it is).
INCOMPRESSIBLE = 0.9
MIN_SAMPLE = 64 * 1024  # bytes: less is no evidence either way


def judge_sample(what: str, sampled: int, packed: int) -> tuple[bool | None, str]:
    """Pure: whether `auto` compresses a stream, from a sample of the data it carries: `sampled`
    bytes that zlib -1 packed into `packed`; `what` says what was sampled ("the changed data of
    the incremental", ...). (True/False, or None when the sample is too small to judge: then the
    stream is compressed as it always was; it carries little file data), and the log line's reason."""
    if sampled < MIN_SAMPLE:
        return None, (f"{what}: too little data to judge ({_kib(sampled)} sampled); "
                      f"compressed as auto does by default")
    ratio = packed / float(sampled)
    if ratio >= INCOMPRESSIBLE:
        return False, f"{what} does not compress (zlib ratio {ratio:.2f} over {_kib(sampled)}): sent uncompressed"
    return True, f"{what} compresses (zlib ratio {ratio:.2f} over {_kib(sampled)}): sent with zstd"


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"
