"""The compressibility samples behind `--compress auto` (real files in a temp dir)."""

import os
import random

import pytest

from engine.host import compressibility
from engine.host.compressibility import (FIRST_LOOK_PIECE, FIRST_LOOK_PLACES, PIECE, SAMPLE_BUDGET, SIZE_WALK_LIMIT, WALK_LIMIT, TreeSize, sample_and_size,
                                         sample_extents, sample_places, sample_snapshot, walk_subvolume)
from engine.model.compression import judge_sample


def tree_size(root):
    """The TreeSize a walk of `root` found (None: not all of it)."""
    return walk_subvolume(root).tree


def verdict(sample):
    return judge_sample("the data", *sample)[0]


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
    assert verdict(sample_snapshot(str(tmp_path))) is compressible


def test_too_little_data_is_no_verdict(tmp_path):
    (tmp_path / "tiny").write_bytes(os.urandom(1000))
    assert verdict(sample_snapshot(str(tmp_path))) is None
    assert sample_snapshot(str(tmp_path / "missing"))[0] == 0


MIB = 1024 * 1024


def prose(size, seed):
    """`size` bytes of log-like lines (compress well), made fast."""
    lines = b"".join(b"%08d snapshot %d sent to backup host %d\n" % (n, n * seed % 97, n % 13) for n in range(size // 30 + 1))
    return lines[:size]


# (extents as (path, offset, size), places read)
PLACES = [
    ([], []),
    ([("a", 0, 0)], []),
    # all of it fits the budget: every range as it is
    ([("a", 0, 100), ("b", 4096, 200)], [("a", 0, 100), ("b", 4096, 200)]),
    # in pieces, every fourth first: a sample stopped early still spans all of it
    ([("a", 0, 5 * PIECE)], [("a", 0, PIECE), ("a", 4 * PIECE, PIECE), ("a", PIECE, PIECE),
                             ("a", 2 * PIECE, PIECE), ("a", 3 * PIECE, PIECE)]),
]


@pytest.mark.parametrize("extents, places", PLACES)
def test_small_changes_are_read_whole(extents, places):
    assert sample_places(extents) == places


def test_large_changes_are_read_in_pieces_spread_over_all_of_them():
    # One large file first, then many small ones: each gets its share, not the first alone.
    extents = [("big", 0, 64 * MIB)] + [("small%d" % n, 0, 128 * 1024) for n in range(512)]
    places = sample_places(extents)
    assert len(places) == SAMPLE_BUDGET // PIECE
    assert sum(length for _path, _offset, length in places) <= SAMPLE_BUDGET
    assert {path for path, _offset, _length in places} & {"big"} and len({p for p, _o, _l in places}) > 10
    for path, offset, length in places:
        size = 64 * MIB if path == "big" else 128 * 1024
        assert 0 <= offset and offset + length <= size


@pytest.mark.parametrize("random_file, compressible", [("changed", False), ("unchanged", True)])
def test_the_extents_sample_reads_only_the_changed_ranges(tmp_path, random_file, compressible):
    # A snapshot where one file is random and one is text: the sample says what the changes hold.
    (tmp_path / random_file).write_bytes(os.urandom(2 * MIB))
    other = "unchanged" if random_file == "changed" else "changed"
    (tmp_path / other).write_bytes(prose(2 * MIB, 1))
    sample = sample_extents(str(tmp_path), [("changed", 0, 2 * MIB)])
    assert sample[0] == (FIRST_LOOK if random_file == "changed" else SAMPLE_BUDGET)
    assert verdict(sample) is compressible


FIRST_LOOK = FIRST_LOOK_PIECE * FIRST_LOOK_PLACES


def test_random_data_is_read_only_until_it_plainly_does_not_compress(tmp_path):
    (tmp_path / "media").write_bytes(os.urandom(4 * MIB))
    read, _packed = sample_extents(str(tmp_path), [("media", 0, 4 * MIB)])
    assert read == FIRST_LOOK
    read, _packed = sample_snapshot(str(tmp_path))
    assert read < SAMPLE_BUDGET


def test_the_first_look_spans_the_stream(tmp_path):
    """Random data at the start of the changes and text after it: the first look's places are
    spread over all of them, so it is not taken for plainly incompressible."""
    (tmp_path / "a").write_bytes(os.urandom(MIB) + prose(3 * MIB, 3))
    sample = sample_extents(str(tmp_path), [("a", 0, 4 * MIB)])
    assert sample[0] == SAMPLE_BUDGET and verdict(sample) is True


def test_repeated_random_blocks_compress_though_each_byte_looks_random(tmp_path):
    """The first look compresses (zlib finds the repeats), it does not count byte frequencies:
    a repeated random 2 KiB block is a stream that zstd shrinks."""
    (tmp_path / "vm").write_bytes(os.urandom(2048) * (2 * MIB // 2048))
    sample = sample_extents(str(tmp_path), [("vm", 0, 2 * MIB)])
    assert sample[0] == SAMPLE_BUDGET and verdict(sample) is True


def test_names_the_snapshot_no_longer_has_are_passed_over(tmp_path):
    (tmp_path / "kept").write_bytes(prose(256 * 1024, 2))
    sample = sample_extents(str(tmp_path), [("o257-7-0", 0, 4096), ("kept", 0, 256 * 1024)])
    assert sample[0] == 256 * 1024 and verdict(sample) is True


def test_a_full_sends_sample_can_be_taken_from_the_source_before_its_snapshot(tmp_path):
    """sample_ahead reads the source subvolume's files while the run surveys its destinations:
    the full send's sample is that one (its snapshot is not read again); an incremental's is its own."""
    from engine.host.capabilities import EndToolsProbe
    from engine.host.endpoints.local import LocalEndpoint

    source_folder, snapshot = tmp_path / "data", tmp_path / "snapshot"
    fill(source_folder, text, [300 * 1024] * 4)
    fill(snapshot, lambda size, seed: os.urandom(size), [300 * 1024] * 4)  # what a read of the snapshot would judge
    ends = EndToolsProbe(runner=None)
    source = LocalEndpoint(str(source_folder))
    ends.sample_ahead(source, str(source_folder))
    full = ends.sample(source, str(snapshot), None)
    assert verdict(full[1:]) is True  # the source's text, not the snapshot's random bytes
    assert ends.sample(source, str(snapshot), None) == full  # once per stream


def file_bytes(root):
    return sum(os.lstat(os.path.join(folder, name)).st_size
               for folder, _dirs, names in os.walk(root) for name in names
               if not os.path.islink(os.path.join(folder, name)))


def test_a_small_subvolume_is_sized_by_its_walk(tmp_path):
    """Its files' apparent sizes (a sparse file counts whole: a bound, never less than what is
    sent) and every entry: files, folders, links."""
    fill(tmp_path, text, [1000, 2000, 300 * 1024])  # 3 files in 3 folders
    (tmp_path / "d0" / "link").symlink_to("f0")
    with open(tmp_path / "sparse", "wb") as handle:
        handle.truncate(5 << 20)
    assert tree_size(str(tmp_path)) == TreeSize(file_bytes(tmp_path), 3 + 3 + 1 + 1)
    assert file_bytes(tmp_path) > (5 << 20) + 300 * 1024
    assert tree_size(str(tmp_path / "missing")) is None


def test_a_subvolume_the_walk_cannot_meet_in_full_has_no_size(tmp_path, monkeypatch):
    monkeypatch.setattr(compressibility, "SIZE_WALK_LIMIT", 50)
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(50):
        (folder / str(number)).touch()
    assert tree_size(str(tmp_path)) is None  # the folder and its 50 files
    (folder / "0").unlink()
    assert tree_size(str(tmp_path)) == TreeSize(0, 50)


def test_the_size_walk_goes_further_than_the_samples(tmp_path):
    """The sample looks at WALK_LIMIT entries; the size of up to SIZE_WALK_LIMIT is known."""
    assert SIZE_WALK_LIMIT > WALK_LIMIT
    for number in range(WALK_LIMIT + 100):
        (tmp_path / ("%05d" % number)).write_bytes(b"x")
    assert tree_size(str(tmp_path)) == TreeSize(WALK_LIMIT + 100, WALK_LIMIT + 100)
    assert sample_snapshot(str(tmp_path))[0] <= WALK_LIMIT  # one byte from each file it looked at


def test_a_folder_the_walk_cannot_read_leaves_the_size_unknown(tmp_path, monkeypatch):
    fill(tmp_path, text, [1000] * 6)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("d1"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(compressibility.os, "scandir", scandir)
    assert tree_size(str(tmp_path)) is None
    assert sample_snapshot(str(tmp_path))[0] > 0  # the sample still reads what it can


def test_the_sample_and_the_size_come_from_one_walk(tmp_path):
    fill(tmp_path, text, [300 * 1024] * 4 + [3000] * 5)
    sample, size = sample_and_size(str(tmp_path))
    assert sample == ("the snapshot's data",) + sample_snapshot(str(tmp_path))
    assert size == tree_size(str(tmp_path)) == TreeSize(file_bytes(tmp_path), 3 + 9)


def test_a_full_sends_size_comes_from_the_walk_of_its_sample_taken_ahead(tmp_path, monkeypatch):
    """tree_size of the snapshot whose sample was taken ahead walks nothing again, before and
    after the sample is taken; another snapshot is walked."""
    from engine.host.capabilities import EndToolsProbe
    from engine.host.endpoints.local import LocalEndpoint

    source_folder, snapshot, other = tmp_path / "data", tmp_path / "snapshot", tmp_path / "other"
    fill(source_folder, text, [300 * 1024] * 2)
    fill(other, text, [1000])
    walks = []
    real_walk = compressibility._walk
    monkeypatch.setattr(compressibility, "_walk", lambda root, limit: walks.append(root) or real_walk(root, limit))
    ends = EndToolsProbe(runner=None)
    source = LocalEndpoint(str(source_folder))
    ends.sample_ahead(source, str(source_folder))
    expected = TreeSize(file_bytes(source_folder), 2 + 2)
    assert ends.tree_size(source, str(snapshot)) == expected  # the ahead walk, still in flight or done
    ends.sample(source, str(snapshot), None)
    assert ends.tree_size(source, str(snapshot)) == expected
    assert walks == [str(source_folder)]  # once, ahead
    assert ends.tree_size(source, str(other)) == TreeSize(file_bytes(other), 2)
    assert walks == [str(source_folder), str(other)]


@pytest.mark.parametrize("sample_first", [True, False])
def test_a_later_full_sends_sample_and_size_share_one_walk(tmp_path, monkeypatch, sample_first):
    """Without a sample taken ahead (a full send that is not the run's first), the sample (in
    its own thread) and the size bound walk the snapshot once between them, in either order and
    at the same time."""
    import threading

    from engine.host.capabilities import EndToolsProbe
    from engine.host.endpoints.local import LocalEndpoint

    snapshot = tmp_path / "snapshot"
    fill(snapshot, text, [300 * 1024] * 3 + [3000] * 4)
    expected_sample = ("the snapshot's data",) + sample_snapshot(str(snapshot))
    walks = []
    real_walk = compressibility._walk
    monkeypatch.setattr(compressibility, "_walk", lambda root, limit: walks.append(root) or real_walk(root, limit))
    ends = EndToolsProbe(runner=None)
    source = LocalEndpoint(str(tmp_path / "data"))
    samples = []
    sampling = threading.Thread(target=lambda: samples.append(ends.sample(source, str(snapshot), None)))
    if sample_first:
        sampling.start()
    size = ends.tree_size(source, str(snapshot))
    if not sample_first:
        sampling.start()
    sampling.join()
    assert size == TreeSize(file_bytes(snapshot), 3 + 7)
    assert samples == [expected_sample]
    assert walks == [str(snapshot)]
