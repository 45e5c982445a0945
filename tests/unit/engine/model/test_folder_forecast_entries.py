"""What an ssh host's folder held after the job's last run, as the state keeps it: written, read
back, and refused whole when any part of it is not what a run wrote (then the run surveys first)."""

import copy

import pytest

from engine.host.listing import Subvolume
from engine.model.folder_forecast import forecast_entry, holdings, is_filesystem_id, read_entry

FOLDER = "/srv/backups/web1"
A = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
B = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
C = "11111111-2222-4333-8444-555555555555"


def sub(name, sub_id, uuid, received, parent=None, readonly=True):
    return Subvolume(name=name, path=f"{FOLDER}/{name}", id=sub_id, uuid=uuid, parent_uuid=parent,
                     received_uuid=received, readonly=readonly)


CHILDREN = {"20261206-070000": sub("20261206-070000", 256, A, B),
            "20261206-080000": sub("20261206-080000", 257, C, A, parent=A),
            "partial": sub("partial", 258, B, None, readonly=False)}


def good():
    return forecast_entry(CHILDREN, "2854bb5e38d30afd", zstd=True, proto2=False)


def test_what_a_run_left_reads_back_as_it_was():
    facts = read_entry(good(), FOLDER)
    assert (facts["filesystem"], facts["zstd"], facts["proto2"]) == ("2854bb5e38d30afd", True, False)
    assert {f["name"]: Subvolume(**f) for f in facts["subvolumes"]} == CHILDREN


def damaged(change):
    entry = copy.deepcopy(good())
    change(entry)
    return entry


def entry_of(**subvolume):
    return damaged(lambda e: e["subvolumes"].update(subvolume))


#: A change to a good entry -> it is no forecast at all.
NOT_A_FORECAST = {
    "not-a-dict": lambda: [],
    "no-filesystem": lambda: damaged(lambda e: e.pop("filesystem")),
    "filesystem-not-hex": lambda: damaged(lambda e: e.update(filesystem="/dev/sda1")),
    "filesystem-too-long": lambda: damaged(lambda e: e.update(filesystem="a" * 33)),
    "zstd-not-a-bool": lambda: damaged(lambda e: e.update(zstd="yes")),
    "no-proto2": lambda: damaged(lambda e: e.pop("proto2")),
    "subvolumes-a-list": lambda: damaged(lambda e: e.update(subvolumes=[])),
    "a-name-with-a-slash": lambda: entry_of(**{"a/b": {**good()["subvolumes"]["partial"], "path": FOLDER + "/a/b"}}),
    "a-dot-dot-name": lambda: entry_of(**{"..": {**good()["subvolumes"]["partial"], "path": FOLDER + "/.."}}),
    "a-path-outside-the-folder": lambda: damaged(
        lambda e: e["subvolumes"]["partial"].update(path="/etc/partial")),
    "a-path-under-another-name": lambda: damaged(
        lambda e: e["subvolumes"]["partial"].update(path=FOLDER + "/20261206-070000")),
    "an-id-that-is-a-bool": lambda: damaged(lambda e: e["subvolumes"]["partial"].update(id=True)),
    "an-id-that-is-text": lambda: damaged(lambda e: e["subvolumes"]["partial"].update(id="258")),
    "no-uuid": lambda: damaged(lambda e: e["subvolumes"]["partial"].update(uuid=None)),
    "a-received-uuid-not-a-uuid": lambda: damaged(
        lambda e: e["subvolumes"]["partial"].update(received_uuid="x")),
    "a-parent-uuid-not-a-uuid": lambda: damaged(
        lambda e: e["subvolumes"]["20261206-080000"].update(parent_uuid=7)),
    "readonly-not-a-bool": lambda: damaged(lambda e: e["subvolumes"]["partial"].update(readonly=0)),
    "a-subvolume-not-a-dict": lambda: entry_of(x="x"),
}


@pytest.mark.parametrize("make", list(NOT_A_FORECAST.values()), ids=list(NOT_A_FORECAST))
def test_an_entry_that_is_not_what_a_run_wrote_is_no_forecast(make):
    assert read_entry(make(), FOLDER) is None


def test_an_entry_of_another_folder_is_no_forecast():
    assert read_entry(good(), "/srv/backups/web2") is None


def test_holdings_leave_out_what_this_run_sends():
    arrived = dict(CHILDREN, **{"20261206-090000": sub("20261206-090000", 259, B, C, parent=C)})
    assert holdings(arrived, {"20261206-090000"}) == holdings(CHILDREN, {"20261206-090000"})
    assert holdings(arrived) != holdings(CHILDREN)
    moved = dict(CHILDREN, partial=CHILDREN["partial"]._replace(readonly=True))
    assert holdings(moved) != holdings(CHILDREN)


@pytest.mark.parametrize("text, ok", [("2854bb5e38d30afd", True), ("1", True), ("", False), ("ABC", False),
                                      (None, False), (12, False), ("a" * 32, True), ("a" * 33, False)])
def test_a_filesystem_id_is_what_stat_prints(text, ok):
    assert is_filesystem_id(text) == ok
