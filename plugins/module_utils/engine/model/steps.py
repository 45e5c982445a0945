# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The typed steps a run is made of; each says in plan words what carrying it out does (pure).

CreateFolder           create `path` at `endpoint`; `what` and `shown` name it in the plan
TakeSnapshot           a read-only snapshot of `source_path` at `path`, not before the time `not_before` (its
                       name's second; None: now); `label` names it in the plan
DeletePartialReceives  delete what failed receives left at a destination, before anything is sent (rule 2)
ClearLocks             settle a destination's locks of `names`: their partial receives are gone (rule 3)
RemoveLocks            forget a destination's locks on request (--remove-locks)
Send                   `snapshot` from `source` to `destinations` in one stream (fanned out), incremental
                       from `parent` or full; a received subvolume is checked (a stream sink cannot be)
Delete                 delete subvolumes in one folder; `what`, `where` and `reason` word the plan
WriteLocks             replace the lock file of `store` with `table`
Receive                `backup` from `origin` into a new staging `folder` at `endpoint` (restore), or incremental
                       from `parent` into the folder where that backup was received before
Rename                 rename `path` to `new_path` at `endpoint` (a restore target moved aside)
SnapshotAt             a writable or read-only snapshot of `source_path` at `path` (the restored target)
MarkOrigin             record on the restored `path` which backup it came from (`origin`), so a rerun changes nothing
RemoveRunFiles         remove the source's run files (locks, state) that a writable restore at `path` brought along
"""

from __future__ import annotations


class _Step:
    """A step: a record built with keyword arguments, one per field, that cannot be changed after;
    `template` says in plan words what carrying it out does."""

    __slots__ = ()
    template = ""

    def __init__(self, **fields):
        if set(fields) != set(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {', '.join(self.__slots__)}, not {', '.join(fields)}")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"a {type(self).__name__} step does not change")

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"

    def lines(self) -> list:
        """The plan lines: the template filled in, once per path (or destination) of a step over several."""
        if "paths" in self.__slots__:
            return [self.template.format(step=self, path=path) for path in self.paths]
        if "destinations" in self.__slots__:
            return [self.template.format(step=self, dest=dest) for dest in self.destinations]
        return [self.template.format(step=self)]


def _step(name, fields, template):
    """A step type (a plain class: defining it costs far less at start-up than a namedtuple)."""
    return type(name, (_Step,), {"__slots__": tuple(fields.split()), "template": template, "__module__": __name__})


CreateFolder = _step("CreateFolder", "endpoint path parents what shown", "create {step.what} {step.shown}")
TakeSnapshot = _step("TakeSnapshot", "endpoint source_path path label not_before",
                     "create {step.label} {step.path} of {step.source_path}")
DeletePartialReceives = _step("DeletePartialReceives", "endpoint paths folder where", "delete partial receive {path} at {step.where}")
ClearLocks = _step("ClearLocks", "destination names", "clear locks of {step.listed} for {step.destination.id}")
RemoveLocks = _step("RemoveLocks", "destination names", "remove locks of {step.listed} for {step.destination.id}")
ClearLocks.listed = RemoveLocks.listed = property(lambda step: ", ".join(step.names))
Send = _step("Send", "source snapshot parent destinations", "send {step.snapshot.name} to {dest.id} ({step.mode})")
Send.mode = property(lambda step: f"incremental from {step.parent.name}" if step.parent else "full")
Delete = _step("Delete", "endpoint paths folder what where reason", "delete {step.what}{path}{step.at}{step.why}")
Delete.at = property(lambda step: f" at {step.where}" if step.where else "")
Delete.why = property(lambda step: f" ({step.reason})" if step.reason else "")
WriteLocks = _step("WriteLocks", "store table", "write {step.store.path}")
# A restore's steps.
Receive = _step("Receive", "origin backup parent endpoint folder",
                "receive {step.backup.name} from {step.origin.id} into {step.folder}{step.mode}")
Receive.mode = property(lambda step: f" (incremental from {step.parent.name})" if step.parent else "")
Rename = _step("Rename", "endpoint path new_path", "rename {step.path} to {step.new_path}")
SnapshotAt = _step("SnapshotAt", "endpoint source_path path writable", "{step.kind} snapshot of it at {step.path}")
SnapshotAt.kind = property(lambda step: "writable" if step.writable else "read-only")
MarkOrigin = _step("MarkOrigin", "path origin", "mark {step.path} as restored from {step.origin}")
RemoveRunFiles = _step("RemoveRunFiles", "path", "remove the source's run files restored into {step.path}")


def render(steps) -> list:
    """The plan: one line per effect, in the order the steps are carried out."""
    return [line for step in steps for line in step.lines()]
