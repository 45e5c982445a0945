# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The `.outstanding_transfers` lock file: btrfs-backup 0.3's JSON shape, strict parsing, atomic writes."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os

from ..model.errors import LockFileError

if TYPE_CHECKING:
    from typing import Iterable
    from .endpoints.base import Endpoint
    from .runner import CommandRunner

LOCK_FILE_NAME = ".outstanding_transfers"
LOCK_KINDS = ("locks", "parent_locks")
# Beside the lock file: how far each running resumable transfer has staged, {snapshot: {dest_id:
# {"staged_bytes", "stream_bytes", "time"}}}. Its own file, since btrfs-backup 0.3 refuses a lock
# file whose entries have any key but the two lock kinds (it must keep reading ours).
STAGED_FILE_NAME = LOCK_FILE_NAME + ".staged"
# A lock file's text travels on a remote command line (RemoteLockStore.write_command) up to this
# size: well below Linux's 128 KiB for one argument (the remote shell's command line is one).
MAX_INLINE_LOCK_TEXT = 32 * 1024


def parse_locks(text: str, where: str = LOCK_FILE_NAME) -> dict:
    """Parse `{"<snapshot>": {"locks": [dest_id], "parent_locks": [dest_id]}}` into sets.

    Anything else is a LockFileError that names the file: a damaged lock file may hide
    a half-finished transfer, so it is never silently treated as empty.
    """
    hint = ("%s is corrupt (%%s); it records unfinished transfers, so it is not reset "
            "automatically: repair it, or delete it once no partial backup is left at the "
            "destinations" % where)
    import json  # here: a run without a lock file to read or write does not need it
    try:
        data = json.loads(text)
    except ValueError as err:
        raise LockFileError(hint % ("not valid JSON: %s" % err))
    if not isinstance(data, dict):
        raise LockFileError(hint % "the top level is not an object")
    locks = {}
    for snapshot, entry in data.items():
        if not isinstance(entry, dict):
            raise LockFileError(hint % ("entry %r is not an object" % snapshot))
        parsed = {}
        for kind, dest_ids in entry.items():
            if kind not in LOCK_KINDS:
                raise LockFileError(hint % ("entry %r has an unknown key %r" % (snapshot, kind)))
            if not isinstance(dest_ids, list) or not all(isinstance(d, str) for d in dest_ids):
                raise LockFileError(hint % ("%r of %r is not a list of strings" % (kind, snapshot)))
            parsed[kind] = set(dest_ids)
        locks[snapshot] = {kind: parsed.get(kind, set()) for kind in LOCK_KINDS}
    return locks


def parse_staged(text) -> dict:
    """The staged-progress file's entries; anything malformed is dropped (a progress figure only:
    the lock file, not this, says what is unfinished)."""
    import json
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    found = {}
    for snapshot, entries in (data.items() if isinstance(data, dict) else ()):
        for dest_id, entry in (entries.items() if isinstance(entries, dict) else ()):
            if isinstance(entry, dict) and isinstance(entry.get("staged_bytes"), int):
                found.setdefault(snapshot, {})[dest_id] = entry
    return found


def serialize_locks(locks: dict) -> str:
    """The lock file text; empty entries are dropped, lists sorted for stable diffs."""
    data = {}
    for snapshot in sorted(locks):
        entry = {kind: sorted(locks[snapshot].get(kind, ())) for kind in LOCK_KINDS}
        entry = {kind: ids for kind, ids in entry.items() if ids}
        if entry:
            data[snapshot] = entry
    import json
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


class LockTable:
    """In-memory lock state with the operations a run needs; persisted by a LockStore."""

    def __init__(self, locks=None):
        self.locks = {name: {k: set(v.get(k, ())) for k in LOCK_KINDS}
                      for name, v in (locks or {}).items()}

    def _entry(self, snapshot):
        return self.locks.setdefault(snapshot, {k: set() for k in LOCK_KINDS})

    def add(self, snapshot: str, dest_id: str, kind: str = "locks") -> None:
        self._entry(snapshot)[kind].add(dest_id)

    def discard(self, snapshot: str, dest_ids: Iterable[str], kind: str = "locks") -> None:
        if snapshot in self.locks:
            self.locks[snapshot][kind].difference_update(dest_ids)

    def hold(self, snapshot: str, parent: str | None, dest_id: str) -> None:
        """A transfer of `snapshot` (incremental from `parent`, or full) to a destination begins."""
        self.add(snapshot, dest_id)
        if parent is not None:
            self.add(parent, dest_id, "parent_locks")

    def settle(self, snapshot: str, parent: str | None, dest_ids: Iterable[str]) -> None:
        """That transfer arrived: it owes nothing more."""
        self.discard(snapshot, dest_ids)
        if parent is not None:
            self.discard(parent, dest_ids, "parent_locks")

    def forget(self, snapshots: Iterable[str], dest_ids: Iterable[str]) -> None:
        """Drop every lock and parent lock of a destination on `snapshots`."""
        for snapshot in snapshots:
            for kind in LOCK_KINDS:
                self.discard(snapshot, dest_ids, kind)

    def names_locked_by(self, dest_ids: Iterable[str], kinds: Iterable[str] = LOCK_KINDS) -> list[str]:
        """The snapshot names that a destination (any of its ids) holds a lock of `kinds` on, sorted."""
        dest_ids = set(dest_ids)
        return sorted(name for name, entry in self.locks.items() if any(entry[k] & dest_ids for k in kinds))

    def discard_destination(self, dest_ids: Iterable[str]) -> list[str]:
        """Remove every lock and parent lock of a destination; returns the snapshot names touched."""
        touched = self.names_locked_by(dest_ids)
        self.forget(touched, dest_ids)
        return touched

    def locked(self, snapshot: str, dest_ids: Iterable[str], kind: str = "locks") -> bool:
        return bool(self.locks.get(snapshot, {}).get(kind, set()) & set(dest_ids))

    def destinations(self) -> set[str]:
        """Every destination id that has a lock or parent lock anywhere (for --locked-dests)."""
        ids = set()
        for entry in self.locks.values():
            for kind in LOCK_KINDS:
                ids |= entry[kind]
        return sorted(ids)

    def reasons(self, snapshot: str) -> list[str]:
        """Why retention must keep `snapshot`, one reason per lock."""
        entry = self.locks.get(snapshot, {})
        return (["transfer to %s is unfinished (locked)" % d for d in sorted(entry.get("locks", ()))]
                + ["parent of an unfinished transfer to %s" % d
                   for d in sorted(entry.get("parent_locks", ()))])

    def as_dict(self) -> dict:
        return {name: {k: sorted(v[k]) for k in LOCK_KINDS}
                for name, v in sorted(self.locks.items()) if any(v[k] for k in LOCK_KINDS)}

    def copy(self) -> LockTable:
        return LockTable(self.locks)


class LocalLockStore:
    """Reads and atomically replaces the lock file in a local snapshot folder."""

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK_FILE_NAME)
        self.staged_path = os.path.join(folder, STAGED_FILE_NAME)

    def read_staged(self) -> dict:
        """The staged-progress entries ({} when there are none)."""
        try:
            with open(self.staged_path, "rb") as handle:
                return parse_staged(handle.read())
        except OSError:
            return {}

    def write_staged(self, staged: dict) -> None:
        """Replace the staged-progress file atomically (none when `staged` is empty); not synced:
        a lost figure is only a less precise `status`."""
        import json
        if not staged:
            try:
                os.unlink(self.staged_path)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise LockFileError("cannot remove %s: %s" % (self.staged_path, err.strerror))
            return
        tmp = "%s.%d.tmp" % (self.staged_path, os.getpid())
        try:
            with open(tmp, "w") as handle:
                handle.write(json.dumps(staged, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.staged_path)
        except OSError as err:
            raise LockFileError("cannot write %s: %s" % (self.staged_path, err.strerror))

    def read(self) -> LockTable:
        try:
            # As bytes: json.loads decodes them, so undecodable content is "corrupt", not a crash.
            with open(self.path, "rb") as handle:
                text = handle.read()
        except FileNotFoundError:
            return LockTable()
        except OSError as err:
            raise LockFileError("cannot read %s: %s" % (self.path, err.strerror))
        return LockTable(parse_locks(text, self.path))

    def write(self, table: LockTable, durable: bool = True) -> None:
        """Replace the file atomically (temp file + rename). `durable` also waits until the new
        content is on disk: a lock must survive a crash, while a lost removal only makes the
        next run check once more that the backup is complete."""
        text = serialize_locks(table.locks)
        folder = os.path.dirname(self.path)
        tmp = os.path.join(folder, "%s.%d.%s" % (LOCK_FILE_NAME, os.getpid(), os.urandom(4).hex()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise LockFileError("cannot write %s: %s" % (self.path, err.strerror))
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # whatever the umask
            os.replace(tmp, self.path)
            if durable:
                dir_fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as err:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise LockFileError("cannot write %s: %s" % (self.path, err.strerror))


class RemoteLockStore:
    """The lock file of a snapshot folder on an ssh source (pull mode), written via a temp file."""

    def __init__(self, endpoint, runner, folder):
        self.endpoint = endpoint
        self.runner = runner
        self.path = endpoint.join(folder, LOCK_FILE_NAME) if folder else endpoint.join(LOCK_FILE_NAME)
        self.staged_path = self.path[:-len(LOCK_FILE_NAME)] + STAGED_FILE_NAME
        self.label = "%s:%s" % (endpoint.host, self.path)

    def read_staged(self) -> dict:
        result = self.endpoint.run(self.runner, ["cat", "--", self.staged_path])
        return parse_staged(result.stdout) if result.ok else {}

    def write_staged(self, staged: dict) -> None:
        import json
        if staged:
            argv = ["sh", "-c", 'cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"', "sh", self.staged_path]
            text = json.dumps(staged, indent=2, sort_keys=True) + "\n"
        else:
            argv, text = ["rm", "-f", "--", self.staged_path], None
        result = self.endpoint.run(self.runner, argv, input_text=text)
        if not result.ok:
            raise LockFileError("cannot write %s:%s: %s" % (self.endpoint.host, self.staged_path,
                                                            result.stderr.strip()))

    def read_commands(self) -> list[tuple[list[str], bool]]:
        """The commands that read it, for a batch that asks its host other things too."""
        return [(["test", "-e", self.path], True), (["cat", "--", self.path], True)]

    def read(self, answers: list | None = None) -> LockTable:
        """The lock file; from `answers` (the results of read_commands(), run in another batch)
        when given, else asked now."""
        exists, content = answers or self.endpoint.run_batch(self.runner, self.read_commands())
        if not exists.ok:
            return LockTable()
        if not content.ok:
            raise LockFileError("cannot read %s: %s" % (self.label, content.stderr.strip()))
        return LockTable(parse_locks(content.stdout, self.label))

    def write_command(self, table: LockTable) -> tuple[list[str], bool] | None:
        """The (argv, privileged) command that writes `table` durably (temp file, sync, rename)
        with its text on the command line, to run as the first part of another remote command
        (a send that starts only once it succeeded: one round trip less); None when the text is
        too long for one command line (then write() it apart)."""
        text = serialize_locks(table.locks)
        if len(text) > MAX_INLINE_LOCK_TEXT:
            return None
        script = _replace_script('printf "%s" "$3"', True) + ' || { echo "cannot write the lock file $2" >&2; exit 1; }'
        return ["sh", "-c", script, "sh", self.path + ".tmp", self.path, text], True

    def write(self, table: LockTable, durable: bool = True) -> None:
        tmp = self.path + ".tmp"
        result = self.endpoint.run(self.runner, ["sh", "-c", _replace_script("cat", durable), "sh", tmp, self.path],
                                   input_text=serialize_locks(table.locks))
        if not result.ok:
            raise LockFileError("cannot write %s: %s" % (self.label, result.stderr.strip()))


def _replace_script(fill: str, durable: bool) -> str:
    """The sh script by which both remote writers replace the lock file whole: `fill` writes the
    text to the temp file "$1", synced when `durable`, then renamed over "$2"."""
    sync = 'sync -- "$1" 2>/dev/null; ' if durable else ""
    return '%s > "$1" && { %smv -f -- "$1" "$2"; }' % (fill, sync)


def staged_here(folder: str) -> tuple:
    """(staged-progress entries, the lock file's locks as a dict) of a snapshot folder on this
    machine, for `status`; ({}, {}) when there is no figure or the lock file cannot be read."""
    store = LocalLockStore(folder)
    staged = store.read_staged()
    if not staged:
        return {}, {}
    try:
        return staged, store.read().as_dict()
    except LockFileError:
        return {}, {}


def lock_store(endpoint: Endpoint, runner: CommandRunner, folder: str) -> LocalLockStore | RemoteLockStore:
    """The lock file of the snapshot folder `folder` at `endpoint` (each kind makes its own)."""
    return endpoint.lock_store(runner, folder)
