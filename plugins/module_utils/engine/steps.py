"""The typed steps a run is made of; each says in plan words what carrying it out does (pure)."""

from __future__ import annotations

import collections


def _step(name, fields, doc):
    """An immutable record built with keyword arguments (namedtuple: no import cost at start-up)."""
    base = collections.namedtuple(name, fields)
    base.__doc__ = doc
    return base


class CreateFolder(_step("CreateFolder", "endpoint path parents what shown",
                         "Create `path` at `endpoint`; `what` and `shown` name it in the plan.")):
    __slots__ = ()

    def lines(self) -> list:
        return [f"create {self.what} {self.shown}"]


class TakeSnapshot(_step("TakeSnapshot", "endpoint source_path path label",
                         "A read-only snapshot of `source_path` at `path`; `label` names it in the plan.")):
    __slots__ = ()

    def lines(self) -> list:
        return [f"create {self.label} {self.path} of {self.source_path}"]


class DeletePartialReceives(_step("DeletePartialReceives", "endpoint paths folder where",
                                  "Delete what failed receives left (invariant 2), before anything is sent.")):
    __slots__ = ()

    def lines(self) -> list:
        return [f"delete partial receive {path} at {self.where}" for path in self.paths]


class ClearLocks(_step("ClearLocks", "destination names",
                       "Settle a destination's locks of `names`: their partial receives are gone.")):
    __slots__ = ()

    def lines(self) -> list:
        return [f"clear locks of {', '.join(self.names)} for {self.destination.id}"]


class RemoveLocks(_step("RemoveLocks", "destination names",
                        "Forget a destination's locks on request (--remove-locks).")):
    __slots__ = ()

    def lines(self) -> list:
        return [f"remove locks of {', '.join(self.names)} for {self.destination.id}"]


class Send(_step("Send", "source snapshot parent destination verify",
                 "Send `snapshot` from `source` (incremental from `parent`, or full) to `destination`; "
                 "`verify` checks the received subvolume (not possible for a stream sink).")):
    __slots__ = ()

    @property
    def mode(self) -> str:
        return f"incremental from {self.parent.name}" if self.parent else "full"

    def lines(self) -> list:
        return [f"send {self.snapshot.name} to {self.destination.id} ({self.mode})"]


class Delete(_step("Delete", "endpoint paths folder what where reason",
                   "Delete subvolumes in one folder; `what`, `where` and `reason` word the plan.")):
    __slots__ = ()

    def lines(self) -> list:
        at = f" at {self.where}" if self.where else ""
        why = f" ({self.reason})" if self.reason else ""
        return [f"delete {self.what}{path}{at}{why}" for path in self.paths]


class WriteLocks(_step("WriteLocks", "store table", "Replace the lock file with `table`.")):
    __slots__ = ()

    def lines(self) -> list:
        return [f"write {self.store.path}"]


def render(steps) -> list:
    """The plan: one line per effect, in the order the steps are carried out."""
    return [line for step in steps for line in step.lines()]
