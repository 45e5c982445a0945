"""The compressibility sample behind `--compress auto` (real files in a temp dir)."""

import os
import random

import pytest

from engine.host.compressibility import INCOMPRESSIBLE, looks_compressible, sample_ratio


@pytest.mark.parametrize("ratio, verdict", [
    (None, None), (0.3, True), (INCOMPRESSIBLE - 0.01, True), (INCOMPRESSIBLE, False), (1.01, False),
])
def test_looks_compressible(ratio, verdict):
    assert looks_compressible(ratio) is verdict


def text(size, seed):
    rng = random.Random(seed)
    words = "snapshot stream backup receive chain parent lock host".split()
    out = []
    while sum(map(len, out)) < size:
        out.append(" ".join(rng.choice(words) for _ in range(10)) + "\n")
    return "".join(out).encode()


def fill(root, make, sizes):
    for number, size in enumerate(sizes):
        folder = root / ("d%d" % (number % 3))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ("f%d" % number)).write_bytes(make(size, number))


@pytest.mark.parametrize("make, sizes, compressible", [
    (text, [300 * 1024] * 10 + [3000] * 50, True),
    (lambda size, seed: os.urandom(size), [300 * 1024] * 10 + [3000] * 50, False),
    # Media files (incompressible) dominate: a few text files do not make it worth it.
    (lambda size, seed: text(size, seed) if seed < 2 else os.urandom(size), [400 * 1024] * 30, False),
])
def test_the_sample_tells_text_from_random(tmp_path, make, sizes, compressible):
    fill(tmp_path, make, sizes)
    assert looks_compressible(sample_ratio(str(tmp_path))) is compressible


def test_too_little_data_is_no_verdict(tmp_path):
    (tmp_path / "tiny").write_bytes(os.urandom(1000))
    assert sample_ratio(str(tmp_path)) is None
    assert sample_ratio(str(tmp_path / "missing")) is None
