"""engine.model.planning: which snapshot goes where, from which parent, and what is a partial (by UUID)."""

import collections

import pytest

from engine.host.listing import Subvolume
from engine.model.planning import plan_destination, stranded_arrivals


def uuid_of(name):
    return "uuid-of-" + name


def source(*names, received=None):
    """Read-only source snapshots, oldest first; `received` maps a name to its own received_uuid."""
    received = received or {}
    return [Subvolume(name, "/home/snapshot/" + name, 300 + i, uuid_of(name), "uuid-of-home",
                      received.get(name), True)
            for i, name in enumerate(names)]


# A destination subvolume: name, received_uuid (None: not received) and read-only flag.
B = collections.namedtuple("B", "name received_uuid readonly")


def backup_of(name, as_name=None):
    """A complete backup of source snapshot `name`, stored under `as_name` (default: same name)."""
    return B(as_name or name, uuid_of(name), True)


def destination(*backups):
    return {b.name: Subvolume(b.name, "/backup/" + b.name, 500 + i, "dest-uuid-%d" % i, None,
                              b.received_uuid, b.readonly)
            for i, b in enumerate(backups)}


S6 = ("s1", "s2", "s3", "s4", "s5", "s6")

Case = collections.namedtuple(
    "Case", "snapshots backups locked kwargs transfers conflicts partial_receives present")


def case(snapshots, backups=(), locked=(), transfers=(), conflicts=(), partial_receives=(), present=(),
         **kwargs):
    return Case(snapshots, backups, locked, kwargs, list(transfers), list(conflicts),
                list(partial_receives), sorted(present))


CASES = [
    pytest.param(case(["s1"], transfers=[("s1", None)]), id="first-run-full"),
    pytest.param(case(["s1", "s2"], [backup_of("s1")], transfers=[("s2", "s1")], present=["s1"]),
                 id="second-run-incremental-from-newest-common"),
    pytest.param(case(["s1", "s2", "s3"], [backup_of("s1"), backup_of("s2"), backup_of("s3")],
                      present=["s1", "s2", "s3"]),
                 id="up-to-date-nothing-to-send"),
    pytest.param(case(list(S6), [backup_of("s1")],
                      transfers=[("s2", "s1"), ("s3", "s2"), ("s4", "s3"), ("s5", "s4"), ("s6", "s5")],
                      present=["s1"]),
                 id="offline-five-runs-catches-up-each-on-the-previous"),
    pytest.param(case(list(S6), keep_backups=2, transfers=[("s5", None), ("s6", "s5")]),
                 id="keep-backups-2-sends-only-the-newest-two"),
    pytest.param(case(list(S6), [backup_of("s1")], keep_backups=2,
                      transfers=[("s5", "s1"), ("s6", "s5")], present=["s1"]),
                 id="keep-backups-2-still-incremental-from-an-old-common"),
    pytest.param(case(["s1", "s2", "s3", "s4", "s5"], [backup_of("s1"), backup_of("s4")],
                      transfers=[("s5", "s4")], present=["s1", "s4"]),
                 id="older-missing-backups-are-not-sent-again"),
    pytest.param(case(["s1", "s2"], [backup_of("s1"), backup_of("s1", as_name="s2")],
                      conflicts=["s2"], present=["s1"]),
                 id="right-name-wrong-received-uuid-is-a-conflict"),
    pytest.param(case(["s1", "s2", "s3"], [backup_of("s1"), backup_of("s2", as_name="renamed")],
                      transfers=[("s3", "s2")], present=["s1", "s2"]),
                 id="other-name-right-received-uuid-is-present"),
    pytest.param(case(["s1", "s2"], [backup_of("s1"), B("s2", None, False)], locked=["s2"],
                      partial_receives=["s2"], transfers=[("s2", "s1")], present=["s1"]),
                 id="locked-writable-partial-is-garbage-and-resent"),
    pytest.param(case(["s1", "s2"], [backup_of("s1"), B("s2", uuid_of("s2"), False)], locked=["s2"],
                      partial_receives=["s2"], transfers=[("s2", "s1")], present=["s1"]),
                 id="locked-writable-with-received-uuid-is-garbage"),
    pytest.param(case(["s1", "s2", "s3"], [backup_of("s1"), B("s2", None, False)],
                      conflicts=["s2"], present=["s1"]),
                 id="writable-without-lock-is-a-conflict-not-garbage"),
    pytest.param(case(["s1", "s2"], [backup_of("s1"), B("s2", "uuid-of-stranger", False)],
                      locked=["s2"], conflicts=["s2"], present=["s1"]),
                 id="locked-name-but-foreign-received-uuid-is-not-ours-to-delete"),
    pytest.param(case(["s1", "s2"], [backup_of("s1"), backup_of("s2")], locked=["s2"],
                      present=["s1", "s2"]),
                 id="complete-backup-of-locked-snapshot-is-present-not-garbage"),
    pytest.param(case(["s1", "s2", "s3"], [backup_of("s1")], incremental=False,
                      transfers=[("s2", None), ("s3", None)], present=["s1"]),
                 id="incremental-false-sends-full-streams"),
    pytest.param(case(["s1", "s2", "s3"], only=["s3"], incremental=False, transfers=[("s3", None)]),
                 id="only-restricts-what-is-sent"),
    pytest.param(case(["s1", "s2", "s3"], [backup_of("s1")], only=["s3"],
                      transfers=[("s3", "s1")], present=["s1"]),
                 id="only-still-uses-the-newest-common-parent"),
    pytest.param(case(["s1", "s2"], [B("s1", "uuid-of-s1", False)], transfers=[],
                      conflicts=["s1"]),
                 id="unlocked-unfinished-receive-blocks-the-chain"),
    pytest.param(case(["s2"], [backup_of("s2"), B("s1", None, False)], locked=["s1"],
                      partial_receives=["s1"], present=["s2"]),
                 id="partial-of-a-snapshot-gone-from-the-source-is-found-by-its-lock"),
]


@pytest.mark.parametrize("c", CASES)
def test_plan_destination(c):
    plan = plan_destination(source(*c.snapshots), destination(*c.backups), c.locked, **c.kwargs)
    assert [(t.snapshot.name, t.parent.name if t.parent else None) for t in plan.transfers] \
        == c.transfers
    assert [conflict.name for conflict in plan.conflicts] == c.conflicts
    assert [g.name for g in plan.partial_receives] == c.partial_receives
    assert sorted(plan.present) == c.present


def test_present_maps_each_snapshot_to_its_backup_by_uuid():
    plan = plan_destination(source("s1", "s2"),
                            destination(backup_of("s1", as_name="home-old"), backup_of("s2")))
    assert {name: b.name for name, b in plan.present.items()} == {"s1": "home-old", "s2": "s2"}


def test_both_carry_the_same_received_uuid():
    # The source snapshot was itself received (e.g. a backup being backed up again): `btrfs send`
    # passes its received_uuid on, so the copy carries that, not the snapshot's own uuid.
    snapshots = source("s1", "s2", received={"s1": "origin-1", "s2": "origin-2"})
    backups = destination(B("s1", "origin-1", True))
    plan = plan_destination(snapshots, backups)
    assert sorted(plan.present) == ["s1"]
    assert [(t.snapshot.name, t.parent.name) for t in plan.transfers] == [("s2", "s1")]


def test_conflict_reason_explains_the_foreign_received_uuid():
    plan = plan_destination(source("s1", "s2"),
                            destination(backup_of("s1"), backup_of("s1", as_name="s2")))
    (conflict,) = plan.conflicts
    assert "/backup/s2 exists but was received from another subvolume" in conflict.reason
    assert "left alone" in conflict.reason


def test_conflict_reason_for_an_unexplained_writable_subvolume():
    plan = plan_destination(source("s1"), destination(B("s1", None, False)))
    (conflict,) = plan.conflicts
    assert "writable subvolume without received_uuid" in conflict.reason


def test_as_dict_is_the_check_mode_plan():
    plan = plan_destination(source("s1", "s2", "s3"),
                            destination(backup_of("s1"), B("s3", None, False)),
                            locked_names=["s3"])
    assert plan.as_dict() == {
        "delete_partial": ["/backup/s3"],
        "conflicts": [],
        "transfers": [
            {"snapshot": "s2", "parent": "s1", "mode": "incremental"},
            {"snapshot": "s3", "parent": "s2", "mode": "incremental"},
        ],
    }


def snapper_source(*names):
    """Snapper's snapshots: each subvolume is called `snapshot`, in .snapshots/N."""
    return [Subvolume(name, "/home/.snapshots/%d/snapshot" % (i + 1), 300 + i, uuid_of(name), "uuid-of-home",
                      None, True)
            for i, name in enumerate(names)]


@pytest.mark.parametrize("backups, locked, renames, partials", [
    pytest.param((), (), [], [], id="nothing-left"),
    pytest.param((backup_of("a"), backup_of("b")), (), [], [], id="every-backup-named"),
    pytest.param((backup_of("a"), backup_of("b", "snapshot")), ("b",), [("snapshot", "b")], [],
                 id="verified-not-renamed"),
    pytest.param((backup_of("a"), backup_of("b", "snapshot")), (), [("snapshot", "b")], [],
                 id="verified-not-renamed-lock-lost"),
    pytest.param((backup_of("a"), B("snapshot", None, False)), ("b",), [], ["snapshot"], id="a-partial-receive"),
    pytest.param((B("snapshot", uuid_of("b"), False),), ("b",), [], ["snapshot"], id="received-not-finished"),
    pytest.param((B("snapshot", None, False),), (), [], [], id="without-a-lock-somebody-elses"),
    pytest.param((B("snapshot", "uuid-of-other", False),), ("b",), [], [], id="a-partial-of-something-else"),
    pytest.param((B("snapshot", uuid_of("a"), False),), ("b",), [], [], id="a-partial-of-an-unlocked-snapshot"),
    pytest.param((backup_of("gone", "snapshot"),), ("b",), [], [], id="complete-of-a-snapshot-snapper-deleted"),
    pytest.param((backup_of("b"), backup_of("b", "snapshot")), (), [], [], id="its-name-is-taken"),
])
def test_what_a_receive_left_under_snappers_subvolume_name(backups, locked, renames, partials):
    found = stranded_arrivals(snapper_source("a", "b"), destination(*backups), locked)
    assert [(b.name, name) for b, name in found[0]] == renames
    assert [p.name for p in found[1]] == partials


def test_own_snapshots_arrive_under_their_names():
    assert stranded_arrivals(source("snapshot", "b"), destination(B("snapshot", None, False)), ["b"]) == ([], [])


# -- a rebuilt source's snapshots (restore --as-source): received, they stand for the lost ones -----


def test_a_streams_uuid_is_a_received_snapshots_received_uuid_else_its_own():
    from engine.model.planning import stream_uuid
    plain, rebuilt = source("s1", "s2", received={"s2": "uuid-of-lost-s2"})
    assert (stream_uuid(plain), stream_uuid(rebuilt)) == ("uuid-of-s1", "uuid-of-lost-s2")


def test_a_rebuilt_snapshot_is_the_parent_of_the_destinations_that_hold_what_it_stands_for():
    snapshots = source("s1", "s2", "s3", received={"s1": "uuid-of-lost-s1", "s2": "uuid-of-lost-s2"})
    # One destination holds both lost snapshots' backups, another missed the second.
    full = destination(B("s1", "uuid-of-lost-s1", True), B("s2", "uuid-of-lost-s2", True))
    behind = destination(B("s1", "uuid-of-lost-s1", True))
    plan = plan_destination(snapshots, full)
    assert [(t.snapshot.name, t.parent.name) for t in plan.transfers] == [("s3", "s2")]
    plan = plan_destination(snapshots, behind)
    assert [(t.snapshot.name, t.parent.name) for t in plan.transfers] == [("s2", "s1"), ("s3", "s2")]


def test_a_partial_receive_of_a_rebuilt_snapshot_is_recognised_by_the_uuid_its_stream_carries():
    snapshots = source("s1", "s2", received={"s2": "uuid-of-lost-s2"})
    held = destination(B("s1", uuid_of("s1"), True), B("s2", "uuid-of-lost-s2", False))
    assert [p.name for p in plan_destination(snapshots, held, locked_names=["s2"]).partial_receives] == ["s2"]
