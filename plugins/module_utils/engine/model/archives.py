# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Pure: archive destinations (borg, restic): their locations, the archives' names and labels,
full or incremental streams, and which archives retention must keep for their chains."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import collections
import re

from .errors import ConfigError

if TYPE_CHECKING:
    from typing import Iterable, Mapping, Sequence

#: The location prefixes of archive destinations: `borg:PATH`, `borg+ssh://...`, `restic:REPOSITORY`.
BORG, BORG_SSH, RESTIC = "borg:", "borg+ssh://", "restic:"

#: The tag (restic) and comment word (borg) that marks an archive this project stored.
MARK = "btrfs-backup"
# Patterns are kept as text: re compiles each at its first use and keeps it, so start-up pays for none.
# A Go stack trace's function line: "github.com/x/y.(*T).F", "golang.org/x/sync/errgroup.(*Group).Go.func1", "runtime.goexit".
_GO_FRAME = r"^(?:[\w.-]+/)*[\w.-]+\.(?:\(\*?\w+\)\.)?[\w.]+$"

#: How many archives a chain holds before the next one is a full stream again (see docs: the
#: measured trade-off between storage per day, time per run, restore time and retention).
DEFAULT_FULL_EVERY = 7

#: A borg archive named like this is borg's own checkpoint of an unfinished create: never a backup.
_CHECKPOINT_RE = r"\.checkpoint(\.[0-9]+)?\Z"
_UUID_RE = r"^[0-9a-fA-F-]{8,64}\Z"
_LABEL_KEYS = ("job", "snapshot", "uuid", "parent")


def is_archive_location(spec: str) -> bool:
    """Whether a destination string names an archive store (borg or restic) rather than a folder."""
    return isinstance(spec, str) and spec.startswith((BORG, BORG_SSH, RESTIC))


def check_repository_text(text: str, what: str) -> str:
    """A repository string as given: not empty, no control characters (it becomes one argv item)."""
    if not text or not text.strip():
        raise ConfigError(f"{what}: a repository is required, e.g. borg:/backup/borg or restic:/backup/restic")
    if any(ord(c) < 32 for c in text):
        raise ConfigError(f"{what} {text!r}: control characters are not allowed")
    return text


class ArchiveLabel(collections.namedtuple("ArchiveLabel", _LABEL_KEYS)):
    """What an archive says of itself: the job, the snapshot's name and UUID (the one its stream
    carries), and the UUID of the parent it is incremental from (None: a full stream)."""

    __slots__ = ()

    def words(self) -> list[str]:
        """key=value words; restic stores them as tags, borg in the archive's comment."""
        return [MARK] + [f"{key}={getattr(self, key) or 'none'}" for key in _LABEL_KEYS]

    def comment(self) -> str:
        return " ".join(self.words())


def error_lines(stderr: str) -> list[str]:
    """A store's stderr without what explains nothing to a user: blank lines, a Go stack trace's
    frames (restic prints them after its error), restic's retry notices past the first."""
    found, retries = [], 0
    for line in stderr.splitlines():
        if not line.strip() or line.startswith(("\t", "    ")) or re.match(_GO_FRAME, line):
            continue
        if "returned error, retrying after" in line:
            retries += 1
            if retries > 1:
                continue
        found.append(line)
    return found


def credentials_in_url(repository: str) -> bool:
    """Whether a repository string carries user:password@ in a URL (restic's rest:http://user:pw@host/):
    a destination string shows in logs, results, states and process lists, so it must not."""
    scheme, sep, rest = repository.partition("://")
    userinfo, at, _host = rest.split("/", 1)[0].rpartition("@")
    return bool(sep and at) and ":" in userinfo  # a user alone (sftp://user@host/) is no secret


def without_credentials(repository: str) -> str:
    """The repository string as messages may show it: a URL's user:password@ replaced by …@."""
    scheme, sep, rest = repository.partition("://")
    authority, slash, path = rest.partition("/")
    if not credentials_in_url(repository):
        return repository
    return f"{scheme}://…@{authority.rpartition('@')[2]}{slash}{path}"


def check_label(job: str, snapshot: str, uuid: str, parent_uuid: str | None) -> ArchiveLabel:
    """A label whose words hold no separator (space, comma, '='), so that it reads back as written."""
    for key, value in (("job", job), ("snapshot", snapshot), ("uuid", uuid), ("parent", parent_uuid)):
        if value is not None and (not value or re.search(r"[\s,=]", value)):
            raise ConfigError(f"an archive's {key} {value!r} cannot be stored in its label")
    return ArchiveLabel(job, snapshot, uuid, parent_uuid)


def parse_label(words: Iterable[str]) -> ArchiveLabel | None:
    """The label in an archive's tags or comment words, or None: not one of ours (or damaged)."""
    words = list(words)
    if MARK not in words:
        return None
    found = dict(word.split("=", 1) for word in words if "=" in word)
    if any(key not in found for key in _LABEL_KEYS) or not re.match(_UUID_RE, found["uuid"]):
        return None
    parent = None if found["parent"] == "none" else found["parent"]
    if parent is not None and not re.match(_UUID_RE, parent):
        return None
    return ArchiveLabel(found["job"], found["snapshot"], found["uuid"], parent)


def archive_name(job: str, snapshot: str, host: str | None = None) -> str:
    """The archive's stream file name stem (borg's --stdin-name, restic's --stdin-filename): the job,
    then the snapshot; with `host`, borg's archive name (unique in a repository several hosts share)."""
    return f"{job}-{snapshot}@{host}" if host else f"{job}-{snapshot}"


def stream_file_name(label) -> str:
    """The one file an archive holds: the stream, named after the job and the snapshot (borg's
    --stdin-name, restic's --stdin-filename; restore reads it by this name)."""
    return archive_name(label.job, label.snapshot) + ".btrfs"


def is_checkpoint(name: str) -> bool:
    """Whether a borg archive name is one of borg's checkpoints (an unfinished create)."""
    return bool(re.search(_CHECKPOINT_RE, name))


ArchiveRecord = collections.namedtuple("ArchiveRecord", "ref label host", defaults=(None,))
ArchiveRecord.__doc__ = ("One archive of ours in a repository: `ref` names it to the store (borg: its "
                         "name; restic: its snapshot id), `label` what it holds, `host` the host that stored "
                         "it as the store recorded it (None: not known).")


def job_archives(records: Iterable[ArchiveRecord], job: str, host: str | None = None) -> dict:
    """The job's archives by snapshot name: labelled with its name and stored at `host` (None: any).
    A job of the same name at another host that stores in the same repository is another job: its
    archives are never this one's to plan on or to delete. An archive whose host is not known
    counts. A snapshot stored twice: its first archive counts, the others are duplicates that
    retention may delete with it."""
    found = {}
    for record in records:
        if record.label.job == job and (host is None or record.host in (None, host)):
            found.setdefault(record.label.snapshot, record)
    return found


def job_hosts(records: Iterable[ArchiveRecord], job: str) -> list:
    """The hosts whose archives of `job` the records hold (those it knows), sorted."""
    return sorted({r.host for r in records if r.label.job == job and r.host is not None})


def restore_host(hosts: Sequence[str], here: str, asked: str | None) -> str | None:
    """Pure: the host whose archives of a job a restore or verify reads (None: any). `hosts`: the
    hosts that stored the job's archives; `here`: this host; `asked`: --archive-host. Asked for, that
    one; the only host, or this one among several; otherwise the user must say."""
    if asked:
        if asked not in hosts:
            raise ConfigError(f"no archive of the job was stored at host {asked} (hosts: {', '.join(hosts) or 'none'})")
        return asked
    if len(hosts) <= 1:
        return None
    if here in hosts:
        return here
    raise ConfigError(f"the job's archives were stored at several hosts ({', '.join(hosts)}): give --archive-host")


def chain_depth(archives_by_uuid: Mapping, uuid: str) -> int | None:
    """How many archives a restore of the snapshot `uuid` replays: 1 for a full stream, one more
    per incremental parent; None when a link of its chain is missing (it cannot be restored)."""
    depth, seen = 0, set()
    while uuid is not None:
        record = archives_by_uuid.get(uuid)
        if record is None or uuid in seen:
            return None
        seen.add(uuid)
        depth += 1
        uuid = record.label.parent
    return depth


def restore_chain(archives_by_uuid: Mapping, uuid: str) -> list:
    """The archives a restore of snapshot `uuid` replays, oldest (the full stream) first;
    ConfigError naming the missing link when the chain is broken."""
    chain, seen = [], set()
    while uuid is not None:
        record = archives_by_uuid.get(uuid)
        if record is None:
            missing = f"the archive of parent {uuid}" if chain else f"no archive of snapshot {uuid}"
            raise ConfigError(f"cannot restore: {missing} is not in the repository")
        if uuid in seen:
            raise ConfigError(f"cannot restore: the archives' parents form a loop at {uuid}")
        seen.add(uuid)
        chain.append(record)
        uuid = record.label.parent
    return chain[::-1]


def parse_full_every(value) -> int:
    """archive_full_every: a count >= 1 (1: every archive is a full stream)."""
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"archive_full_every must be a whole number of archives, 1 or more, not {value!r}")
    return count


def with_full_streams(transfers: Sequence, depth_of: Mapping, full_every: int) -> list:
    """The planned transfers (planning.Transfer, oldest first) with a parent dropped wherever the
    chain would grow past `full_every` archives; `depth_of` maps a snapshot name to the depth of its
    archive's chain (chain_depth). A parent whose chain is broken gives a full stream too."""
    depths = dict(depth_of)
    shaped = []
    for transfer in transfers:
        parent = transfer.parent
        parent_depth = depths.get(parent.name) if parent is not None else None
        if parent is not None and (parent_depth is None or parent_depth >= full_every):
            transfer = transfer._replace(parent=None)
            parent_depth = None
        depths[transfer.snapshot.name] = (parent_depth or 0) + 1
        shaped.append(transfer)
    return shaped


def chain_protection(kept: Iterable[str], parent_of: Mapping) -> dict:
    """Rule 4 for archives: every archive that an archive retention keeps needs (its parent, its
    parent's parent...), by snapshot name -> why. `parent_of` maps a snapshot name to its parent's
    snapshot name (None: a full stream)."""
    needed = {}
    for name in kept:
        child = name
        parent = parent_of.get(child)
        while parent is not None and parent not in needed:
            needed[parent] = f"parent of the kept incremental archive {child}"
            child, parent = parent, parent_of.get(parent)
    return needed


def holdings(children: Mapping) -> dict:
    """Pure: all that planning reads of a store's listing (name -> Subvolume): each archive's
    snapshot name, the UUID its stream carried, its parent's, and whether it is complete. Two
    listings with equal holdings give the same plan (rule 1), whatever names the archives to the store."""
    return {name: (sub.received_uuid, sub.parent_uuid, bool(sub.readonly)) for name, sub in children.items()}


#: In a store's forecast entry, beside its archives: what the repository's own files said after the
#: job's last run there (a key that no snapshot name can be: a name starts with a letter, digit or _).
REPOSITORY_STATE = "@repository"


def forecast_entry(children: Mapping, repository_state: str | None = None) -> dict:
    """Pure: a store's listing as the job's state keeps it for the next run's forecast (JSON),
    with the repository's state when the store could tell it (a repository on this machine)."""
    entry = {name: {"uuid": sub.received_uuid, "parent": sub.parent_uuid, "ref": sub.path}
             for name, sub in children.items() if sub.readonly and sub.received_uuid}
    if repository_state is not None:
        entry[REPOSITORY_STATE] = repository_state
    return entry


def forecast_repository_state(entry) -> str | None:
    """Pure: the repository's state a forecast entry recorded, None when it has none."""
    state = entry.get(REPOSITORY_STATE) if isinstance(entry, dict) else None
    return state if isinstance(state, str) else None


def forecast_records(job: str, entry) -> list | None:
    """Pure: the ArchiveRecords a forecast entry stands for; None when it is not one (a damaged or
    foreign state: then there is no forecast, the run lists first)."""
    if not isinstance(entry, dict):
        return None
    found = []
    for name, item in sorted(entry.items()):
        if name == REPOSITORY_STATE:
            continue
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("uuid", "ref")):
            return None
        parent = item.get("parent")
        if parent is not None and not isinstance(parent, str):
            return None
        try:
            found.append(ArchiveRecord(item["ref"], check_label(job, name, item["uuid"], parent)))
        except ConfigError:
            return None
    return found


#: The start of a borg 1.x repository index (index.N): its magic, then how many objects it maps.
BORG_INDEX_MAGIC = b"BORG_IDX"
BORG_INDEX_HEADER = len(BORG_INDEX_MAGIC) + 4


def borg_index_objects(header: bytes) -> int | None:
    """Pure: how many objects a borg 1.x index maps, from its first bytes (None: no such index)."""
    if len(header) < BORG_INDEX_HEADER or not header.startswith(BORG_INDEX_MAGIC):
        return None
    return int.from_bytes(header[len(BORG_INDEX_MAGIC):BORG_INDEX_HEADER], "little", signed=True)


def borg_holds_no_archive(index_names: Iterable[str], objects: int | None, segments: Iterable[str]) -> bool:
    """Pure: whether a borg repository's files say it holds no archive at all: its one index
    (index.N, written by every commit) maps one object (`objects`), the manifest (an archive is at
    least one object more), and no data segment is newer than that commit (a commit whose index was
    not written yet). `index_names`: the repository's index.* names; `segments`: the names of the
    files under data/."""
    names = list(index_names)
    if len(names) != 1 or not names[0][len("index."):].isdigit() or objects != 1:
        return False
    numbers = [int(name) for name in segments if name.isdigit()]
    return max(numbers, default=0) <= int(names[0][len("index."):])
