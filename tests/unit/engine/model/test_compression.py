"""compression.judge_sample: what `--compress auto` decides from a sample of the data a stream carries."""

import math

import pytest

from engine.model.compression import INCOMPRESSIBLE, MIN_SAMPLE, judge_sample

KIB = 1024

# (sampled bytes, packed bytes, verdict, words the log line must hold)
CASES = [
    # text, logs, databases: zstd pays on any link slower than it compresses
    (2048 * KIB, 512 * KIB, True, "compresses (zlib ratio 0.25 over 2048 KiB): sent with zstd"),
    (2048 * KIB, int(2048 * KIB * (INCOMPRESSIBLE - 0.01)), True, "compresses (zlib ratio 0.89"),
    # media, archives, random data: zstd would only cost CPU at both ends
    (2048 * KIB, math.ceil(2048 * KIB * INCOMPRESSIBLE), False, "does not compress (zlib ratio 0.90"),
    (2048 * KIB, 2049 * KIB, False, "does not compress (zlib ratio 1.00 over 2048 KiB): sent uncompressed"),
    (MIN_SAMPLE, MIN_SAMPLE + 10, False, "over 64 KiB"),
    # a metadata-only incremental, a tiny change: no evidence, compressed as auto always did
    (MIN_SAMPLE - 1, MIN_SAMPLE, None, "too little data to judge (64 KiB sampled)"),
    (0, 0, None, "too little data to judge (0 KiB sampled)"),
]


@pytest.mark.parametrize("sampled, packed, verdict, words", CASES)
def test_the_sample_decides(sampled, packed, verdict, words):
    compress, reason = judge_sample("the incremental's changed data", sampled, packed)
    assert compress is verdict
    assert reason.startswith("the incremental's changed data")
    assert words in reason
