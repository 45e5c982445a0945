# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Everything a run must know of a destination at another host before sending, in one remote
command: its folder's listing (paths, filesystem, subvolumes), its tools, and whether it is
`btrfs-backup serve`; the answer is read by a pure function."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

from ..model.errors import BackupError, EndpointError
from ..model.server_mode import MODE_PROBE, parse_features, parse_mode
from .capabilities import end_tools_from
from .listing import build_listing, listing_commands

if TYPE_CHECKING:
    from .endpoints.base import Endpoint
    from .listing import FolderListing
    from .runner import CommandResult, CommandRunner
    from .streams import EndTools

#: Asked after the listing, in the same batch: the destination's btrfs and zstd, and what it is
#: (a plain host's shell echoes the mode probe; serve answers its own mode).
TOOL_COMMANDS = ((["btrfs", "--version"], True), (["zstd", "--version"], False), (MODE_PROBE, False))


class Survey:
    """A destination's answer: its folder's `listing`, or the `problem` that says why there is
    none (the same error a listing alone raises); its `tools` (EndTools), serve `mode`
    (server_mode's answer, None: not known) and what that serve accepts beyond every serve's
    shapes (`features`, server_mode.parse_features)."""

    __slots__ = ("listing", "problem", "tools", "mode", "features")

    def __init__(self, listing: FolderListing | None, problem: BackupError | None, tools: EndTools,
                 mode: str | None, features: frozenset = frozenset()):
        self.listing, self.problem, self.tools, self.mode = listing, problem, tools, mode
        self.features = features


def survey_commands(folder: str) -> list[tuple[list[str], bool]]:
    """The batch of one survey, as (argv, needs_privileges) pairs: the listing round, then the tools."""
    return listing_commands(folder) + [(list(argv), privileged) for argv, privileged in TOOL_COMMANDS]


def parse_survey(folder: str, results: list[CommandResult]) -> Survey:
    """Pure: the survey's results (one per survey_commands() command) as a Survey. A missing
    tool is a fact (no zstd: plain streams; no btrfs: the listing's error says so); a folder that
    is missing or not on btrfs is the listing's own error, kept for the caller to raise."""
    if len(results) != len(survey_commands(folder)):
        raise EndpointError(f"unexpected answer from the destination of {folder}: "
                            f"{len(results)} results for {len(survey_commands(folder))} commands")
    listing_results, (btrfs, zstd, mode) = results[:-len(TOOL_COMMANDS)], results[-len(TOOL_COMMANDS):]
    tools = end_tools_from(btrfs.stdout if btrfs.ok else "", zstd.ok)
    try:
        listing, problem = build_listing(folder, (), listing_results), None
    except BackupError as err:
        listing, problem = None, err
    return Survey(listing, problem, tools, parse_mode(mode.stdout) if mode.ok else None,
                  parse_features(btrfs.stdout))


def survey(endpoint: Endpoint, runner: CommandRunner, folder: str | None = None) -> Survey:
    """Ask `endpoint` (a host across a network) everything at once: one remote command. An answer
    that cannot be read (a connection cut short, garbled output) raises, and nothing is learned."""
    folder = folder or endpoint.path
    return parse_survey(folder, endpoint.run_batch(runner, survey_commands(folder)))
