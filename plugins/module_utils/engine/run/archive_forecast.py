# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""An archive store's listing asked while the run goes on: the stream starts from the listing the
last run left (its forecast), and is kept only if the store's own listing agrees (rule 1). A
repository on this machine whose files say nothing was written to it since is not listed at all."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

from ..host import state_store
from ..host.overlap import InBackground
from ..model import archives
from ..model.errors import BackupError
from ..model.log import LOG


#: In the job's state folder: each archive store's archives after the job's last run there.
FORECAST_FILE = "archive-forecast.json"


class Forecast:
    """A stream to `dest` planned on `predicted` (a FolderListing: what the job's last run left
    there), sent while the store is listed. Armed for its first send: the stream waits at its end
    for the run's word, `go` only when the listing's holdings equal the forecast's; otherwise
    `abort` (at once, while it still flows), and the store saves nothing (rule 2)."""

    #: Once it agrees, the store's listing is the destination's (a listing beside its own write shows
    #: nothing of it; an ssh host's survey may predate the run's arrival: folder_forecast.py).
    keeps_listing = True
    #: A listing that failed stops the stream (no word is abort): that stream is always planned again.
    unanswered = False

    def __init__(self, dest, runner, predicted):
        self.dest = dest
        self.predicted = predicted
        self.arriving = set()  # the snapshots sent on this forecast
        self.in_flight = InBackground(dest.list_backups, runner, True)  # listed beside a write: the stream's
        self.agreed = None  # None: not settled yet; then True or False
        self.real = None  # the store's listing once settled (None: it could not be listed)
        self._folder = None
        self._judge = None
        self._alive = None  # the descriptor whose lock says the run may still give its word

    def arm(self) -> None:
        """Before the stream starts: the file its end waits on, and the thread that writes it."""
        import fcntl
        self._folder = tempfile.mkdtemp(prefix="btrfs-backup-verdict-")
        self.dest.verdict_path = os.path.join(self._folder, "verdict")
        # Held until the word is given: a stream whose run died (killed) stops instead of waiting.
        self._alive = os.open(self.dest.verdict_path + ".run", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._alive, fcntl.LOCK_EX)
        self._judge = threading.Thread(target=self._write_verdict, daemon=True)
        self._judge.start()

    def _write_verdict(self):
        try:
            word = "go" if self.settle() else "abort"
            temp = self.dest.verdict_path + ".tmp"
            with open(temp, "w") as handle:
                handle.write(word + "\n")
            os.rename(temp, self.dest.verdict_path)  # whole or not at all for the stream that reads it
        finally:
            self._let_go()

    def _let_go(self):
        """No word comes any more: a stream still waiting for one stops (no word is abort)."""
        alive, self._alive = self._alive, None
        if alive is not None:
            os.close(alive)

    def disarm(self) -> None:
        """After the stream: the word was given (the judge is done) and its file is removed."""
        if self._judge is not None:
            self._judge.join()
            self._judge = None
        self._let_go()
        self.dest.verdict_path = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def settle(self) -> bool:
        """Whether the store's listing agrees with the forecast (waits for it; False when it failed)."""
        if self.agreed is None:
            try:
                self.real = self.in_flight.result()
            except BackupError as err:
                LOG.info("%s: listing beside the stream failed (%s); listing again", self.dest.id, err)
                self.real = None
            self.agreed = self.real is not None and \
                archives.holdings(self.real.children) == archives.holdings(self.predicted.children)
            if not self.agreed:
                LOG.info("%s holds other archives than the last run left: the stream sent on that "
                         "forecast is stopped and planned again", self.dest.id)
        return self.agreed


def _recorded(identity) -> dict | None:
    """The forecast file's stores (dest id -> entry), {} without one; None when it cannot be read."""
    return state_store.read_forecasts(identity, FORECAST_FILE)


def recorded_stores(identity) -> set:
    """The archive stores whose forecast the job's last run there left."""
    return set(_recorded(identity) or ())


def load_forecast(identity, dest):
    """The listing the job's last run left at `dest` (FolderListing), empty for a store the job
    has not recorded; None when the record cannot be read (then the run lists first)."""
    recorded = _recorded(identity)
    if recorded is None:
        return None
    records = archives.forecast_records(dest.settings.job, recorded.get(dest.id, {}))
    return None if records is None else dest.listing_of(records)


def unwritten_since_recorded(identity, dest) -> bool:
    """Whether the repository's files say that nothing was written to it since the job's last run
    there recorded its forecast (host/endpoints/archive.py repository_state): then that forecast
    is what it holds, and it needs no listing. Never for a store at another host."""
    recorded = _recorded(identity)
    if not recorded:
        return False
    state = archives.forecast_repository_state(recorded.get(dest.id))
    return state is not None and state == dest.repository_state()


def save_forecasts(identity, left: dict, states: dict | None = None) -> None:
    """Record what each archive store holds after this run (`left`: dest id -> name -> Subvolume,
    None: not known, the next run lists first) and, where it could tell, its repository's state
    after this run's last write (`states`: dest id -> repository_state()); best effort: without it
    the next run lists first."""
    entries = {dest_id: None if children is None else archives.forecast_entry(children, (states or {}).get(dest_id))
               for dest_id, children in left.items()}
    try:
        state_store.update_forecasts(identity, FORECAST_FILE, entries)
    except (OSError, BackupError) as err:
        LOG.warning("the archive stores' forecast was not written (%s): the next run lists them first", err)
