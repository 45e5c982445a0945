"""engine.run.retention_phase with archives: what a policy keeps keeps its whole chain (rule 4),
table by table; btrfs folders are weighed as before."""

import datetime

import pytest

from engine.host.listing import Subvolume
from engine.model.result import RetentionSection
from engine.model.retention import Policy
from engine.run.retention_phase import archive_parents, weigh

NOW = datetime.datetime(2024, 1, 20, 12, 0, 0)


def _archive(day, parent_day):
    name = "202401%02d-000000" % day
    return name, Subvolume(name=name, path="home-" + name, id=None, uuid=None,
                           parent_uuid=None if parent_day is None else "u%02d" % parent_day,
                           received_uuid="u%02d" % day, readonly=True)


def _held(chain):
    """{day: parent day or None} as a destination's archives."""
    return dict(_archive(day, parent) for day, parent in chain.items())


# day -> the day it is incremental from (None: a full stream)
WEEKLY_FULLS = {1: None, 2: 1, 3: 2, 4: 3, 5: None, 6: 5, 7: 6}


@pytest.mark.parametrize("chain, count, deleted", [
    pytest.param(WEEKLY_FULLS, 2, [1, 2, 3, 4], id="newest-two-keep-their-full"),
    pytest.param(WEEKLY_FULLS, 3, [1, 2, 3, 4], id="newest-three-are-one-chain"),
    pytest.param(WEEKLY_FULLS, 4, [], id="an-incremental-of-the-first-chain-keeps-all-of-it"),
    pytest.param(WEEKLY_FULLS, 5, [], id="one-of-the-first-chain-keeps-that-chain"),
    pytest.param({1: None, 2: 1, 3: 2}, 1, [], id="one-chain-all-kept"),
    pytest.param({1: None, 2: None, 3: None}, 1, [1, 2], id="full-streams-stand-alone"),
])
def test_an_archive_kept_keeps_every_parent(chain, count, deleted):
    held = _held(chain)
    section = RetentionSection(where="borg:/b", policy=Policy(count))
    doomed = weigh(held, Policy(count), {n: [] for n in held}, NOW, "", section, archive_parents(held))
    assert sorted(doomed) == ["home-202401%02d-000000" % day for day in deleted]
    kept = {k["name"]: k for k in section.kept}
    for name, sub in held.items():  # rule 4: no kept incremental without its parent
        parent = archive_parents(held)[name]
        if name in kept and parent is not None:
            assert parent in kept


def test_why_a_parent_is_kept_is_said():
    held = _held(WEEKLY_FULLS)
    section = RetentionSection(where="borg:/b", policy=Policy(1))
    weigh(held, Policy(1), {n: [] for n in held}, NOW, "", section, archive_parents(held))
    reasons = {k["name"]: " ".join(k["reasons"]) for k in section.kept}
    assert "parent of the kept incremental archive 20240107-000000" in reasons["20240106-000000"]


def test_a_btrfs_folder_is_weighed_without_chains():
    held = _held(WEEKLY_FULLS)
    section = RetentionSection(where="/b", policy=Policy(2))
    assert len(weigh(held, Policy(2), {n: [] for n in held}, NOW, "", section)) == 5


def test_archive_parents_by_label_uuid():
    held = _held({1: None, 2: 1, 3: 9})
    assert archive_parents(held) == {"20240101-000000": None, "20240102-000000": "20240101-000000",
                                     "20240103-000000": None}
