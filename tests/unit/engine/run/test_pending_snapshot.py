"""A pulled source's snapshot taken in its send's command, in the run: the executor plans with a
stand-in and runs nothing until a send (or a command apart) takes it; which sends can take it along;
what each state of the pending snapshot lets the run keep."""

import types

import pytest

from engine.host.endpoints.location import parse_location
from engine.host.listing import Subvolume
from engine.model.stream_options import StreamOptions
from engine.model.steps import Send, TakeSnapshot
from engine.run import sending
from engine.run.executor import NOT_TAKEN, PENDING, TAKEN, UNKNOWN, EffectOptions, Executor, PendingSnapshot

SNAP = "/srv/data/snapshot/20261205-120000"
UUID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


class NoCommands:
    """A runner that fails the test if anything runs."""

    def run(self, argv, input_text=None):
        raise AssertionError("ran %s" % argv)

    popen = run


def step(location="ssh://nas/srv/data"):
    return TakeSnapshot(endpoint=parse_location(location), source_path="/srv/data", path=SNAP,
                        label="snapshot", not_before=None)


def test_a_pulled_snapshot_is_a_stand_in_until_its_send():
    executor = Executor(NoCommands())
    executor.snapshot_in_send = True
    stand_in = executor.carry_out(step())
    assert executor.pending.state == PENDING and executor.pending_of(stand_in) is executor.pending
    assert (stand_in.name, stand_in.path, stand_in.id, stand_in.readonly) == ("20261205-120000", SNAP, None, True)
    assert UUID not in stand_in.uuid and stand_in.received_uuid is None  # it matches no backup
    assert executor.pending_of(stand_in._replace()) is None  # only the stand-in itself


def test_a_local_source_takes_it_at_once():
    """Nothing to save on this machine: the step is carried out as before (the runner is asked)."""
    executor = Executor(NoCommands())
    executor.snapshot_in_send = True
    with pytest.raises(AssertionError, match="ran"):
        executor.carry_out(step("/srv/data"))
    assert executor.pending is None


def subvolume(readonly=True):
    return Subvolume(name="20261205-120000", path=SNAP, id=262, uuid=UUID, parent_uuid=None, received_uuid=None,
                     readonly=readonly)


@pytest.mark.parametrize("facts, state, verified", [
    (subvolume(), TAKEN, True),
    (subvolume(readonly=False), TAKEN, False),
    (None, UNKNOWN, False),
], ids=["read-only", "writable", "unreadable"])
def test_what_a_pending_snapshot_lets_the_run_keep(facts, state, verified):
    pending = PendingSnapshot(step())
    pending.took(facts)
    assert (pending.state, pending.verified, pending.taken) == (state, verified, facts)


def test_one_that_was_not_taken_is_never_verified():
    pending = PendingSnapshot(step())
    pending.not_taken()
    assert (pending.state, pending.verified) == (NOT_TAKEN, False)


def executor_with(resumable="auto", progress=False):
    return types.SimpleNamespace(options=EffectOptions(progress=progress, stream=StreamOptions(resumable=resumable)))


ARCHIVE = types.SimpleNamespace(holds_archives=True, can_stage=False)


@pytest.mark.parametrize("destinations, resumable, rides", [
    (["/backups"], "auto", True),
    (["/backups", "/more"], "auto", True),
    (["ssh://backup/srv/backups"], "never", True),
    (["ssh://backup/srv/backups"], "auto", False),  # a staged transfer's size is asked first
    (["/backups", "ssh://backup/srv/backups"], "always", False),
    ([ARCHIVE], "auto", False),  # an archive is named after the snapshot's uuid
], ids=["a folder here", "two folders here", "a relay that never stages", "a relay that may stage",
        "one that stages among others", "an archive store"])
def test_which_sends_take_the_snapshot_along(destinations, resumable, rides):
    dests = tuple(d if not isinstance(d, str) else parse_location(d) for d in destinations)
    send = Send(source=parse_location("ssh://nas/srv/data"), snapshot=subvolume(), parent=None, destinations=dests)
    assert sending._snapshot_rides(executor_with(resumable), send) == rides
