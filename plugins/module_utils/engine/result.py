# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The structured result of a run: what was created, sent, deleted and why, and what went wrong."""

import logging

LOG = logging.getLogger("btrfs_backup")


class DestinationResult(object):
    """Everything that happened at one destination."""

    def __init__(self, dest_id):
        self.id = dest_id
        self.status = "ok"
        self.error = None
        self.plan = None
        self.transfers = []
        self.partials_deleted = []
        self.locks_cleared = []
        self.conflicts = []
        self.present = None  # source snapshot name -> backup, once the destination was listed

    def fail(self, err):
        self.status = "failed"
        self.error = str(err) if self.error is None else "%s; %s" % (self.error, err)

    def as_dict(self):
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "transfers": self.transfers,
            "partials_deleted": self.partials_deleted,
            "locks_cleared": self.locks_cleared,
            "conflicts": self.conflicts,
        }


class RetentionSection(object):
    """Retention decisions at one place (the source or a destination)."""

    def __init__(self, where, policy):
        self.where = where
        self.policy = policy.describe()
        self.kept = []
        self.deleted = []

    def record(self, decision):
        if decision.keep:
            self.kept.append({"name": decision.name, "reasons": list(decision.reasons)})
        else:
            self.deleted.append({"name": decision.name,
                                 "reason": "not kept by retention policy (%s)" % self.policy})

    def as_dict(self):
        return {"where": self.where, "policy": self.policy, "kept": self.kept,
                "deleted": self.deleted}


class JobResult(object):
    """One run's outcome; `as_dict()` is what --json prints and what the modules return."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.changed = False
        self.source = None
        self.snapshot_folder = None
        self.snapshot = None
        self.destinations = []
        self.retention = []
        self.locks_before = {}
        self.locks_after = {}
        self.locks_removed = []
        self.plan = []
        self.errors = []
        self.error_types = []
        self.warnings = []

    @property
    def failed(self):
        return bool(self.errors)

    def fail(self, err, where=None):
        """Record an error and report it at once (long runs should not keep it to the end)."""
        message = "%s: %s" % (where, err) if where else str(err)
        self.errors.append(message)
        self.error_types.append(type(err).__name__)
        LOG.error("%s", message)

    def warn(self, message):
        self.warnings.append(message)
        LOG.warning("%s", message)

    def retention_section(self, where, policy):
        section = RetentionSection(where, policy)
        self.retention.append(section)
        return section

    def as_dict(self):
        return {
            "changed": self.changed,
            "failed": self.failed,
            "check_mode": self.check_mode,
            "source": self.source,
            "snapshot_folder": self.snapshot_folder,
            "snapshot": self.snapshot,
            "destinations": [d.as_dict() for d in self.destinations],
            "retention": [r.as_dict() for r in self.retention],
            "locks": self.locks_after,
            "locks_removed": self.locks_removed,
            "plan": self.plan,
            "errors": self.errors,
            "warnings": self.warnings,
        }
