# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The structured result of a run: what was created, sent, deleted and why, and what went wrong."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

from .steps import render
from .log import LOG

if TYPE_CHECKING:
    from .retention import Decision, Policy


class DestinationResult:
    """Everything that happened at one destination."""

    def __init__(self, dest_id):
        self.id = dest_id
        self.status = "ok"
        self.error = None
        self.plan = None
        self.transfers = []
        self.partial_receives_deleted = []
        self.locks_cleared = []
        self.conflicts = []
        self.present = None  # source snapshot name -> backup, once the destination was listed
        self.backups = {}  # name -> complete backup of ours there (what its retention may weigh)
        self.unsent_snapshots = None  # snapshots at the source it has yet to receive (None: unknown)
        self.unsent_ceiling = None  # out of reach at max_unsent_snapshots: "released" or "stopped"

    def fail(self, err: object) -> None:
        self.status = "failed"
        self.error = str(err) if self.error is None else f"{self.error}; {err}"

    # What the result reports, in this order, as the modules' and the CLI's JSON.
    _REPORTED = ("id", "status", "error", "transfers", "partial_receives_deleted", "locks_cleared", "conflicts",
                 "unsent_snapshots", "unsent_ceiling")

    def as_dict(self) -> dict:
        report = {name: getattr(self, name) for name in self._REPORTED}
        report["partials_deleted"] = self.partial_receives_deleted  # the earlier name, still read by users
        return report


class RetentionSection:
    """Retention decisions at one place (the source or a destination)."""

    def __init__(self, *, where, policy):
        self.where = where
        self.policy = policy.describe()
        self.kept = []
        self.deleted = []

    def record(self, decision: Decision) -> None:
        if decision.keep:
            self.kept.append({"name": decision.name, "reasons": list(decision.reasons)})
        else:
            self.deleted.append({"name": decision.name,
                                 "reason": f"not kept by retention policy ({self.policy})"})

    def not_deleted(self, reason: str) -> None:
        """The deletion failed, was refused or is not the run's to do: what the policy let go is
        still there, and says why."""
        self.kept.extend({"name": d["name"], "reasons": [reason]} for d in self.deleted)
        self.deleted = []

    def as_dict(self) -> dict:
        return {"where": self.where, "policy": self.policy, "kept": self.kept,
                "deleted": self.deleted}


class JobResult:
    """One run's outcome; `as_dict()` is what --json prints and what the modules return."""

    def __init__(self, *, check_mode=False):
        self.check_mode = check_mode
        self.identity = None  # the job's JobIdentity, once its source was resolved (not in as_dict)
        self.source = None
        self.snapshot_folder = None
        self.max_unsent_snapshots = None
        self.snapshot = None
        self.destinations = []
        self.retention = []
        self.locks_before = {}
        self.locks_after = {}
        self.locks_removed = []
        self.steps = []  # carried out (or, in check mode, planned), in order
        self.errors = []
        self.error_types = []
        self.warnings = []

    @property
    def changed(self) -> bool:
        """Every step changes something (in check mode: would), down to a lock file rewrite."""
        return bool(self.steps)

    @property
    def plan(self) -> list[str]:
        """Check mode's plan, rendered from the steps; a real run reports its effects elsewhere."""
        return render(self.steps) if self.check_mode else []

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def fail(self, err: object, where: str | None = None) -> None:
        """Record an error and report it at once (long runs should not keep it to the end)."""
        message = f"{where}: {err}" if where else str(err)
        self.errors.append(message)
        self.error_types.append(type(err).__name__)
        LOG.error("%s", message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        LOG.warning("%s", message)

    def retention_section(self, where: str, policy: Policy) -> RetentionSection:
        section = RetentionSection(where=where, policy=policy)
        self.retention.append(section)
        return section

    def as_dict(self) -> dict:
        return {
            "changed": self.changed,
            "failed": self.failed,
            "check_mode": self.check_mode,
            "source": self.source,
            "snapshot_folder": self.snapshot_folder,
            "snapshot": self.snapshot,
            "max_unsent_snapshots": self.max_unsent_snapshots,
            "destinations": [d.as_dict() for d in self.destinations],
            "retention": [r.as_dict() for r in self.retention],
            "locks": self.locks_after,
            "locks_removed": self.locks_removed,
            "plan": self.plan,
            "errors": self.errors,
            "warnings": self.warnings,
        }
