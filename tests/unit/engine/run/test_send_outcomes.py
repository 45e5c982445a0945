"""engine.run.destination_sync: how one send's outcome at each destination is read. A transfer that
failed where the destination's forecast was contradicted is planned again; one that failed beside a
survey that got no answer (the connection failed both) fails as after a survey asked first; a
partial receive deleted at once is reported either way."""

import pytest

from engine.model.errors import TransferError
from engine.model.result import DestinationResult, JobResult
from engine.run.destination_sync import DestinationSync, _Pending

URL = "ssh://nas/srv/backups"


class Named:
    def __init__(self, name):
        self.name = name


class Transfer:
    def __init__(self):
        self.snapshot, self.parent = Named("s2"), Named("s1")


class Dest:
    id = URL
    id_aliases = (URL,)
    answers_arrival = False


class Locks:
    def __init__(self):
        self.settled = []

    def settle(self, name, parent, aliases):
        self.settled.append(name)


class Executor:
    """Carries out the one send, whose outcome at the destination is `done`."""

    def __init__(self, done):
        self.done, self.locks, self.runner = done, Locks(), None

    def carry_out(self, step):
        return {URL: self.done}

    def save_locks(self):
        pass


class Folders:
    def known(self, dest):
        return False


class Forecast:
    """A forecast whose survey agreed (True), contradicted it (False), or got no answer."""

    keeps_listing = False

    def __init__(self, survey):
        self.survey = survey
        self.agreed = None
        self.arriving = set()
        self.unanswered = survey == "no answer"

    def arm(self):
        pass

    def disarm(self):
        pass

    def settle(self):
        self.agreed = self.survey is True
        return self.agreed


class Done:
    planned, bytes_sent, seconds, compressed, wire_bytes, resumed_bytes, slot_wait, backup = \
        False, 100, 0.5, False, None, None, None, None


def _cut(partial=None):
    error = TransferError("sending s2 to %s failed: the ssh connection failed or was lost" % URL)
    error.detail, error.partial_receive_deleted = "the ssh connection failed or was lost", partial
    return error


PARTIAL = "/srv/backups/s2"

#: (the destination's forecast, the send's outcome) -> (the transfer's status, planned again,
#: the destination failed, the partial receives it reports)
CASES = {
    "listed-first-cut": (None, _cut(PARTIAL), "failed", False, True, [PARTIAL]),
    "listed-first-arrived": (None, Done(), "done", False, False, []),
    "forecast-confirmed-cut": (True, _cut(PARTIAL), "failed", False, True, [PARTIAL]),
    "forecast-contradicted-cut": (False, _cut(PARTIAL), "replanned", True, False, [PARTIAL]),
    "forecast-contradicted-refused": (False, _cut(), "replanned", True, False, []),
    "forecast-contradicted-arrived": (False, Done(), "done", False, False, []),
    "survey-unanswered-cut": ("no answer", _cut(PARTIAL), "failed", False, True, [PARTIAL]),
    "survey-unanswered-arrived": ("no answer", Done(), "done", False, False, []),
}


@pytest.mark.parametrize("survey, done, status, replanned, failed, partials", list(CASES.values()), ids=list(CASES))
def test_a_sends_outcome_at_a_destination(survey, done, status, replanned, failed, partials):
    executor, result, dest = Executor(done), JobResult(), Dest()
    sync = DestinationSync(executor, result, config=None, source=type("Source", (), {"endpoint": None}),
                           folders=Folders(), keep_backups=0)
    if survey is not None:
        sync.forecasts[URL] = Forecast(survey)
    outcome = DestinationResult(URL)
    item = _Pending(dest, outcome, [Transfer()], None)
    again = sync._send([item], item.transfers[0])  # pylint: disable=protected-access
    assert [t["status"] for t in outcome.transfers] == [status]
    assert (again == [item]) is replanned
    assert (outcome.status == "failed") is failed and bool(result.errors) is failed
    assert outcome.partial_receives_deleted == partials
    # A transfer planned again owes nothing: its lock is settled; a failed one keeps it for the next run.
    assert (executor.locks.settled == ["s2"]) is replanned
