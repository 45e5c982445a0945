# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The retention phase: which snapshots (source) and backups (each destination) go, and why the rest stay."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster


from ..model import archives, names
from ..model.errors import BackupError
from ..model.planning import counterpart, describe_foreign
from ..model.result import RetentionSection
from ..model.retention import plan_retention
from ..model.steps import Delete
from ..model.log import LOG

if TYPE_CHECKING:
    from ..model.retention import Policy


# What `serve --append-only` answers to a deletion of a complete backup (serve.APPEND_ONLY): a
# serve from before the mode probe (server_mode) says it is append-only only this way.
APPEND_ONLY_REFUSAL = "refused: append-only"
SERVER_PRUNES = "the server is append-only: its own retention (btrfs-backup prune) decides"


def weigh(items: dict, policy, protected: dict, now, prefix: str, section: RetentionSection,
          parent_of: dict | None = None) -> tuple:
    """Record in `section` what to keep of `items` (name -> Subvolume) and why; the paths it lets go.
    `parent_of` (archives: name -> its parent's name): what is kept keeps its whole chain (rule 4)."""
    dated = [(n, names.parse_time(prefix, n)) for n in items]
    protected = {name: list(why) for name, why in protected.items()}
    while True:
        decisions = plan_retention(dated, policy, protected, now)
        needed = archives.chain_protection([d.name for d in decisions if d.keep], parent_of or {})
        missing = {name: why for name, why in needed.items() if name in items and why not in protected.get(name, ())}
        if not missing:
            break
        for name, why in missing.items():
            protected.setdefault(name, []).append(why)
    for decision in decisions:
        section.record(decision)
    return tuple(items[d.name].path for d in decisions if not d.keep)


def retain(executor, endpoint, items: dict, decisions, *, where: str, policy) -> dict:
    """One folder's retention carried out: each decision recorded, what goes deleted in one step.
    Returns changed, plan, policy, kept, deleted, and the names before and after."""
    section = RetentionSection(where=where, policy=policy)
    for decision in decisions:
        section.record(decision)
    doomed = tuple(items[d.name].path for d in decisions if not d.keep)
    if doomed:
        executor.carry_out(Delete(endpoint=endpoint, paths=doomed, folder=endpoint.path, what="", where=None,
                                  reason="retention"))
    return {"changed": executor.changed, "plan": executor.plan(), "policy": section.policy,
            "kept": section.kept, "deleted": section.deleted,
            "before": sorted(items), "after": [k["name"] for k in section.kept]}


def source_protection(snapshots, locks, destinations, present_by_dest, continues_from=None) -> dict:
    """Pure: why each snapshot must stay whatever the policy says (rule 4): its locks, and
    being the newest that a destination holds (that destination's next incremental parent);
    for a destination out of reach at max_unsent_snapshots (`continues_from`: its id -> name),
    the newest one the last run that reached it saw it hold."""
    protected = {s.name: locks.reasons(s.name) for s in snapshots}
    continues_from = continues_from or {}
    for dest in destinations:
        if dest.id in continues_from:
            name = continues_from[dest.id]
            if name in protected:
                protected[name].append(f"newest snapshot that {dest.id} held when last reached (it "
                                       "continues from it when it is back; max_unsent_snapshots)")
            continue
        present = present_by_dest.get(dest.id) or {}
        common = [s.name for s in snapshots if s.name in present]
        if common:
            protected[common[-1]].append(f"newest snapshot that {dest.id} holds (its next incremental parent)")
    return protected


def our_backups(held: dict, snapshots, prefix: str) -> tuple:
    """Pure: (complete backups of the naming scheme at a destination, why others under a
    snapshot's name are not ours): a foreign one is never counted or deleted (rule 1)."""
    by_name = {s.name: s for s in snapshots}
    backups, foreign = {}, []
    for name, sub in held.items():
        if not (sub.complete and names.is_snapshot_name(prefix, name)):
            continue
        if name in by_name and counterpart(by_name[name], [sub]) is None:
            foreign.append(describe_foreign(sub, by_name[name]))
            continue
        backups[name] = sub
    return backups, foreign


def archive_parents(backups: dict) -> dict:
    """Pure: each archive's parent archive by snapshot name (None: a full stream, or a parent
    that is not among them), from the UUIDs in their labels."""
    by_uuid = {sub.received_uuid: name for name, sub in backups.items()}
    return {name: by_uuid.get(sub.parent_uuid) for name, sub in backups.items()}


class RetentionPhase:
    """Applies the policies of one run, after its transfers (what arrived decides what may go)."""

    def __init__(self, executor, result, *, prefix, now, source=None):
        self.executor = executor
        self.source = source  # the source endpoint (the probe of the destinations asks for it)
        self.result = result
        self.prefix = prefix
        self.now = now

    def at_source(self, source, snapshots, policy, destinations, present_by_dest, continues_from=None) -> frozenset:
        """Source retention; the names of the snapshots it deletes (check mode: would delete).
        `continues_from`: the destinations out of reach that it may release snapshots of, each with
        the snapshot it keeps for it (see unsent.at_ceiling)."""
        continues_from = continues_from or {}
        unknown = [d.id for d in destinations if present_by_dest.get(d.id) is None and d.id not in continues_from]
        if unknown and not policy.keeps_everything:
            # Without knowing what a destination holds, its next incremental parent is unknown.
            self.result.warn("source retention skipped: could not check " + ", ".join(unknown))
            return frozenset()
        protected = source_protection(snapshots, self.executor.locks, destinations, present_by_dest, continues_from)
        return self._apply(source.endpoint, {s.name: s for s in snapshots}, policy, protected, source.folder,
                           "source")

    def at_destination(self, dest: object, snapshots: list, outcome: object, policy: Policy) -> None:
        if policy.keeps_everything:
            return
        backups, foreign = our_backups(outcome.backups, snapshots, self.prefix)
        for reason in foreign:
            self.result.warn(f"{dest.id}: {reason}")
        protected = {name: [] for name in backups}
        common = [s.name for s in snapshots if s.name in outcome.present]
        if common:
            protected.setdefault(common[-1], []).append(
                "newest backup whose snapshot is still at the source (next incremental parent)")
        append_only = self.executor.probe(self.source).append_only(dest)
        parent_of = archive_parents(backups) if dest.holds_archives else None
        self._apply(dest, backups, policy, protected, dest.path, dest.id, append_only, parent_of)

    def _apply(self, endpoint, items, policy, protected, folder, where, append_only=False, parent_of=None) -> frozenset:
        """Weigh and delete; the names deleted (none when the deletion failed or was refused)."""
        section = self.result.retention_section(where, policy)
        doomed = weigh(items, policy, protected, self.now, self.prefix, section, parent_of)
        if not doomed:
            return frozenset()
        if append_only:
            # Rule 10: the server said it keeps complete backups; a deletion would only be refused
            # (and each refusal in its log must mean an attack).
            section.not_deleted(SERVER_PRUNES)
            LOG.info("%s is append-only: the server's own retention (btrfs-backup prune) deletes its "
                     "backups, not this run", where)
            return frozenset()
        try:
            self.executor.carry_out(Delete(endpoint=endpoint, paths=doomed, folder=folder, what="",
                                           where=where, reason="retention"))
        except BackupError as err:
            if APPEND_ONLY_REFUSAL in str(err):
                # Rule 10: an append-only server keeps its backups until its own retention.
                section.not_deleted(SERVER_PRUNES)
                self.result.warn(f"{where} is append-only: the server's own retention (btrfs-backup "
                                 "prune) deletes its backups, not this run (its serve refused the "
                                 "deletion without having said so beforehand: is it older than this host's?)")
                return frozenset()
            section.not_deleted(f"not deleted: {err}")
            self.result.fail(err, where=f"retention at {where}")
            return frozenset()
        return frozenset(d["name"] for d in section.deleted)
