"""engine.run.archive_forecast: the forecast a run leaves for each archive store, read back as the
listing planning takes; a stream sent on it gets `go` only when the store's listing holds exactly
those archives, `abort` otherwise or when the listing failed."""

import json
import os
import threading

import pytest

from engine.host.endpoints.archive import ArchiveSettings, BorgEndpoint, ResticEndpoint
from engine.model import archives
from engine.model.errors import EndpointError
from engine.model.job_identity import job_identity
from engine.run import archive_forecast

A, B, C = "11111111-aaaa", "22222222-bbbb", "33333333-cccc"


def _identity(tmp_path):
    return job_identity(source_id="/src", source_path="/src", state_root=str(tmp_path / "state"))


def _borg():
    return BorgEndpoint("/b", ArchiveSettings(job="home", key_file="/k"))


def _listing(store, *archives_):
    return store.listing_of(archives.ArchiveRecord(archives.archive_name("home", name), archives.ArchiveLabel(
        "home", name, uuid, parent)) for name, uuid, parent in archives_)


class _Store:
    """An archive store whose listing comes when the test says (or fails)."""

    def __init__(self, real, error=None):
        self.id, self.real, self.error = "borg:/b", real, error
        self.release = threading.Event()
        self.asked = []
        self.verdict_path = None

    def list_backups(self, runner, beside_a_write=False):
        self.asked.append(beside_a_write)
        self.release.wait(10)
        if self.error:
            raise self.error
        return self.real


def test_a_store_the_job_has_not_recorded_is_forecast_empty_and_a_damaged_record_is_no_forecast(tmp_path):
    identity = _identity(tmp_path)
    assert archive_forecast.load_forecast(identity, _borg()).children == {}
    assert archive_forecast.recorded_stores(identity) == set()
    (tmp_path / "state").mkdir()
    path = os.path.join(identity.state_dir, archive_forecast.FORECAST_FILE)
    (tmp_path / "state" / path.split("/")[-2]).mkdir()
    for damaged in ("{not json", "[]", json.dumps({"borg:/b": {"x": {"uuid": 3, "ref": "r"}}}),
                    json.dumps({"borg:/b": {"x y": {"uuid": A, "ref": "r"}}})):
        with open(path, "w") as handle:
            handle.write(damaged)
        assert archive_forecast.load_forecast(identity, _borg()) is None, damaged


def test_what_a_run_left_is_the_next_runs_forecast(tmp_path):
    identity, store = _identity(tmp_path), _borg()
    left = _listing(store, ("20240101-000000", A, None), ("20240102-000000", B, A)).children
    restic = ResticEndpoint("/r", ArchiveSettings(job="home", key_file="/k"))
    archive_forecast.save_forecasts(identity, {store.id: left, restic.id: {}})
    forecast = archive_forecast.load_forecast(identity, store)
    assert archives.holdings(forecast.children) == archives.holdings(left)
    assert {n: s.path for n, s in forecast.children.items()} == {n: s.path for n, s in left.items()}
    assert archive_forecast.recorded_stores(identity) == {store.id, restic.id}
    archive_forecast.save_forecasts(identity, {store.id: None})  # a failure there: not known any more
    assert archive_forecast.recorded_stores(identity) == {restic.id}


@pytest.mark.parametrize("real, agreed", [
    ([("a", A, None), ("b", B, A)], True),
    ([("a", A, None)], False),  # the newest archive was deleted behind the job's back
    ([("a", A, None), ("b", B, A), ("c", C, B)], False),  # another run stored one meanwhile
    ([("a", A, None), ("b", B, None)], False),  # the same snapshot, stored from another parent
])
def test_the_stream_is_kept_only_when_the_listing_holds_what_was_forecast(tmp_path, real, agreed):
    borg = _borg()
    predicted = _listing(borg, ("a", A, None), ("b", B, A))
    store = _Store(_listing(borg, *real))
    forecast = archive_forecast.Forecast(store, runner=None, predicted=predicted)
    forecast.arm()
    verdict = store.verdict_path
    assert verdict and not _said(verdict)  # no word before the listing is in
    store.release.set()
    forecast._judge.join(10)
    assert _said(verdict) == ("go" if agreed else "abort")
    forecast.disarm()
    assert store.verdict_path is None and not (tmp_path / verdict).exists()
    assert store.asked == [True] and forecast.agreed is agreed


def test_a_listing_that_fails_beside_the_stream_stops_it(tmp_path):
    borg = _borg()
    store = _Store(None, EndpointError("borg:/b: listing the archives failed: lock"))
    store.release.set()
    forecast = archive_forecast.Forecast(store, runner=None, predicted=_listing(borg))
    assert forecast.settle() is False and forecast.real is None


def _said(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def _borg_repository(folder, transaction="5", repo_id="4f1c"):
    folder.mkdir(exist_ok=True)
    for old in folder.glob("index.*"):
        old.unlink()
    (folder / f"index.{transaction}").write_bytes(b"")
    (folder / "config").write_text(f"[repository]\nversion = 1\nid = {repo_id}\nkey = abc\n")


def _restic_repository(folder, *snapshot_ids):
    (folder / "snapshots").mkdir(parents=True, exist_ok=True)
    (folder / "config").write_bytes(b"encrypted")
    for old in (folder / "snapshots").iterdir():
        old.unlink()
    for snapshot_id in snapshot_ids:
        (folder / "snapshots" / snapshot_id).write_bytes(b"")


@pytest.mark.parametrize("kind, change, unwritten", [
    ("borg", None, True),
    ("borg", "a commit", False),  # create, delete, prune, compact: the transaction advanced
    ("borg", "another repository", False),  # the same transaction number, another repository id
    ("borg", "mid-commit", False),  # two index files while borg commits: no state
    ("restic", None, True),
    ("restic", "a commit", False),  # backup, forget or tag: another set of snapshot files
    ("restic", "mid-commit", True),  # a lock or a pack file of a stopped backup: no snapshot changed
])
def test_a_repository_here_that_nothing_wrote_to_needs_no_listing(tmp_path, kind, change, unwritten):
    identity, repo = _identity(tmp_path), tmp_path / "repo"
    settings = ArchiveSettings(job="home", key_file="/k")
    if kind == "borg":
        _borg_repository(repo)
        store = BorgEndpoint(str(repo), settings)
    else:
        _restic_repository(repo, "aa11", "bb22")
        store = ResticEndpoint(str(repo), settings)
    left = _listing(store, ("20240101-000000", A, None)).children
    archive_forecast.save_forecasts(identity, {store.id: left}, {store.id: store.repository_state()})
    assert archive_forecast.load_forecast(identity, store).children.keys() == left.keys()
    if change == "a commit":
        _borg_repository(repo, transaction="9") if kind == "borg" else _restic_repository(repo, "aa11", "cc33")
    elif change == "another repository":
        _borg_repository(repo, repo_id="9e2d")
    elif change == "mid-commit":
        (repo / ("index.6" if kind == "borg" else "locks")).mkdir()
    assert archive_forecast.unwritten_since_recorded(identity, store) is unwritten


def test_a_store_at_another_host_or_unreadable_tells_no_state(tmp_path):
    settings = ArchiveSettings(job="home", key_file="/k")
    assert BorgEndpoint.from_location("borg+ssh://u@host/r", archive=settings).repository_state() is None
    assert ResticEndpoint.from_location("restic:rest:http://127.0.0.1:8000/r", archive=settings).repository_state() is None
    assert ResticEndpoint.from_location("restic:s3:http://127.0.0.1/b", archive=settings).repository_state() is None
    assert BorgEndpoint(str(tmp_path / "missing"), settings).repository_state() is None
    assert ResticEndpoint(str(tmp_path / "missing"), settings).repository_state() is None
    identity, store = _identity(tmp_path), BorgEndpoint(str(tmp_path / "missing"), settings)
    archive_forecast.save_forecasts(identity, {store.id: {}}, {store.id: None})
    assert archive_forecast.unwritten_since_recorded(identity, store) is False


def _borg_index(objects, magic=b"BORG_IDX"):
    """The first bytes of a borg index that maps `objects` objects (then bucket count, sizes)."""
    return magic + objects.to_bytes(4, "little") + (1031).to_bytes(4, "little") + bytes([32, 8])


@pytest.mark.parametrize("case, empty", [
    ("a fresh repository", True),  # borg init: the manifest alone
    ("an archive", False),
    ("a commit whose index is not written yet", False),
    ("two index files (mid-commit)", False),
    ("no data folder", False),
    ("another index format", False),
])
def test_a_borg_repository_here_whose_index_maps_the_manifest_alone_holds_no_archive(tmp_path, case, empty):
    repo = tmp_path / "repo"
    _borg_repository(repo, transaction="1")
    (repo / "index.1").write_bytes(_borg_index(4 if case == "an archive" else 1,
                                               b"BORG2IDX" if case == "another index format" else b"BORG_IDX"))
    if case != "no data folder":
        (repo / "data" / "0").mkdir(parents=True)
        for segment in ("0", "1", "2") if case.startswith("a commit") else ("0", "1"):
            (repo / "data" / "0" / segment).write_bytes(b"BORG_SEG")
    if case.startswith("two index"):
        (repo / "index.2").write_bytes(_borg_index(1))
    settings = ArchiveSettings(job="home", key_file="/k")
    assert BorgEndpoint(str(repo), settings).holds_no_archive() is empty
    assert BorgEndpoint("ssh://u@host" + str(repo), settings, host="host").holds_no_archive() is False


def test_a_restic_repository_here_without_snapshot_files_holds_no_archive(tmp_path):
    settings = ArchiveSettings(job="home", key_file="/k")
    repo = tmp_path / "repo"
    _restic_repository(repo)
    assert ResticEndpoint(str(repo), settings).holds_no_archive() is True
    assert ResticEndpoint("local:" + str(repo), settings).holds_no_archive() is True
    _restic_repository(repo, "aa11")
    assert ResticEndpoint(str(repo), settings).holds_no_archive() is False
    (repo / "snapshots" / "aa11").unlink()
    (repo / "config").unlink()  # not a repository (yet): its own command says so
    assert ResticEndpoint(str(repo), settings).holds_no_archive() is False
    assert ResticEndpoint(str(tmp_path / "missing"), settings).holds_no_archive() is False
    assert ResticEndpoint.from_location("restic:s3:http://127.0.0.1/b", archive=settings).holds_no_archive() is False
