"""Pure: a job's last-run state, updated from a run's result or a verify report (invariant 11)."""

from __future__ import annotations

from . import archives, names, resumable

STATE_VERSION = 1


def snapshot_timestamp(prefix: str, name: str) -> float | None:
    """Seconds since the epoch that snapshot `name` encodes (local time), or None."""
    when = names.parse_time(prefix, name) if name else None
    return when.timestamp() if when else None


def _newest(prefix, candidates):
    known = [n for n in candidates if n and names.is_snapshot_name(prefix, n)]
    return max(known, key=lambda n: names.sort_key(prefix, n)) if known else None


def _lock_count(locks, dest_id):
    return sum(1 for entry in (locks or {}).values() if dest_id in (entry.get("locks") or []))


def _resumable_left(transfers) -> dict | None:
    """The resumable transfer a run left unfinished at a destination: its snapshot and how much is
    staged ({"snapshot", "staged_bytes", "stream_bytes", "percent"}), or None."""
    for transfer in transfers:
        if transfer.get("status") == "failed" and transfer.get("resumable"):
            return dict(transfer["resumable"], snapshot=transfer["snapshot"])
    return None


def _stream_compressed(done, before) -> bool | None:
    """Whether the newest stream that arrived at a destination crossed compressed (kept from the
    state before when none arrived in this run; None: unknown). A run starts that destination's
    receive before its own sample decides, with the command line this one needed."""
    if not done:
        return before.get("stream_compressed")
    newest = done[-1]
    return bool(newest.get("compressed") or newest.get("compressed_bytes"))


def _receive_in_shell(done, before) -> bool | None:
    """Whether the newest stream that arrived at a destination was received in a plain ssh host's
    shell (not through serve); kept from the state before when none arrived in this run. A run
    starts such a destination's receive before it surveys the host."""
    if not done:
        return before.get("receive_in_shell")
    return bool(done[-1].get("receive_in_shell"))


def resumable_text(record: dict) -> str | None:
    """"resumable transfer of S at 63%" for a destination's record with an unfinished one."""
    left = record.get("resumable")
    if not left:
        return None
    percent = " at %d%%" % left["percent"] if left.get("percent") is not None else ""
    return "resumable transfer of %s%s" % (left["snapshot"], percent)


def archive_chain(dest_id: str, before: dict, done: list, newest: str | None) -> int | None:
    """How many archives a restore of the newest backup at an archive destination (borg, restic)
    replays: its full stream and each incremental one after it. Known from the chain recorded before
    and this run's transfers (`done`, in the order sent); None where unknown or not an archive."""
    if not archives.is_archive_location(dest_id):
        return None
    depths = {}
    if before.get("newest_backup") and before.get("archive_chain"):
        depths[before["newest_backup"]] = before["archive_chain"]
    for transfer in done:
        parent_depth = depths.get(transfer.get("parent"))
        if transfer.get("mode") == "full":
            depths[transfer["snapshot"]] = 1
        else:
            depths[transfer["snapshot"]] = parent_depth + 1 if parent_depth else None
    return depths.get(newest)


def archive_chain_text(record: dict) -> str:
    """" (chain of 3 archives)" after an archive destination's newest backup, "" where unknown."""
    chain = record.get("archive_chain")
    if not chain:
        return ""
    return " (full archive)" if chain == 1 else " (chain of %d archives)" % chain


def state_after_run(previous: dict | None, result: dict, *, job: str, prefix: str, started: float, duration: float,
                    max_age: float | None = None) -> dict:
    """The state after a run: `result` is JobResult.as_dict(), `previous` the state before (or None).

    A destination keeps what was known of it when this run did not reach it; its newest backup
    after a successful sync is the source's newest snapshot (a sync sends up to the newest).
    """
    previous = previous or {}
    retention = {r["where"]: r for r in result.get("retention") or []}
    source_section = retention.get("source")
    source_names = [k["name"] for k in source_section["kept"]] if source_section else []
    taken = (result.get("snapshot") or {}).get("name")
    newest_snapshot = _newest(prefix, source_names + [taken])
    destinations = {}
    for dest_id, record in (previous.get("destinations") or {}).items():
        destinations[dest_id] = dict(record)
    for dest in result.get("destinations") or []:
        dest_id = dest["id"]
        before = destinations.get(dest_id, {})
        done = [t for t in dest["transfers"] if t["status"] == "done"]
        ok = dest["status"] == "ok"
        newest = before.get("newest_backup")
        if ok:
            newest = _newest(prefix, [newest, newest_snapshot] + [t["snapshot"] for t in done])
        else:
            newest = _newest(prefix, [newest] + [t["snapshot"] for t in done])
        section = retention.get(dest_id)
        if section is not None:
            count = len(section["kept"])
        elif before.get("backups") is not None:
            count = before["backups"] + len(done)
        else:
            count = None
        locks = _lock_count(result.get("locks"), dest_id)
        record = dict(before)
        record.update(
            status=dest["status"],
            error=dest["error"],
            last_run=started,
            last_success=started if ok else before.get("last_success"),
            newest_backup=newest,
            newest_backup_time=snapshot_timestamp(prefix, newest),
            backups=count,
            sent_bytes=sum(t.get("bytes") or 0 for t in dest["transfers"]),
            transfers=len(done),
            locks=locks,
            locked_runs=(before.get("locked_runs") or 0) + 1 if locks else 0,
            unsent_snapshots=dest.get("unsent_snapshots"),
            unsent_ceiling=dest.get("unsent_ceiling"),
            max_unsent_snapshots=result.get("max_unsent_snapshots"),
            resumable=_resumable_left(dest["transfers"]),
            archive_chain=archive_chain(dest_id, before, done, newest),
            stream_compressed=_stream_compressed(done, before),
            receive_in_shell=_receive_in_shell(done, before),
        )
        destinations[dest_id] = record
    return {
        "version": STATE_VERSION,
        "job": job,
        "source": result.get("source"),
        "snapshot_folder": result.get("snapshot_folder"),
        "prefix": prefix,
        "max_age_seconds": max_age if max_age is not None else previous.get("max_age_seconds"),
        "last_run": {
            "start": started,
            "duration": round(duration, 3),
            "ok": not result.get("failed"),
            "changed": bool(result.get("changed")),
            "snapshot": taken,
            "newest_snapshot": newest_snapshot,
            "snapshots": len(source_names) if source_section else
            (previous.get("last_run") or {}).get("snapshots"),
            "errors": list(result.get("errors") or []),
            "warnings": list(result.get("warnings") or []),
        },
        "destinations": destinations,
    }


def record_verify(previous: dict | None, report: dict | None, *, job: str, prefix: str, when: float,
                  source: str | None = None, snapshot_folder: str | None = None) -> dict:
    """The state after `btrfs-backup verify`: `report` is verify()'s dict, or None with an error."""
    empty = {"version": STATE_VERSION, "job": job, "source": source, "snapshot_folder": snapshot_folder,
             "prefix": prefix, "max_age_seconds": None, "last_run": None, "destinations": {}}
    state = dict(previous or empty)
    destinations = {k: dict(v) for k, v in (state.get("destinations") or {}).items()}
    dest_id = report["destination"]
    record = destinations.setdefault(dest_id, {"status": None, "error": None, "newest_backup": None,
                                               "newest_backup_time": None, "locks": 0})
    problems = list(report.get("problems") or [])
    record["verify"] = {"time": when, "ok": bool(report.get("ok")) and not problems,
                        "snapshot": report.get("snapshot"),
                        "snapshot_time": snapshot_timestamp(prefix, report.get("snapshot")),
                        "problems": problems[:5] + (["..."] if len(problems) > 5 else [])}
    state["destinations"] = destinations
    return state


def with_configuration(state: dict | None, *, max_age: float | None = None) -> dict:
    """The state as the job's configuration now has it: a maximum age configured since the last
    run replaces the recorded one (as the next run would record it); None keeps the recorded."""
    current = dict(state or {"last_run": None, "destinations": {}, "max_age_seconds": None})
    if max_age is not None:
        current["max_age_seconds"] = max_age
    return current


def with_staged(state: dict | None, staged: dict, locks: dict) -> dict | None:
    """The state with the share of each resumable transfer that the file beside the lock file
    has (host/locks.py's STAGED_FILE_NAME: `staged`, {snapshot: {dest_id: entry}}) where the run
    record has none or an older one (a run killed outright records nothing): only for a transfer
    still locked (`locks`: the lock file's {snapshot: {"locks": [...]}}), so never one that arrived."""
    held = [(name, dest_id, entry) for name, found in sorted(staged.items()) for dest_id, entry in sorted(found.items())
            if dest_id in ((locks.get(name) or {}).get("locks") or ())]
    if not held:
        return state
    merged = dict(state or {"last_run": None, "max_age_seconds": None})
    destinations = {k: dict(v) for k, v in ((state or {}).get("destinations") or {}).items()}
    last_start = ((state or {}).get("last_run") or {}).get("start") or 0
    for name, dest_id, entry in held:
        record = destinations.setdefault(dest_id, {"status": None, "error": None, "locks": 0})
        if record.get("resumable") and (entry.get("time") or 0) < last_start:
            continue  # the run record is the newer word
        stream = entry.get("stream_bytes")
        record["resumable"] = {"snapshot": name, "staged_bytes": entry["staged_bytes"], "stream_bytes": stream,
                               "percent": resumable.staged_percent(entry["staged_bytes"], stream),
                               "recorded": entry.get("time")}
    merged["destinations"] = destinations
    return merged


def with_survey(state: dict | None, survey: dict) -> dict:
    """The state as `survey` (survey_job's report) finds things now: each destination that could be
    listed gets its newest backup and count from there; one that could not keeps its record."""
    merged = dict(state or {"last_run": None, "max_age_seconds": None})
    destinations = {k: dict(v) for k, v in ((state or {}).get("destinations") or {}).items()}
    for dest_id, found in survey["destinations"].items():
        record = destinations.setdefault(dest_id, {"status": None, "error": None, "locks": 0})
        record["reachable"] = found["error"] is None
        record["survey_error"] = found["error"]
        if found["backups"] is not None:
            newest = found["backups"][-1] if found["backups"] else None
            record["backups"] = len(found["backups"])
            record["newest_backup"] = newest["name"] if newest else None
            record["newest_backup_time"] = newest["time"] if newest else None
        record["locks"] = sum(1 for entry in survey["locks"].values() if dest_id in entry.get("locks", []))
    merged["destinations"] = destinations
    return merged


def record_rebuild(previous: dict | None, *, job: str, prefix: str, source: str, snapshot_folder: str,
                   origin: str, snapshots: list, when: float) -> dict:
    """The state after `btrfs-backup restore --as-source`: the source rebuilt from `origin` with
    `snapshots` (oldest first) in its snapshot folder. A state the lost host left keeps its runs'
    records (the destinations still hold what they held); the origin is not made a destination's
    record, since a restore key's login names it differently from the job's destination."""
    state = dict(previous or {"version": STATE_VERSION, "max_age_seconds": None, "last_run": None,
                              "destinations": {}})
    state.update(job=job, source=source, snapshot_folder=snapshot_folder, prefix=prefix)
    state["rebuilt"] = {"time": when, "from": origin, "snapshots": list(snapshots)}
    return state
