# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""An ssh host's backup folder surveyed while the run goes on: a run whose one destination took the
job's last run plans on what that run left there (its forecast), takes its snapshot and sends at
once, and the survey's answer is read beside the stream. The receive's own command refuses another
filesystem; what was planned on a forecast the survey contradicts is planned again on the survey."""

from __future__ import annotations

from ..host import state_store
from ..host.destination_survey import survey
from ..host.listing import FolderListing, Subvolume
from ..host.overlap import InBackground
from ..host.streams import EndTools
from ..model import folder_forecast
from ..model.errors import BackupError, UnreachableError
from ..model.log import LOG
from ..model.server_mode import NOT_SERVE

#: In the job's state folder: each ssh host's folder after the job's last run there.
FORECAST_FILE = "folder-forecast.json"


class Predicted:
    """What the job's last run left at a host's folder: its `listing` (FolderListing), the host's
    `tools` (EndTools) and the folder's `filesystem` id."""

    __slots__ = ("listing", "tools", "filesystem")

    def __init__(self, listing, tools, filesystem):
        self.listing, self.tools, self.filesystem = listing, tools, filesystem


def load_forecast(identity, dest) -> Predicted | None:
    """What the job's last run left at `dest` (Predicted), None when it recorded nothing there or
    the record cannot be read: then the run surveys first."""
    facts = folder_forecast.read_entry((state_store.read_forecasts(identity, FORECAST_FILE) or {}).get(dest.id),
                                       dest.path)
    if facts is None:
        return None
    children = {fields["name"]: Subvolume(**fields) for fields in facts["subvolumes"]}
    return Predicted(FolderListing(dest.path, children, set()), EndTools(zstd=facts["zstd"], proto2=facts["proto2"]),
                     facts["filesystem"])


def recorded_filesystem(identity, dest) -> str | None:
    """The filesystem id the job's last record says the folder of `dest` is on (None: none)."""
    predicted = load_forecast(identity, dest)
    return predicted.filesystem if predicted is not None else None


def save_forecasts(identity, entries: dict) -> None:
    """Record each host's folder after this run (dest id -> folder_forecast.forecast_entry, None:
    not known, the next run surveys first); best effort."""
    try:
        state_store.update_forecasts(identity, FORECAST_FILE, entries)
    except (OSError, BackupError) as err:
        LOG.warning("the ssh hosts' forecast was not written (%s): the next run surveys them first", err)


class FolderForecast:
    """A run's plan for `dest` made on `predicted` (Predicted) while the host is surveyed
    (destination_survey, one remote command beside the stream). `arriving`: the names this run
    sends there, which a survey taken meanwhile may show or not."""

    keeps_listing = False  # the survey may predate this run's arrivals (archive_forecast.Forecast)

    def __init__(self, dest, runner, predicted, accept):
        self.dest = dest
        self.predicted = predicted.listing
        self.tools = predicted.tools
        self.accept = accept  # the run's reading of the survey (DestinationFolders.accept_survey)
        self.arriving = set()
        self.in_flight = InBackground(survey, dest, runner)
        self.agreed = None  # None: not settled yet; then True or False
        self.real = None  # never remembered as the folder's listing: it may predate this run's arrivals
        self.problem = None  # why the survey failed: what the host said, or its lost connection (unanswered)

    @property
    def unanswered(self) -> bool:
        """Whether the survey failed for the connection, not for what the host said: a stream that
        failed meanwhile failed for the same reason, not for a wrong forecast."""
        return isinstance(self.problem, UnreachableError)

    def arm(self) -> None:
        """Nothing to arm: the receive's command checks the filesystem itself."""

    def disarm(self) -> None:
        """Nothing to disarm (see arm)."""

    def settle(self) -> bool:
        """Whether the survey agrees with the forecast (waits for it; False when it failed, found a
        problem, or found other subvolumes than this run's arrivals), as the run reads it (`accept`:
        the host's tools learned, rule 8)."""
        if self.agreed is None:
            same_host = False
            try:
                found = self.in_flight.result()
                self.real = self.accept(self.dest, found)
                # What the stream's commands were planned for: a plain host's shell, with these tools.
                same_host = found.mode == NOT_SERVE and (found.tools.zstd, found.tools.proto2) == \
                    (self.tools.zstd, self.tools.proto2)
            except BackupError as err:
                self.problem, self.real = err, None
            self.agreed = same_host and folder_forecast.holdings(self.real.children, self.arriving) == \
                folder_forecast.holdings(self.predicted.children, self.arriving)
            if self.unanswered:
                LOG.info("%s: the survey beside the stream got no answer (%s): the forecast is neither "
                         "confirmed nor contradicted", self.dest.id, self.problem)
            elif not self.agreed:
                LOG.info("%s: %s; what was planned on the job's last run there is planned again", self.dest.id,
                         f"the survey found a problem ({self.problem})" if self.problem is not None
                         else "it is not what the last run left (its subvolumes, its tools or what runs there)")
        return self.agreed
