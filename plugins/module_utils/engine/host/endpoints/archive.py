# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""`borg:PATH`, `borg+ssh://[user@]host[:port]/PATH` and `restic:REPOSITORY`: archive stores that keep
each send stream as one encrypted, deduplicated archive, labelled with its snapshot's UUIDs."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import json
import os
import shlex
import sys

from ...model import archives
from ...model.errors import ConfigError, EndpointError, UnreachableError
from ...model.planning import stream_uuid
from ..listing import FolderListing, Subvolume
from .base import Endpoint, check_path

if TYPE_CHECKING:
    from ..runner import CommandResult, CommandRunner


class ArchiveSettings:
    """A job's settings for its archive destinations: the job's name (in every archive's name and
    label), the passphrase file, the file of KEY=VALUE environment lines, how many archives a
    chain holds before a full stream (model/archives.py), and the host whose archives are the
    job's (the one it runs at; None: any, as a restore reads them). The files are checked when a
    run starts."""

    __slots__ = ("job", "key_file", "env_file", "full_every", "host")

    def __init__(self, job="", key_file="", env_file="", full_every=archives.DEFAULT_FULL_EVERY, host=None):
        self.job = job
        self.key_file = key_file or ""
        self.env_file = env_file or ""
        self.full_every = archives.parse_full_every(full_every)
        self.host = host

    def require_files(self, where: str) -> None:
        """Rule 7: an archive store is not asked without a readable passphrase file (nor with an
        environment file that is not there); the error names the setting, never the contents."""
        if not self.key_file:
            raise ConfigError(f"{where} needs the repository's passphrase: give --archive-key-file FILE "
                              "(archive_key_file), a file that holds it")
        for setting, path in (("archive_key_file", self.key_file), ("archive_env_file", self.env_file)):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{setting} {path}: no such file (needed by {where})")
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"{setting} {path}: not readable by this user (needed by {where})")


def _exec_program() -> list[str]:
    """The argv that starts host/archive_exec.py: its file where it is one, else its source text."""
    from .. import archive_exec
    path = getattr(archive_exec, "__file__", None)
    # -I -S: the program needs nothing but the standard library, and starts in a third of the time
    # (it starts for every store command, borg's check among them: part of the stream's time).
    if path and os.path.isfile(path):
        return [sys.executable, "-I", "-S", path]
    import inspect  # only inside a zip (an Ansible module's payload)
    return [sys.executable, "-I", "-S", "-c", inspect.getsource(archive_exec)]


class ArchiveEndpoint(Endpoint):
    """An archive store: it lists, stores, deletes and gives back archives with its own tool,
    which runs on this machine (host/archive_exec.py gives it its secrets through the environment)."""

    can_list = True
    receives_with_btrfs = False
    holds_archives = True
    #: The tool's name, as messages say it.
    tool = ""

    def __init__(self, repository: str, settings: ArchiveSettings | None = None):
        super().__init__(repository)
        self.repository = repository
        self.settings = settings or ArchiveSettings()
        self.label = None  # the archive a bound receiver stores (storing())
        # A file through which the run tells a stream sent before it knew the listing whether to
        # keep it (archive_exec --verdict; run/archive_forecast.py); None: no word is needed.
        self.verdict_path = None

    @property
    def id_aliases(self) -> set:
        return {self.id}

    def configured(self, settings: ArchiveSettings) -> ArchiveEndpoint:
        """The same store with the job's archive settings."""
        found = type(self).__new__(type(self))
        found.__dict__.update(self.__dict__, settings=settings)
        return found

    def storing(self, snapshot, parent) -> ArchiveEndpoint:
        """This store bound to the archive of `snapshot` (incremental from `parent`, or None): its
        receiver stores that archive."""
        bound = self.configured(self.settings)
        bound.label = archives.check_label(self.settings.job, snapshot.name, stream_uuid(snapshot),
                                           stream_uuid(parent) if parent is not None else None)
        return bound

    def _bound_label(self):
        if self.label is None:
            raise EndpointError(f"{self.id}: a stream is stored only as the archive of a snapshot (storing())")
        return self.label

    # -- what an archive store is not ------------------------------------------------------------

    def command(self, argv, privileged=True) -> list:
        raise EndpointError(f"{self.id} is an archive store: no command runs there")

    def with_path(self, path) -> Endpoint:
        raise EndpointError(f"{self.id} is an archive store: it has no folder")

    def lock_store(self, runner, folder):
        raise EndpointError(f"{self.id} is an archive store: it has no snapshot folder")

    def sender(self, send_argv, compress_argv=None, first=None) -> tuple:
        raise EndpointError(f"{self.id} is an archive store: restore from it with btrfs-backup restore")

    # -- the tool, run with its secrets in its environment -------------------------------------

    def environment(self) -> list[str]:
        """KEY=VALUE items that name the passphrase file and the tool's answers (no secret in them)."""
        return []

    def tool_argv(self, argv: list[str], mode: str = "exec", extra=()) -> list[str]:
        """`argv` (the tool's) run by archive_exec in `mode` (exec or guard), with the `extra`
        KEY=VALUE items in its environment too."""
        wrapped = _exec_program() + [mode]
        if mode == "guard":
            wrapped += self.verdict_options()
        if self.settings.env_file:
            wrapped += ["--env-file", self.settings.env_file]
        for item in self.environment() + list(extra):
            wrapped += ["--set", item]
        return wrapped + ["--"] + argv

    def verdict_options(self) -> list[str]:
        """archive_exec's options by which a stream waits for the run's word (none needed: [])."""
        return ["--verdict", self.verdict_path] if self.verdict_path else []

    def run_tool(self, runner: CommandRunner, argv: list[str], what: str, extra=()) -> CommandResult:
        """Run the tool; EndpointError naming `what` and the tool's own last words when it fails."""
        result = runner.run(self.tool_argv(argv, extra=extra))
        if not result.ok:
            error = UnreachableError if unreachable(result.stderr) else EndpointError
            raise error(f"{self.id}: {what} failed: {self.failure_text(result)}")
        return result

    def failure_text(self, result: CommandResult) -> str:
        """Pure: a failed tool run in one line, with a hint for the failures people meet."""
        lines = [line.strip() for line in archives.error_lines(result.stderr)]
        text = " / ".join(lines[-3:]) or f"exit status {result.returncode}"
        return text + self.failure_hint(text)

    def failure_hint(self, text: str) -> str:
        """Pure: the hint for the failures people meet, from what the store's tool said (not from
        the repository's name in it: a path such as /srv/blocks is no lock)."""
        lowered = text.replace(self.id, "").replace(self.repository, "").lower()
        if "403 forbidden" in lowered or "(403)" in lowered:
            return (" (the repository refuses deletions: an append-only server; give this destination "
                    "no backup retention and prune on the server)")
        if "passphrase" in lowered or "password" in lowered or "wrong" in lowered and "key" in lowered:
            return " (is archive_key_file the repository's passphrase?)"
        if "lock" in lowered:
            return (" (the repository is locked: another backup, prune or check is running, "
                    f"or one was killed; `{self.tool} ... break-lock`/`unlock` once none runs)")
        if f"{self.tool}: no such file or directory" in lowered:
            return f" (install {'borgbackup' if self.tool == 'borg' else 'restic'} on this host)"
        if "does not exist" in lowered or "is not a valid repository" in lowered or "unable to open config" in lowered:
            return f" (create the repository first: {self.tool} init)"
        return ""

    # -- listing, the records planning uses ------------------------------------------------------

    def records(self, runner: CommandRunner, beside_a_write: bool = False) -> list:
        """Every archive of ours in the repository (ArchiveRecord), any job's. `beside_a_write`:
        while this run's own store writes to it (a stream sent on a forecast)."""
        raise NotImplementedError

    def job_records(self, runner: CommandRunner, beside_a_write: bool = False) -> dict:
        """This job's archives by snapshot name (those its own host stored)."""
        return archives.job_archives(self.records(runner, beside_a_write), self.settings.job, self.settings.host)

    def list_backups(self, runner: CommandRunner, beside_a_write: bool = False) -> FolderListing:
        """This job's archives as the records planning takes for received subvolumes: by snapshot
        name, `received_uuid` the UUID its stream carried (rule 1), `parent_uuid` its parent's,
        `path` what names the archive to the store. An archive is stored whole or not at all."""
        return self.listing_of(self.job_records(runner, beside_a_write).values())

    def listing_of(self, records) -> FolderListing:
        """Pure: archives (ArchiveRecord) as list_backups gives them."""
        return FolderListing(self.id, {r.label.snapshot: archive_subvolume(r) for r in records}, set())

    def repository_state(self) -> str | None:
        """What the files of a repository on this machine say of its contents, read without
        opening it (no passphrase, no lock, no key derivation): the same after two runs only if
        nothing was written to it between them. None at another host, or when they cannot be read."""
        return None

    def holds_no_archive(self) -> bool:
        """Whether the files of a repository on this machine say it holds no archive at all, read
        without opening it (no passphrase, no lock, no key derivation): then its listing is known
        to be empty. False at another host, or when its files cannot tell."""
        return False

    def mark_unfinished(self, held: dict, locked_names) -> dict:
        """`held` with every archive of a snapshot whose transfer here is still locked counted as
        partial: the run that stored it ended before it verified it (rule 2), so it is deleted."""
        return {name: sub._replace(readonly=False) if name in locked_names else sub for name, sub in held.items()}

    def arrived(self, runner: CommandRunner, snapshot, parent=None) -> Subvolume:
        """The archive of `snapshot` after a send whose every stage exited 0 (so the store committed
        it: borg's create, restic's backup behind the guard), as listing it would give it; not
        listed again, which would cost the store a second opening of the repository per send."""
        label = self.storing(snapshot, parent).label
        return archive_subvolume(archives.ArchiveRecord(self.arrival_ref(label), label))

    def arrival_ref(self, label) -> str:
        """How a just-stored archive is named to the store before it is listed."""
        return archives.archive_name(label.job, label.snapshot, self.settings.host)

    def remove_failed(self, runner: CommandRunner, snapshot) -> str | None:
        """After a failed send: delete whatever archive of `snapshot` the store kept (its name, or None)."""
        found = [r for r in self.records(runner)
                 if r.label.job == self.settings.job and r.label.uuid == stream_uuid(snapshot)]
        if not found:
            return None
        self.delete_archives(runner, [r.ref for r in found])
        return ", ".join(r.ref for r in found)

    def delete_archives(self, runner: CommandRunner, refs) -> None:
        raise NotImplementedError

    def extract_argv(self, record) -> list[str]:
        """The argv that writes an archive's (ArchiveRecord) stream to standard output."""
        raise NotImplementedError

    def check_argv(self, subset: str) -> list[str]:
        """The argv of the store's own check (`subset` of the data read, where the tool can)."""
        raise NotImplementedError

    def shape_transfers(self, transfers: list, held: dict) -> list:
        """Full streams where a chain would grow past archive_full_every (model/archives.py)."""
        by_uuid = {sub.received_uuid: archives.ArchiveRecord(sub.path, archives.ArchiveLabel(
            self.settings.job, name, sub.received_uuid, sub.parent_uuid)) for name, sub in held.items()}
        depth_of = {name: archives.chain_depth(by_uuid, sub.received_uuid) for name, sub in held.items()}
        return archives.with_full_streams(transfers, depth_of, self.settings.full_every)

    def __str__(self):
        return self.id


_UNREACHABLE = ("connection refused", "connection timed out", "no route to host", "could not resolve",
                "connection closed by", "connection reset", "name or service not known", "dial tcp",
                "network is unreachable", "remote: ssh: connect to host")


def unreachable(stderr: str) -> bool:
    """Pure: whether a store's tool failed because its server could not be reached (it may come
    back: the snapshot is still taken and sent when it is), rather than by what it found there."""
    lowered = stderr.lower()
    return any(words in lowered for words in _UNREACHABLE)


def archive_subvolume(record) -> Subvolume:
    """Pure: an archive as the record planning knows (a complete received subvolume)."""
    label = record.label
    return Subvolume(name=label.snapshot, path=record.ref, id=None, uuid=None, parent_uuid=label.parent,
                     received_uuid=label.uuid, readonly=True)


class BorgEndpoint(ArchiveEndpoint):
    """A borg repository: `borg:PATH` here, or `borg+ssh://[user@]host[:port]/PATH` through borg's own ssh."""

    kind = "borg"
    what = "a borg repository"
    tool = "borg"

    def __init__(self, repository, settings=None, *, host=None, user=None, port=None, ssh_options=()):
        super().__init__(repository, settings)
        self.host, self.user, self.port = host, user, port
        self.ssh_options = list(ssh_options)

    @classmethod
    def from_location(cls, spec: str, *, ssh_options=(), as_source=False, archive=None, **_settings):
        if as_source:
            raise ConfigError(f"{spec!r}: an archive store can only be a destination (restore from it "
                              "with btrfs-backup restore)")
        if spec.startswith(archives.BORG_SSH):
            from .ssh import parse_ssh_url
            host, path, user, port = parse_ssh_url("ssh://" + spec[len(archives.BORG_SSH):])
            target = f"{user}@{host}" if user else host
            url = f"ssh://{target}{':%s' % port if port else ''}{path}"
            return cls(url, archive, host=host, user=user, port=port, ssh_options=ssh_options)
        path = check_path(spec[len(archives.BORG):], "borg repository path")
        if not path.startswith("/"):
            raise ConfigError(f"{spec!r}: give the borg repository's absolute path (borg:/backup/borg)")
        return cls(path, archive)

    @property
    def id(self) -> str:
        return ("borg+" + self.repository) if self.host else "borg:" + self.repository

    def environment(self) -> list[str]:
        items = ["BORG_RELOCATED_REPO_ACCESS_IS_OK=no", "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO",
                 "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=NO", "BORG_EXIT_CODES=legacy"]
        if self.settings.key_file:
            items.append("BORG_PASSCOMMAND=cat -- " + shlex.quote(self.settings.key_file))
        if self.host:
            items.append("BORG_RSH=" + borg_rsh(self.ssh_options))
        return items

    def archive(self, name: str) -> str:
        return f"{self.repository}::{name}"

    def repository_state(self) -> str | None:
        """borg's transaction (the N of its one index.N, which every commit advances: create,
        delete, prune, compact; a listing or check does not) and the repository's id."""
        if self.host:
            return None
        try:
            transactions = [n[len("index."):] for n in os.listdir(self.repository) if n.startswith("index.")]
            with open(os.path.join(self.repository, "config"), encoding="utf-8") as handle:
                ids = [line.split("=", 1)[1].strip() for line in handle if line.replace(" ", "").startswith("id=")]
        except (OSError, UnicodeDecodeError):
            return None
        if len(transactions) != 1 or not transactions[0].isdigit() or len(ids) != 1:
            return None  # in the middle of a commit, or not a repository borg 1.x wrote
        return f"borg {ids[0]} transaction {transactions[0]}"

    def holds_no_archive(self) -> bool:
        """borg: its index maps the manifest alone (model/archives.py borg_holds_no_archive)."""
        if self.host:
            return False
        try:
            indexes = [n for n in os.listdir(self.repository) if n.startswith("index.")]
            if len(indexes) != 1:
                return False
            with open(os.path.join(self.repository, indexes[0]), "rb") as handle:
                objects = archives.borg_index_objects(handle.read(archives.BORG_INDEX_HEADER))
            if objects != 1:
                return False  # the usual case: its segments are not listed
            data = os.path.join(self.repository, "data")
            segments = [name for folder in os.listdir(data) for name in os.listdir(os.path.join(data, folder))]
        except OSError:
            return False
        return archives.borg_holds_no_archive(indexes, objects, segments)

    def receiver(self, btrfs_debug=False, decompress_argv=None) -> tuple:
        if decompress_argv is not None:
            raise ValueError("an archive store takes the plain stream")
        label = self._bound_label()
        create = ["borg", "create", "--content-from-command", "--stdin-name", archives.stream_file_name(label),
                  "--comment", label.comment(), self.archive(self.arrival_ref(label)), "--"] + _exec_program() + ["check"] + \
            self.verdict_options()
        return f"borg create at {self.id}", self.tool_argv(create)

    def records(self, runner, beside_a_write=False) -> list:
        # Beside this run's own create, which holds the repository's exclusive lock until the run
        # says go: read without the lock (borg reads the last committed state; create commits later).
        # borg's check against a replayed manifest still holds (its security folder is not the cache).
        # create also holds its cache's lock, which list takes when that cache exists: an empty
        # cache folder of its own (list reads no cache).
        if not beside_a_write:
            return parse_borg_list(self.run_tool(runner, ["borg", "list", "--format", BORG_LIST_FORMAT,
                                                          self.repository], "listing the archives").stdout)
        import shutil
        import tempfile
        cache = tempfile.mkdtemp(prefix="btrfs-backup-borg-list-")
        try:
            result = self.run_tool(runner, ["borg", "list", "--bypass-lock", "--format", BORG_LIST_FORMAT,
                                            self.repository], "listing the archives", extra=["BORG_CACHE_DIR=" + cache])
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        return parse_borg_list(result.stdout)

    def delete_archives(self, runner, refs) -> None:
        refs = list(refs)
        for ref in refs:
            if not ref or "/" in ref or "::" in ref:
                raise EndpointError(f"{self.id}: {ref!r} is no archive name")
        self.run_tool(runner, ["borg", "delete", self.repository] + refs, "deleting " + ", ".join(refs))
        self.run_tool(runner, ["borg", "compact", self.repository], "compacting after the deletion")

    def extract_argv(self, record) -> list[str]:
        return self.tool_argv(["borg", "extract", "--stdout", self.archive(record.ref)])

    def check_argv(self, subset: str) -> list[str]:
        return self.tool_argv(["borg", "check", self.repository])


def borg_rsh(ssh_options) -> str:
    """Pure: BORG_RSH, the ssh command line borg runs, with the job's ssh options (each quoted)."""
    words = ["ssh", "-o", "BatchMode=yes"]
    for option in ssh_options:
        words += ["-o", option]
    return " ".join(shlex.quote(word) for word in words)


#: What a borg listing says of each archive: its name, the host that created it, its comment.
BORG_LIST_FORMAT = "{name}{TAB}{hostname}{TAB}{comment}{NUL}"


def parse_borg_list(text: str) -> list:
    """Pure: `borg list --format BORG_LIST_FORMAT` as ArchiveRecords (ours only; borg's
    checkpoints of an unfinished create are never a backup)."""
    found = []
    for entry in text.split("\0"):
        name, _tab, rest = entry.strip("\n").partition("\t")
        host, _tab, comment = rest.partition("\t")
        if not name or archives.is_checkpoint(name):
            continue
        label = archives.parse_label(comment.split())
        if label is not None:
            found.append(archives.ArchiveRecord(name, label, host or None))
    return found


class ResticEndpoint(ArchiveEndpoint):
    """A restic repository: `restic:REPOSITORY`, where REPOSITORY is restic's own (a path, sftp:, rest:, s3:, rclone:)."""

    kind = "restic"
    what = "a restic repository"
    tool = "restic"

    @classmethod
    def from_location(cls, spec: str, *, as_source=False, archive=None, **_settings):
        if as_source:
            raise ConfigError(f"{spec!r}: an archive store can only be a destination (restore from it "
                              "with btrfs-backup restore)")
        repository = archives.check_repository_text(spec[len(archives.RESTIC):], "restic repository")
        if archives.credentials_in_url(repository):
            raise ConfigError(f"restic:{archives.without_credentials(repository)}: a user and password in the "
                              "repository string would show in logs, results and process lists; give the "
                              "repository without them and put RESTIC_REST_USERNAME and RESTIC_REST_PASSWORD "
                              "(or the store's own credential variables) in archive_env_file")
        if repository.startswith("/"):
            repository = check_path(repository, "restic repository path")
        elif ":" not in repository:
            raise ConfigError(f"{spec!r}: give the restic repository's absolute path or its own "
                              "repository string (sftp:, rest:, s3:, rclone: ...)")
        return cls(repository, archive)

    @property
    def id(self) -> str:
        return "restic:" + self.repository

    def _snapshot_files(self) -> list | None:
        """The names in a repository on this machine's snapshots/ folder (restic keeps one file per
        snapshot there); None at another host, or when it cannot be read."""
        path = self.repository[len("local:"):] if self.repository.startswith("local:") else self.repository
        if not path.startswith("/"):
            return None
        try:
            if not os.path.isfile(os.path.join(path, "config")):
                return None  # no repository: the store's own command says so
            return sorted(os.listdir(os.path.join(path, "snapshots")))
        except OSError:
            return None

    def repository_state(self) -> str | None:
        """The names of its snapshot files (restic names each by the hash of its content, and
        writes a new one for every change to a snapshot: backup, forget, tag), as one digest."""
        names = self._snapshot_files()
        if names is None:
            return None
        import hashlib  # only a run with a restic repository on this machine needs it
        return "restic snapshots " + hashlib.sha256("\n".join(names).encode()).hexdigest()

    def holds_no_archive(self) -> bool:
        """restic: no file in its snapshots/ folder."""
        return self._snapshot_files() == []

    def environment(self) -> list[str]:
        items = ["RESTIC_REPOSITORY=" + self.repository]
        if self.settings.key_file:
            items.append("RESTIC_PASSWORD_FILE=" + self.settings.key_file)
        return items

    def receiver(self, btrfs_debug=False, decompress_argv=None) -> tuple:
        if decompress_argv is not None:
            raise ValueError("an archive store takes the plain stream")
        label = self._bound_label()
        backup = ["restic", "backup", "--quiet", "--stdin", "--stdin-filename", archives.stream_file_name(label),
                  "--tag", ",".join(label.words())]
        if self.settings.host:  # what the listing then says, whatever restic would take itself
            backup += ["--host", self.settings.host]
        return f"restic backup at {self.id}", self.tool_argv(backup, mode="guard")

    def records(self, runner, beside_a_write=False) -> list:
        result = self.run_tool(runner, ["restic", "snapshots", "--json", "--tag", archives.MARK],
                               "listing the snapshots")
        return parse_restic_snapshots(result.stdout)

    def arrival_ref(self, label) -> str:
        return "uuid=" + label.uuid  # its snapshot id is known once listed (delete_archives asks)

    def delete_archives(self, runner, refs) -> None:
        refs = list(refs)
        if any(ref.startswith("uuid=") for ref in refs):
            ids = {"uuid=" + r.label.uuid: r.ref for r in self.records(runner) if r.label.job == self.settings.job}
            refs = [ids.get(ref, ref) if ref.startswith("uuid=") else ref for ref in refs]
        for ref in refs:
            if not ref or not all(c in "0123456789abcdef" for c in ref):
                raise EndpointError(f"{self.id}: {ref!r} is no snapshot id")
        # A run killed mid-send leaves restic's lock behind, which forget's exclusive lock would
        # trip over: `unlock` removes only the locks of processes that are gone.
        self.run_tool(runner, ["restic", "unlock"], "removing stale locks")
        self.run_tool(runner, ["restic", "forget", "--prune"] + refs, "forgetting " + ", ".join(r[:8] for r in refs))

    def extract_argv(self, record) -> list[str]:
        return self.tool_argv(["restic", "dump", record.ref, "/" + archives.stream_file_name(record.label)])

    def check_argv(self, subset: str) -> list[str]:
        return self.tool_argv(["restic", "check", "--read-data-subset", subset])


def parse_restic_snapshots(text: str) -> list:
    """Pure: `restic snapshots --json` as ArchiveRecords (ours only), oldest first."""
    try:
        entries = json.loads(text or "[]") or []
    except ValueError as err:
        raise EndpointError(f"restic snapshots gave no JSON: {err}")
    found = []
    for entry in sorted(entries, key=lambda e: e.get("time", "")):
        label = archives.parse_label(entry.get("tags") or [])
        if label is not None and entry.get("id"):
            found.append(archives.ArchiveRecord(entry["id"], label, entry.get("hostname") or None))
    return found
