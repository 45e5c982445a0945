"""engine.run.folder_forecast: what a run leaves for each ssh host's folder, read back as the listing,
tools and filesystem the next run plans on; that plan holds only when the host's survey, read beside
the stream, finds the same subvolumes (less this run's arrivals), a plain host's shell and the same
tools."""

import pytest

from engine.host.destination_survey import Survey
from engine.host.endpoints.ssh import SshEndpoint
from engine.host.listing import FolderListing, Subvolume
from engine.host.streams import EndTools
from engine.model.errors import EndpointError, UnreachableError
from engine.model.folder_forecast import forecast_entry
from engine.model.job_identity import job_identity
from engine.model.server_mode import APPEND_ONLY, NOT_SERVE
from engine.run import folder_forecast

FOLDER = "/srv/backups"
A = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
B = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
C = "11111111-2222-4333-8444-555555555555"


def _identity(tmp_path):
    return job_identity(source_id="/src", source_path="/src", state_root=str(tmp_path / "state"))


def _dest():
    return SshEndpoint("nas", FOLDER)


def _sub(name, uuid, received, readonly=True):
    return Subvolume(name=name, path=f"{FOLDER}/{name}", id=256, uuid=uuid, parent_uuid=None,
                     received_uuid=received, readonly=readonly)


LEFT = {"s1": _sub("s1", A, B)}


def test_what_a_run_left_is_the_next_runs_plan(tmp_path):
    identity, dest = _identity(tmp_path), _dest()
    assert folder_forecast.load_forecast(identity, dest) is None  # nothing recorded: surveyed first
    folder_forecast.save_forecasts(identity, {dest.id: forecast_entry(LEFT, "abc1", zstd=True, proto2=True)})
    predicted = folder_forecast.load_forecast(identity, dest)
    assert predicted.listing.children == LEFT and predicted.filesystem == "abc1"
    assert (predicted.tools.zstd, predicted.tools.proto2) == (True, True)
    assert folder_forecast.recorded_filesystem(identity, dest) == "abc1"
    assert folder_forecast.load_forecast(identity, SshEndpoint("nas", "/srv/other")) is None
    folder_forecast.save_forecasts(identity, {dest.id: None})  # a failure there: surveyed first next time
    assert folder_forecast.load_forecast(identity, dest) is None


def test_a_state_folder_that_cannot_be_written_keeps_no_forecast(tmp_path):
    (tmp_path / "state").write_text("a file where the folder should be")
    identity, dest = _identity(tmp_path), _dest()
    folder_forecast.save_forecasts(identity, {dest.id: forecast_entry(LEFT, "abc1", zstd=True, proto2=True)})
    assert folder_forecast.load_forecast(identity, dest) is None


def _survey(children=None, mode=NOT_SERVE, zstd=True, proto2=True, problem=None):
    listing = None if problem else FolderListing(FOLDER, dict(LEFT if children is None else children), set())
    return Survey(listing, problem, EndTools(zstd=zstd, proto2=proto2), mode)


#: What the survey found -> whether the plan on the forecast holds.
SURVEYS = {
    "the-same": (lambda: _survey(), True),
    "the-same-and-this-runs-arrival": (lambda: _survey(dict(LEFT, s2=_sub("s2", C, A))), True),
    "this-runs-arrival-half-received": (lambda: _survey(dict(LEFT, s2=_sub("s2", C, None, readonly=False))), True),
    "a-backup-gone": (lambda: _survey({}), False),
    "another-subvolume": (lambda: _survey(dict(LEFT, x=_sub("x", C, None))), False),
    "a-backup-received-anew": (lambda: _survey({"s1": _sub("s1", C, B)}), False),
    "serve-now": (lambda: _survey(mode=APPEND_ONLY), False),
    "an-older-serve": (lambda: _survey(mode=None), False),
    "zstd-gone": (lambda: _survey(zstd=False), False),
    "protocol-2-gone": (lambda: _survey(proto2=False), False),
    "a-problem": (lambda: _survey(problem=EndpointError("not btrfs")), False),
}


@pytest.mark.parametrize("found, holds", list(SURVEYS.values()), ids=list(SURVEYS))
def test_the_plan_holds_only_where_the_survey_agrees(monkeypatch, found, holds):
    dest, answer = _dest(), found()
    monkeypatch.setattr(folder_forecast, "survey", lambda endpoint, runner: answer)
    predicted = folder_forecast.Predicted(FolderListing(FOLDER, dict(LEFT), set()), EndTools(zstd=True, proto2=True),
                                          "abc1")
    accepted = []

    def accept(endpoint, survey):
        accepted.append(endpoint)
        if survey.problem is not None:
            raise survey.problem
        return survey.listing

    forecast = folder_forecast.FolderForecast(dest, None, predicted, accept)
    forecast.arriving.add("s2")
    assert forecast.settle() is holds
    assert forecast.settle() is holds and accepted == [dest]  # settled once
    assert (forecast.problem is not None) == (answer.problem is not None)
    assert forecast.unanswered is False  # the host answered, whatever it said


@pytest.mark.parametrize("error, unanswered", [
    pytest.param(UnreachableError("cannot reach ssh host: ssh failed"), True, id="no-connection"),
    pytest.param(UnreachableError("the connection to ssh host was lost: remote commands ended early"), True,
                 id="connection-lost"),
    pytest.param(EndpointError("remote commands ended early: no output"), False, id="a-shell-that-ended"),
    pytest.param(EndpointError("unexpected output from remote host: 'x'"), False, id="garbled"),
])
def test_a_survey_without_an_answer_neither_confirms_nor_contradicts(monkeypatch, error, unanswered):
    """The plan does not hold either way; but a transfer that failed beside a survey that got no
    answer failed for the connection (destination_sync: it fails, it is not planned again)."""
    predicted = folder_forecast.Predicted(FolderListing(FOLDER, dict(LEFT), set()), EndTools(), "abc1")

    def failing(endpoint, runner):
        raise error

    monkeypatch.setattr(folder_forecast, "survey", failing)
    forecast = folder_forecast.FolderForecast(_dest(), None, predicted, lambda dest, survey: survey.listing)
    assert forecast.settle() is False and forecast.problem is error
    assert forecast.unanswered is unanswered


def test_a_survey_that_fails_or_is_refused_by_the_run_is_no_agreement(monkeypatch):
    predicted = folder_forecast.Predicted(FolderListing(FOLDER, dict(LEFT), set()), EndTools(), "abc1")

    def unreachable(endpoint, runner):
        raise EndpointError("connection closed")

    monkeypatch.setattr(folder_forecast, "survey", unreachable)
    forecast = folder_forecast.FolderForecast(_dest(), None, predicted, lambda dest, survey: survey.listing)
    assert forecast.settle() is False and "connection closed" in str(forecast.problem)

    def same_filesystem(dest, survey):
        raise EndpointError("refused (rule 8)")

    monkeypatch.setattr(folder_forecast, "survey", lambda endpoint, runner: _survey(zstd=False, proto2=False))
    forecast = folder_forecast.FolderForecast(_dest(), None, predicted, same_filesystem)
    assert forecast.settle() is False and "rule 8" in str(forecast.problem)
