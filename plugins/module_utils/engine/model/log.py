# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The engine's one logger, "btrfs_backup", with the standard library's logging loaded only when a
message may be shown. logging and what it imports (traceback, tokenize, textwrap, string) are a
tenth of a command-line run with nothing to send, whose messages are all under its level."""

from __future__ import annotations

import sys

NAME = "btrfs_backup"
# logging's own level numbers, so that a message can be weighed without importing it.
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}


class EngineLog:
    """Logs like logging.getLogger(NAME), which it loads at the first message at or over its
    threshold. The threshold is 0 unless a front end deferred logging's set-up (every message then
    loads it, as a plain logger would), and 0 again once logging is loaded."""

    def __init__(self) -> None:
        self.threshold = 0
        self._configure = None
        self._logger = None

    def defer(self, threshold: int, configure) -> None:
        """Drop messages under `threshold` unseen; `configure(logger)` sets the real logger up when
        a message at or over it, or a handler, first needs it (at once if logging is loaded)."""
        self._configure = configure
        if self._logger is not None or "logging" in sys.modules:
            self.real()
        else:
            self.threshold = threshold

    def real(self):
        """The logging.Logger itself, loading logging and running the deferred set-up."""
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(NAME)
        if self._configure is not None:
            configure, self._configure = self._configure, None
            configure(self._logger)
        self.threshold = 0  # from now on the logger's own level decides, as for any logger
        return self._logger

    def debug(self, message, *args) -> None:
        if DEBUG >= self.threshold:
            self.real().debug(message, *args)

    def info(self, message, *args) -> None:
        if INFO >= self.threshold:
            self.real().info(message, *args)

    def warning(self, message, *args) -> None:
        if WARNING >= self.threshold:
            self.real().warning(message, *args)

    def error(self, message, *args) -> None:
        if ERROR >= self.threshold:
            self.real().error(message, *args)

    def addHandler(self, handler) -> None:  # pylint: disable=invalid-name
        self.real().addHandler(handler)

    def removeHandler(self, handler) -> None:  # pylint: disable=invalid-name
        self.real().removeHandler(handler)

    def shutdown(self) -> None:
        """Flush and close the handlers, if logging was ever loaded (logging.shutdown)."""
        if self._logger is not None:
            import logging

            logging.shutdown()


LOG = EngineLog()
