# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The backup server's end of a restricted ssh key: accept only the commands a push backup sends.

A source host's key on the backup server is installed as

    restrict,command="btrfs-backup serve --root /srv/backups/web1" ssh-ed25519 AAAA...

sshd then runs `serve` instead of whatever the client asked for, and puts the client's command
line in SSH_ORIGINAL_COMMAND. `parse_request` (pure) accepts exactly the shapes that the
engine's SshEndpoint sends to a push destination - one command, the compressed receive
`zstd -d -q | btrfs receive PATH` (the only pipe), a receive that creates its own folder first
(`mkdir -p -- PATH && [zstd -d -q |] btrfs receive PATH`, the only `&&`), or a batch joined with
`; printf '\\n<marker> %d\\n' $?` - with every path inside the key's root. A plain ssh host's
receive, which also asks what arrived (`RECEIVE && printf '\\n%s\\n' btrfs-backup-arrived && {
btrfs subvolume show PATH/NAME || :; }`), is declined without a word in the refusal counters: a
source that last sent here before this key ran serve starts it once before its survey, then sends
serve's own form. `serve` runs the
accepted commands itself, without a shell: btrfs as an argv list (through `sudo -n` unless
already root), zstd as an argv list (unprivileged: it only turns one pipe into another), the
rest (readlink -e, test -e, mkdir, the mount table) in Python.

A restore key (`serve --restore`, the administrator's key for `btrfs-backup restore ssh://...` and
`btrfs_restore`) reads instead: `parse_request(..., restore=True)` accepts exactly what a restore
sends to the backup's end - the listing batch and `btrfs send [-p PARENT] BACKUP` - and nothing
that writes (no receive, mkdir, delete or property set). Both paths of a send must be complete
backups inside its root (with `--host`, inside those hosts' folders of the root).

What a source's key can do: list its own folder, create folders in it, receive into it (also a
zstd-compressed stream), delete subvolumes in it, ask for the versions of zstd and btrfs and for
serve's own mode (server_mode: a source then sends no deletion an append-only serve refuses). What
it cannot: read anything back (no `btrfs send`, no `cat`), touch a path outside its root (other
hosts' folders, `..`, symlinks), run any other program, or see other hosts' subvolumes
(listings are filtered to the root). `btrfs receive` runs with --chroot so a stream cannot
write through a symlink it created.

With `--append-only` (invariant 10) the key cannot destroy its own history either: it may
delete only what is not a complete backup (a partial receive: writable, or without a received
UUID), so failed transfers are still cleaned up, and it cannot make a backup writable. Complete
backups are then deleted only by the server's own retention (`btrfs-backup prune`).

With `--receive-slots N` (the same N and `--slot-folder` on every host's key), at most N receives
run at once on the server: a receive beyond them waits for a slot (receive_slots: a flock that the
kernel frees when its holder ends), says so to its source, and gives up after `--slot-wait` or as
soon as its source hangs up, with nothing received.

A normal source never meets a refusal, so each one is a signal. It is logged to the server's
syslog (the journal, facility auth, tag btrfs-backup-serve) as `refused[KIND] for ROOT: why;
command: '...'`, at the priority of its kind (REFUSAL_KINDS: `alert` for what no backup sends,
`err` for what the server must fix), and with `--metrics-file` counted per host and kind for
node_exporter (refusal_counter).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import datetime
import errno
import fcntl
import os
import posixpath
import re
import shlex
import subprocess
import sys

from ..host import arrival_check, btrfs, quota, receive_slots, refusal_counter, subvol_info

from ..model import name_trust, units
from ..model.receive_slots import gone_line, timeout_line, waited_line, waiting_line
from ..model.receive_errors import StderrWatch, broken_receive_refusal
from ..model.errors import ConfigError
from ..model.server_mode import MODE_PROBE, features_line, serve_answer
from .serve_staging import STAGE_COMMAND, StagingOperations, parse_stage_command

if TYPE_CHECKING:
    from typing import Iterable

EXIT_REFUSED = 126
#: No receive slot came free in time (EX_TEMPFAIL): nothing was received, a later run sends it.
EXIT_NO_SLOT = 75
#: The operations that run `btrfs receive`: each takes a receive slot when serve has them.
SLOT_OPERATIONS = ("receive", "stage_receive")
#: How long a receive waits for a slot by default (--slot-wait).
DEFAULT_SLOT_WAIT = "1h"
#: Leads every append-only refusal, so a source can tell it from other failures.
APPEND_ONLY = "append-only"
#: The decompressor of a compressed receive, as the client names it and as serve runs it.
DECOMPRESS_REQUEST = ["zstd", "-d", "-q"]
DECOMPRESS_ARGV = ["zstd", "-d", "-q", "-c"]
_DECOMPRESS_GRACE = 1.0  # seconds
SERVE_ENV = dict(os.environ, LC_ALL="C", PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

# One path component below the root: the engine's folder and snapshot names use this alphabet.
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@:-]{0,254}\Z")
_MARKER_FORMAT_RE = re.compile(r"^\\n(__btrfs_backup_[0-9a-f]{32}__) %d\\n\Z")
_LIST_FLAGS = ["-a", "-u", "-q", "-R"]


#: Each kind of refusal and its syslog priority: `alert` for what a backup never sends (a source
#: that does so is compromised or broken), `err` for what the server's administrator must fix.
REFUSAL_KINDS = {
    "command": "alert",      # a command, pipe, batch or flag that no backup sends
    "path": "alert",         # a path outside the key's folder (spelled so, or through a symlink)
    "append-only": "alert",  # deleting or making writable a complete backup (rule 10)
    "name": "alert",         # a received backup named in the future or out of order (rule 12)
    "stream": "alert",       # a stream that receive reported errors in yet ended 0 (a blocked clone)
    "quota": "err",          # the host is at its quota, or its quota is not set up
    "disk": "err",           # the root is not on its filesystem (the backup disk did not mount)
}
#: The priority of a kind this table does not know.
OTHER_PRIORITY = "err"
#: A plain ssh host's receive, started by a source that last sent here before this key ran serve
#: (it learns what the host is from its survey, beside it): declined, logged at `info` and not
#: counted, since no source is wrong to send it once. serve could not take it: the receive would
#: hold the root's lock until its stream came, and that source's survey waits for the same lock.
SHELL_RECEIVE = "shell-receive"


class Refused(Exception):
    """The command line is not one a backup sends, or names a path outside the root; `kind`
    (REFUSAL_KINDS) says which sort of refusal it is."""

    def __init__(self, message, kind="command"):
        super().__init__(message)
        self.kind = kind


def refusal_priority(kind: str) -> str:
    """Pure: the syslog priority name of a refusal of `kind`."""
    return REFUSAL_KINDS.get(kind, OTHER_PRIORITY)


class Operation:
    """One accepted command: what it does (`op`), its paths, and its flags; a receive with
    `decompress` reads a zstd-compressed stream."""

    __slots__ = ("op", "paths", "flags", "decompress")

    def __init__(self, op, paths=(), flags=(), decompress=False):
        self.op = op
        self.paths = list(paths)
        self.flags = list(flags)
        self.decompress = decompress

    def __eq__(self, other):
        return isinstance(other, Operation) and (self.op, self.paths, self.flags, self.decompress) == (
            other.op, other.paths, other.flags, other.decompress)

    def __repr__(self):
        return "Operation(%r, %r, %r%s)" % (self.op, self.paths, self.flags,
                                            ", decompress=True" if self.decompress else "")


class Request:
    """A parsed SSH_ORIGINAL_COMMAND: the operations in order, and the batch marker if any;
    `chained` (`A && B`): each runs only once the one before it succeeded."""

    def __init__(self, operations, marker=None, chained=False):
        self.operations = operations
        self.marker = marker
        self.chained = chained


def check_root(root: str) -> str:
    if not isinstance(root, str) or not root.startswith("/") or root != posixpath.normpath(root) \
            or root == "/" or _has_control(root):
        raise Refused("the serve root must be an absolute, normalised folder other than /, not %r"
                      % (root,))
    return root


def _has_control(text):
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def confine(path: str, root: str, below: bool = False) -> str:
    """Lexical check: `path` is `root` or inside it, spelled plainly (no '.', '..', '//', odd
    names). With `below`, the root itself is refused (it must not be deleted or received over)."""
    if not path.startswith("/"):
        raise Refused("%r is not an absolute path" % (path,), "path")
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/")
    if path == root:
        if below:
            raise Refused("%s is the root of this key; only what is inside it may be changed" % path, "path")
        return path
    if not path.startswith(root + "/"):
        raise Refused("%s is outside %s" % (path, root), "path")
    for component in path[len(root) + 1:].split("/"):
        if not _COMPONENT_RE.match(component):
            raise Refused("%r: path component %r is not allowed" % (path, component), "path")
    return path


def _tokens(line):
    if not isinstance(line, str) or not line.strip():
        raise Refused("no command given (this key only runs backups)")
    if _has_control(line):
        raise Refused("control characters (newlines, ...) are not allowed")
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError as err:
        raise Refused("cannot parse the command line: %s" % err)


def _segments(tokens):
    segments, current = [], []
    for token in tokens:
        if token == ";":
            segments.append(current)
            current = []
        elif token and all(c in "();<>|&" for c in token):
            raise Refused("shell operator %r is not allowed" % token)
        else:
            current.append(token)
    segments.append(current)
    if any(not segment for segment in segments):
        raise Refused("empty command")
    return segments


def parse_request(line, root, restore=False, hosts=None):
    """Pure: the operations an SSH_ORIGINAL_COMMAND asks for, or Refused (nothing may run).
    `restore`: the shapes a restore key may run (`parse_restore_command`), within `hosts`."""
    return _parse_tokens(_tokens(line), check_root(root), restore, hosts)


def _parse_tokens(tokens, root, restore, hosts):
    """parse_request() of a command line's tokens."""
    if "&&" in tokens:
        if restore:
            raise Refused("a restore key runs no `&&` (a restore sends `btrfs send` alone)")
        tokens, shown = _without_arrival_question(tokens, root)
        if shown is None:
            return _parse_receive_making_its_folder(tokens, root)
        folder = posixpath.dirname(shown)
        tokens = _without_filesystem_guard(_without_filesystem_question(tokens, folder), folder)
        request = _parse_receive_making_its_folder(tokens, root) if "&&" in tokens \
            else _parse_tokens(tokens, root, restore, hosts)
        _receive_that_asked_for(shown, request)
        raise Refused("this key runs btrfs-backup serve, not a shell: a receive here is sent in serve's own "
                      "form (the source sends it so once it has asked what this host is)", SHELL_RECEIVE)
    if "|" in tokens:
        if restore:
            raise Refused("a restore key runs no pipe (a restore sends `btrfs send` alone)")
        return Request([_parse_compressed_receive(tokens, root)])
    segments = _segments(tokens)
    if len(segments) == 1:
        operation = parse_restore_command(segments[0], root, hosts) if restore else parse_command(segments[0], root)
        return Request([operation])
    # The listing batch: CMD; printf '\n<marker> %d\n' $?; CMD; printf ... $?
    if len(segments) % 2:
        raise Refused("a batch must end with its status marker")
    marker = None
    operations = []
    for command, status in zip(segments[0::2], segments[1::2]):
        if len(status) != 3 or status[0] != "printf" or status[2] != "$?":
            raise Refused("batch commands must be separated by the status marker")
        match = _MARKER_FORMAT_RE.match(status[1])
        if not match or (marker is not None and match.group(1) != marker):
            raise Refused("malformed status marker %r" % status[1])
        marker = match.group(1)
        operation = parse_restore_command(command, root, hosts) if restore else parse_command(command, root)
        if operation.op in ("receive", "send") or operation.op.startswith("stage_"):
            raise Refused("%s cannot be part of a batch" % operation.op.replace("stage_", "staging "))
        operations.append(operation)
    return Request(operations, marker)


#: The words between the receive and the path in a plain ssh host's question of what arrived
#: (SshEndpoint.receiver, arrival_check): `&& printf '\n%s\n' MARKER && {` ... `|| :; }`.
_ARRIVAL_QUESTION = ["&&", "printf", "\\n%s\\n", arrival_check.ARRIVAL_MARKER, "&&", "{"]
_ARRIVAL_QUESTION_END = ["||", ":", ";", "}"]


def _without_arrival_question(tokens, root):
    """(the tokens before it, the path it shows) where the command ends in a plain ssh host's
    question of what arrived; (tokens, None) where it does not. Only `[sudo -n] btrfs subvolume
    show PATH` may be asked, of a path inside the root."""
    if tokens[-len(_ARRIVAL_QUESTION_END):] != _ARRIVAL_QUESTION_END or "printf" not in tokens:
        return tokens, None
    at = len(tokens) - 1 - tokens[::-1].index("printf") - 1  # the `&&` before the last printf
    if at < 1 or tokens[at:at + len(_ARRIVAL_QUESTION)] != _ARRIVAL_QUESTION:
        raise Refused("`&&` may only join a mkdir of the receive's folder to that receive")
    show = tokens[at + len(_ARRIVAL_QUESTION):-len(_ARRIVAL_QUESTION_END)]
    if show[:2] == ["sudo", "-n"]:
        show = show[2:]
    if len(show) != 4 or show[:3] != ["btrfs", "subvolume", "show"]:
        raise Refused("what arrived may only be asked with `btrfs subvolume show`")
    return tokens[:at], confine(show[3], root, below=True)


def _without_filesystem_question(tokens, folder):
    """The tokens before a plain ssh host's question of its folder's filesystem, where the command
    asks it right before what arrived (SshEndpoint.receiver); `tokens` where it does not."""
    question = ["&&", "{"] + arrival_check.filesystem_argv(folder) + _ARRIVAL_QUESTION_END
    return tokens[:-len(question)] if tokens[-len(question):] == question else tokens


def _without_filesystem_guard(tokens, folder):
    """The tokens after a plain ssh host's check of its folder's filesystem, where the command
    starts with it (arrival_check.filesystem_guard of `folder`, exactly); `tokens` where it does not."""
    if tokens[:2] != ["{", "test"] or "&&" not in tokens:
        return tokens
    at = tokens.index("&&")
    if len(tokens) < 5 or tokens[:at] != _tokens(arrival_check.filesystem_guard(folder, tokens[4])):
        raise Refused("`&&` may only join a mkdir of the receive's folder to that receive")
    return tokens[at + 1:]


def _receive_that_asked_for(shown, request):
    """Refused unless `request`, whose command asked for the facts of `shown` after it, is a
    receive into that path's folder: the exact shape of a plain ssh host's receive."""
    receive = request.operations[-1]
    if receive.op != "receive":
        raise Refused("only a receive may ask what arrived")
    if posixpath.dirname(shown) != receive.paths[0]:
        raise Refused("a receive may only ask what arrived in its own folder (%s, not %s)"
                      % (receive.paths[0], posixpath.dirname(shown)), "path")


def _parse_receive_making_its_folder(tokens, root):
    """`mkdir -p -- PATH && [zstd -d -q |] btrfs receive PATH`: a first receive into a folder that
    does not exist yet creates it in the same command (the mkdir alone is as serve takes it; only
    the receive's own folder, and the receive runs only once it exists)."""
    at = tokens.index("&&")
    before, after = tokens[:at], tokens[at + 1:]
    if "&&" in after or any(token in ("|", ";") for token in before):
        raise Refused("`&&` may only join a mkdir of the receive's folder to that receive")
    segments = _segments(before)
    make = parse_command(segments[0], root) if len(segments) == 1 else None
    if make is None or make.op != "mkdir" or make.flags != ["-p"]:
        raise Refused("`&&` may only join a mkdir of the receive's folder to that receive")
    receive = _parse_compressed_receive(after, root) if "|" in after else None
    if receive is None:
        segments = _segments(after)
        receive = parse_command(segments[0], root) if len(segments) == 1 else None
    if receive is None or receive.op != "receive":
        raise Refused("`&&` may only join a mkdir of the receive's folder to that receive")
    if make.paths != receive.paths:
        raise Refused("the mkdir before a receive may only create the receive's own folder (%s, not %s)"
                      % (receive.paths[0], make.paths[0]), "path")
    return Request([make, receive], chained=True)


def _parse_compressed_receive(tokens, root):
    """`zstd -d -q | [sudo -n] btrfs receive [-vv] PATH`: the one pipe a backup sends."""
    at = tokens.index("|")
    if tokens[:at] != DECOMPRESS_REQUEST:
        raise Refused("a pipe may only lead from 'zstd -d -q' into btrfs receive")
    segments = _segments(tokens[at + 1:])
    if len(segments) != 1:
        raise Refused("the compressed receive cannot be part of a batch")
    operation = parse_command(segments[0], root)
    if operation.op not in ("receive", "stage_land"):
        raise Refused("a pipe may only lead from 'zstd -d -q' into btrfs receive")
    return Operation(operation.op, operation.paths, operation.flags, decompress=True)


def parse_command(words, root):
    """Pure: one command's argv as an Operation, if it is one the engine sends to a destination."""
    if words[:2] == ["sudo", "-n"]:
        words = words[2:]  # serve decides itself what runs privileged
    for word in words:
        if "$" in word or "`" in word or _has_control(word):
            raise Refused("%r: expansions are not allowed" % word)
    if not words:
        raise Refused("empty command")
    name, args = words[0], words[1:]
    if name == "readlink" and len(args) == 3 and args[:2] == ["-e", "--"]:
        return Operation("readlink", [confine(args[2], root)])
    if name == "test" and len(args) == 2 and args[0] == "-e":
        return Operation("test", [confine(args[1], root)])
    if name == "cat" and args == ["/proc/self/mountinfo"]:
        return Operation("mountinfo")
    if name == "zstd" and args == ["--version"]:
        return Operation("zstd_version")
    if words == MODE_PROBE:
        return Operation("mode")
    if name == "mkdir" and args[:-1] in (["--"], ["-p", "--"]) and args:
        return Operation("mkdir", [confine(args[-1], root, below=True)], args[:-2])
    if name == "btrfs":
        return _parse_btrfs(args, root)
    if name == STAGE_COMMAND:
        return Operation(*parse_stage_command(args, root, confine, Refused))
    raise Refused("%r is not a command that a backup sends" % " ".join(words))


def _parse_btrfs(args, root):
    if args == ["--version"]:
        return Operation("btrfs_version")
    if args[:1] == ["receive"]:
        rest = args[1:]
        flags = rest[:-1]
        if len(rest) >= 1 and flags in ([], ["-vv"]):
            return Operation("receive", [confine(rest[-1], root)], flags)
    elif args[:2] == ["subvolume", "list"]:
        rest = args[2:]
        if rest[:4] == _LIST_FLAGS and len(rest) in (5, 6) and rest[4:-1] in ([], ["-r"]):
            return Operation("list", [confine(rest[-1], root)], rest[4:-1])
    elif args[:2] == ["subvolume", "delete"]:
        rest = args[2:]
        flags = ["-c"] if rest[:1] == ["-c"] else []
        rest = rest[len(flags):]
        if rest[:1] == ["--"] and len(rest) > 1:
            return Operation("delete", [confine(p, root, below=True) for p in rest[1:]], flags)
    elif args[:2] == ["subvolume", "sync"] and len(args) == 3:
        return Operation("sync", [confine(args[2], root)])
    elif args[:2] == ["property", "set"]:
        rest = args[2:]
        flags = ["-f"] if rest[:1] == ["-f"] else []
        rest = rest[len(flags):]
        if len(rest) == 4 and rest[0] == "-ts" and rest[2:] == ["ro", "false"]:
            return Operation("writable", [confine(rest[1], root, below=True)], flags)
    raise Refused("%r is not a btrfs command that a backup sends" % " ".join(["btrfs"] + args))


#: What a restore sends to the backup's end (restore.py through listing.py and transfer.py).
RESTORE_OPERATIONS = ("readlink", "mountinfo", "list", "send")


def parse_restore_command(words, root, hosts=None):
    """Pure: one command of a restore key's request: the listing batch's commands and `btrfs send
    [-p PARENT] BACKUP` (both below the root), each path within `hosts`' folders when given."""
    if words[:2] == ["sudo", "-n"]:
        words = words[2:]
    if words[:2] == ["btrfs", "send"]:
        operation = _parse_send(words[2:], root)
    else:
        try:
            operation = parse_command(words, root)
        except Refused as err:
            if err.kind != "command":
                raise
            operation = None
        if operation is None or operation.op not in RESTORE_OPERATIONS:
            raise Refused("%r is not a command that a restore sends (a restore key only reads backups)"
                          % " ".join(words))
    for path in operation.paths:
        within_hosts(path, root, hosts)
    return operation


def _parse_send(args, root):
    """`btrfs send [-p PARENT] BACKUP`: Operation("send", [BACKUP] or [BACKUP, PARENT])."""
    for word in args:
        if "$" in word or "`" in word or _has_control(word):
            raise Refused("%r: expansions are not allowed" % word)
    if len(args) == 1 and not args[0].startswith("-"):
        return Operation("send", [confine(args[0], root, below=True)])
    if len(args) == 3 and args[0] == "-p" and not args[2].startswith("-"):
        return Operation("send", [confine(args[2], root, below=True), confine(args[1], root, below=True)],
                         ["-p"])
    raise Refused("%r is not a btrfs send that a restore sends" % " ".join(["btrfs", "send"] + list(args)))


def within_hosts(path: str, root: str, hosts: Iterable[str] | None) -> str:
    """Pure: with `hosts` (host folder names), `path` (already confined to the root) must be one of
    those folders or inside one; None allows every host's folder."""
    if hosts is None:
        return path
    host = path[len(root) + 1:].split("/")[0] if path != root else ""
    if host not in hosts:
        raise Refused("%s is not in the folder of a host this key may restore (%s)"
                      % (path, ", ".join(sorted(hosts)) or "none"), "path")
    return path


def append_only_refusal(operation):
    """Pure: why an append-only key may not run `operation` at all, or None. Deletions are
    judged per subvolume on disk (`complete_backup_refusal`)."""
    if operation.op == "writable":
        return ("%s: %s cannot be made writable; complete backups are changed only by the "
                "server" % (APPEND_ONLY, operation.paths[0]))
    return None


def complete_backup_refusal(path: str, readonly: bool, received_uuid: str | None) -> str | None:
    """Pure: why an append-only key may not delete the subvolume at `path`, or None. Only a
    partial receive (writable, or without a received UUID) may go."""
    if readonly and received_uuid:
        return ("%s: %s is a complete backup; only the server's own retention deletes it"
                % (APPEND_ONLY, path))
    return None


def receive_args(flags: Iterable[str], folder: str, tenant_subvolume: str) -> list[str]:
    """Pure: the arguments of `btrfs receive` into `folder`. --chroot: the stream's own paths
    cannot leave the folder through symlinks it makes. `-m TENANT_SUBVOLUME`: receive looks up a
    stream's parent and clone sources by UUID on the whole filesystem, so a crafted stream could
    otherwise snapshot or reflink another host's backup into this one; with the host's subvolume
    as receive's root, a source outside it is "not reachable" and nothing is taken from it."""
    confined = ["-m", tenant_subvolume] if tenant_subvolume else []
    return ["receive", "--chroot"] + confined + list(flags) + [folder]


def pipe_status(decompress_status: int, receive_status: int) -> int:
    """Pure: the exit status of `zstd -d | btrfs receive`: receive's when it failed (zstd then
    only lost its reader), else zstd's (a corrupt or cut stream); a signal N as 128+N, like a shell."""
    for status in (receive_status, decompress_status):
        if status:
            return 128 - status if status < 0 else status
    return 0


def decompress_failure(status: int) -> str | None:
    """Pure: what the sender is told when zstd -d ended badly by itself, or None (zstd -q names
    only /*stdin*, so its own message alone does not say which side failed)."""
    if not status:
        return None
    how = "was killed by signal %d" % -status if status < 0 else "failed with exit status %d" % status
    return ("btrfs-backup serve: zstd -d %s: the compressed stream did not arrive whole; any partial "
            "receive is left for the sender to delete" % how)


# -- the executor ---------------------------------------------------------------------------
class _LocalOperations:
    """Operations done in Python: no process, nothing to inject into."""

    def _op_readlink(self, paths, flags):
        if not os.path.exists(paths[0]):
            self._say("readlink: %s: No such file or directory" % paths[0])
            return 1
        self.stdout.write((paths[0] + "\n").encode())
        return 0

    def _op_test(self, paths, flags):
        return 0 if os.path.lexists(paths[0]) else 1

    def _op_mode(self, paths, flags):
        """The mode probe (server_mode): a source asks it before it stages any deletion."""
        self.stdout.write(serve_answer(self.append_only).encode())
        return 0

    def _op_mountinfo(self, paths, flags):
        """Only the mounts on the way to the root and inside it: enough for the engine to see
        that the root is on btrfs, nothing about the rest of the server."""
        with open("/proc/self/mountinfo", "rb") as handle:
            lines = handle.read().decode("utf-8", "surrogateescape").splitlines()
        for line in lines:
            mounts = btrfs.parse_mountinfo(line)
            if mounts and self._relevant_mount(mounts[0].mount_point):
                self.stdout.write((line + "\n").encode("utf-8", "surrogateescape"))
        return 0

    def _relevant_mount(self, mount_point):
        root = self.real_root
        return (mount_point == "/" or root == mount_point or root.startswith(mount_point + "/")
                or mount_point.startswith(root + "/"))

    def _op_mkdir(self, paths, flags):
        try:
            if flags == ["-p"]:
                os.makedirs(paths[0], 0o755, exist_ok=True)
            else:
                os.mkdir(paths[0], 0o755)
        except OSError as err:
            self._say("mkdir: cannot create directory '%s': %s" % (paths[0], err.strerror))
            return 1
        return 0


class _BtrfsOperations:
    """btrfs operations: an argv list, privileged; and what append-only serving forbids (rule 10)."""

    def _btrfs(self, args, stdin=subprocess.DEVNULL, capture=False):
        argv = [self.btrfs_path] + args
        if self.use_sudo:
            argv = ["sudo", "-n"] + argv
        self.stdout.flush()
        try:
            # serve runs on a backup server without Ansible; btrfs receive reads the ssh stream.
            proc = subprocess.run(argv, stdin=stdin,  # pylint: disable=ansible-bad-function
                                  stdout=subprocess.PIPE if capture else self.stdout,
                                  stderr=self.stderr, env=SERVE_ENV, check=False)
        except OSError as err:
            self._say("btrfs-backup serve: cannot run %s: %s" % (argv[0], err.strerror))
            return 127, b""
        return proc.returncode, proc.stdout if capture else b""

    def _op_btrfs_version(self, paths, flags):
        """btrfs's version, then what this serve accepts beyond the shapes every serve takes
        (server_mode: a line that every source's reading of this answer skips)."""
        status = self._btrfs(["--version"])[0]
        self.stdout.write(features_line().encode())
        self.stdout.flush()
        return status

    def _op_list(self, paths, flags):
        status, out = self._btrfs(["subvolume", "list"] + _LIST_FLAGS + flags + paths,
                                  capture=True)
        if status != 0:
            return status
        self.stdout.write(filter_listing(out.decode("utf-8", "surrogateescape"), self._root_in_filesystem(),
                                         self.hosts).encode("utf-8", "surrogateescape"))
        return 0

    def _op_send(self, paths, flags):
        """A restore key's `btrfs send [-p PARENT] BACKUP`: both must be complete backups (a
        partial receive or the host's folder is not a backup to restore); the stream goes
        straight to the client."""
        for path in paths:
            shown = self._show(path)
            if shown is None or not (shown[1] and shown[2]):
                raise Refused("%s is not a complete backup (read-only, received); only backups are "
                              "sent to a restore" % path, "path")
        parent = ["-p", paths[1]] if flags == ["-p"] else []
        return self._btrfs(["send"] + parent + [paths[0]])[0]

    def _root_in_filesystem(self):
        with open("/proc/self/mountinfo", "rb") as handle:
            mounts = btrfs.parse_mountinfo(handle.read().decode("utf-8", "surrogateescape"))
        mount = btrfs.mount_of(mounts, self.real_root)
        if mount is None:
            raise Refused("cannot tell which filesystem holds %s" % self.root, "disk")
        return btrfs.path_in_filesystem(mount, self.real_root)

    def _op_delete(self, paths, flags):
        return self._btrfs(["subvolume", "delete"] + flags + ["--"] + paths)[0]

    def _op_sync(self, paths, flags):
        return self._btrfs(["subvolume", "sync"] + paths)[0]

    def _op_writable(self, paths, flags):
        return self._btrfs(["property", "set"] + flags + ["-ts", paths[0], "ro", "false"])[0]

    def _check_append_only(self, operation, paths):
        """Invariant 10: refuse, before anything runs, whatever would destroy a complete backup."""
        reason = append_only_refusal(operation)
        if reason is None and operation.op == "delete":
            for path in paths:
                shown = self._show(path)
                if shown is None:
                    raise Refused("%s: cannot tell whether %s is a complete backup"
                                  % (APPEND_ONLY, path), "append-only")
                reason = complete_backup_refusal(path, shown[1], shown[2])
                if reason:
                    break
        if reason:
            raise Refused(reason, "append-only")

    def _show(self, path):
        """(subvolume id, readonly, received_uuid) of the subvolume at `path`, or None."""
        status, out = self._btrfs(["subvolume", "show", path], capture=True)
        try:
            return btrfs.parse_subvolume_show(out.decode("utf-8", "replace")) if status == 0 else None
        except ValueError:
            return None


class _ReceiveOperations:
    """btrfs receive of a source's stream, and what serve does with what arrived: a broken
    receive (rule 2) or a backup whose name lies (rule 12) is deleted at once."""

    def _op_receive(self, paths, flags, decompress=False):
        return self._receive_from(paths, flags, self.stdin, decompress)

    def _receive_from(self, paths, flags, stream, decompress=False):
        """Receive `stream` (zstd-compressed with `decompress`: then the client's stdin) into
        paths[0], then judge what arrived."""
        args = receive_args(flags, paths[0], self._tenant_subvolume())
        # A host at its quota is refused before anything runs.
        quota_left = None if self.quota_bytes is None else self._quota_left()
        before = _subvolumes_in(paths[0])
        self.receive_errors = []
        if decompress:
            status = self._receive_compressed(args, paths[0], quota_left)
        else:
            status = self._receive(args, paths[0], stream, quota_left)
        if status == 0 and self.receive_errors:
            # Rule 2: receive said it failed but its status did not; a broken backup never stays.
            refusal = self._delete_arrivals(paths[0], before, broken_receive_refusal(self.receive_errors))
            return self._refuse(Refused(refusal, "stream"))
        arrived = sorted(_subvolumes_in(paths[0]) - before)
        refusal = self._judge_arrivals(paths[0], before, arrived)
        if refusal is not None:
            return self._refuse(Refused(refusal, "name"))
        if status == 0:
            self._answer_arrival(arrived)
        return status

    def _answer_arrival(self, arrived):
        """Once receive has exited with success: the facts of what it made (`arrived`: the paths of
        the subvolumes it made, arrival_check), so that the source's check of it needs no command of
        its own; nothing when they cannot be read (the source then asks, as it asks a serve from
        before this answer)."""
        if len(arrived) != 1:
            return
        status, out = self._btrfs(arrival_check.show_argv(arrived[0])[1:], capture=True)
        if status == 0:
            self.stdout.write(arrival_check.answer_text(out.decode("utf-8", "surrogateescape"))
                              .encode("utf-8", "surrogateescape"))
            self.stdout.flush()

    def _judge_arrivals(self, folder, before, arrived):
        """Rule 12: what this receive made (`arrived`, the subvolumes in `folder` that were not
        `before`) must be one backup named as the engine names it (not in the future, newer than
        every complete backup there); else serve deletes it at once (its own decision, also when
        append-only) and says why."""
        if not arrived:
            return None
        try:
            earlier = self._complete_backups_in(folder, before)
            refusal = name_trust.arrival_refusal([posixpath.basename(p) for p in arrived], earlier,
                                                 datetime.datetime.now(), self.clock_skew)
        except (OSError, ValueError) as err:
            refusal = "cannot check what arrived in %s (%s)" % (folder, err)
        if refusal is None:
            return None
        return self._delete_arrivals(folder, before, refusal)

    def _delete_arrivals(self, folder, before, refusal):
        """Delete every subvolume this receive made in `folder` (serve's own decision, also when
        append-only); `refusal` with what became of them."""
        arrived = sorted(_subvolumes_in(folder) - before)
        if not arrived:
            return "%s; it left nothing" % refusal
        status = self._btrfs(["subvolume", "delete", "--"] + arrived, capture=True)[0]
        return "%s; %s" % (refusal, "deleted it" if status == 0 else
                           "could not delete it (btrfs exit status %d)" % status)

    def _complete_backups_in(self, folder, paths):
        """Names of the complete backups (read-only, received) among `paths`, subvolumes directly
        in `folder`: from btrfs (privileged), since a backup's own folder may be closed to serve."""
        status, out = self._btrfs(["subvolume", "list"] + _LIST_FLAGS + ["-r", folder], capture=True)
        if status != 0:
            raise OSError("btrfs subvolume list failed with exit status %d" % status)
        inside = posixpath.relpath(folder, self.real_root)
        folder_in_fs = posixpath.normpath(posixpath.join("/" + self._root_in_filesystem(),
                                                         inside)).strip("/")
        wanted = {posixpath.basename(p) for p in paths}
        complete = []
        for entry in btrfs.parse_subvolume_list(out.decode("utf-8", "surrogateescape")):
            parent, name = posixpath.split(entry.path.strip("/"))
            if parent == folder_in_fs and name in wanted and entry.received_uuid:
                complete.append(name)
        return complete

    def _tenant_subvolume(self):
        """The key's root when it is a subvolume (the role makes each host's folder one): the
        only subtree a stream's incremental parent and clone sources may come from."""
        return self.real_root if subvol_info.is_subvolume_root(self.real_root) else None

    def _receive(self, args, folder, stream, quota_left):
        if quota_left is None:
            receiver = self._start_receiver(args, stream)
            return 127 if receiver is None else self._receiver_status(*receiver)
        return self._receive_within_quota(args, folder, stream, quota_left)

    def _start_receiver(self, args, stdin):
        """(btrfs receive started on `stdin`, the watch of its stderr), or None when it cannot run."""
        argv = (["sudo", "-n"] if self.use_sudo else []) + [self.btrfs_path] + args
        self.stdout.flush()
        try:
            # serve runs on a backup server without Ansible; btrfs receive reads the ssh stream.
            receiver = subprocess.Popen(argv, stdin=stdin, stdout=self.stdout,  # pylint: disable=ansible-bad-function
                                        stderr=subprocess.PIPE, env=SERVE_ENV)
        except OSError as err:
            self._say("btrfs-backup serve: cannot run %s: %s" % (argv[0], err.strerror))
            return None
        return receiver, StderrWatch(receiver.stderr, self.stderr)

    def _receiver_status(self, receiver, watch):
        """receive's exit status, once it ended; its `ERROR:` lines go to self.receive_errors."""
        status = receiver.wait()
        self.receive_errors = watch.finish()
        return status


class _QuotaOperations:
    """A receive within the host's quota: its usage is the referenced size of its level-1 qgroup,
    which holds its folder's subvolume and every backup received in it (assigned after each receive)."""

    def _host_qgroup(self):
        shown = self._show(self.real_root)
        if shown is None:
            raise Refused("quota: %s is not a subvolume, so it cannot have a quota" % self.root, "quota")
        return quota.host_qgroup(shown[0])

    def _usage(self, qgroup):
        status, out = self._btrfs(["qgroup", "show", "--raw", self.real_root], capture=True)
        used = quota.parse_qgroup_referenced(out.decode("utf-8", "replace"), qgroup) if status == 0 else None
        if used is None:
            raise Refused("quota: qgroup %s of %s is missing (the server needs 'btrfs quota enable' "
                          "and the host's qgroup, which the role sets up)" % (qgroup, self.root), "quota")
        return used

    def _quota_left(self):
        """(the host's qgroup, the bytes a receive may still bring), or Refused at its quota."""
        qgroup = self._host_qgroup()
        try:
            return qgroup, quota.room_left(self._usage(qgroup), self.quota_bytes, self.root)
        except ValueError as err:
            raise Refused(str(err), "quota")

    def _receive_within_quota(self, args, folder, stream, quota_left):
        qgroup, room = quota_left
        before = _subvolumes_in(folder)
        # The stream is copied into receive as it comes, up to the host's room.
        started = self._start_receiver(args, subprocess.PIPE)
        if started is None:
            return 127
        receiver, watch = started
        try:
            _copied, stopped = quota.copy_capped(stream.fileno(), receiver.stdin.fileno(), room)
        except OSError:
            stopped = False  # the receiver ended early: its own status says why
        if stopped:
            receiver.kill()
        receiver.stdin.close()
        status = self._receiver_status(receiver, watch)
        for path in sorted(_subvolumes_in(folder) - before):
            # Counted from now on; the kernel rescans shared extents in the background.
            shown = self._show(path)
            if shown is not None:
                self._btrfs(["qgroup", "assign", "0/%d" % shown[0], qgroup, self.real_root], capture=True)
        if stopped:
            self._say("btrfs-backup serve: quota exceeded: this backup would take %s past its "
                      "quota of %s; the partial receive is left for the sender to delete"
                      % (self.root, units.format_size(self.quota_bytes)))
            return 1
        return status


PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38


def _prctl(option, value):
    """Best effort: Linux's prctl(2) through libc; False where it cannot be called."""
    try:
        import ctypes  # only here: serve's start-up
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _no_new_privileges():
    """zstd decodes what a source sent: if a crafted stream took it over, it must not gain
    privileges (sudo and other setuid programs do not elevate a no_new_privs process)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def untraceable():
    """serve itself cannot be traced or read by other processes of its user (a decoder taken
    over by a crafted stream runs as that user): a non-dumpable process needs CAP_SYS_PTRACE."""
    return _prctl(PR_SET_DUMPABLE, 0)


class _ZstdOperations:
    """zstd for a compressed send stream: an argv list, unprivileged (it turns one pipe into
    another), without the right to gain privileges."""

    def _zstd(self, argv, stdin, stdout):
        """zstd started, or None when it cannot run (said on stderr; status 127, as a shell gives)."""
        self.stdout.flush()
        try:
            # serve runs on a backup server without Ansible; zstd reads the ssh stream.
            return subprocess.Popen(argv, stdin=stdin, stdout=stdout,  # pylint: disable=ansible-bad-function
                                    stderr=self.stderr, env=SERVE_ENV, preexec_fn=_no_new_privileges)
        except OSError as err:
            self._say("btrfs-backup serve: cannot run zstd: %s" % err.strerror)
            return None

    def _op_zstd_version(self, paths, flags):
        zstd = self._zstd(["zstd", "--version"], subprocess.DEVNULL, self.stdout)
        return 127 if zstd is None else zstd.wait()

    def _receive_compressed(self, args, folder, quota_left):
        """`zstd -d -q | btrfs receive` without a shell: zstd reads the client's stream, receive
        (or the quota's capped copy) reads what zstd writes; both statuses count."""
        zstd = self._zstd(DECOMPRESS_ARGV, self.stdin, subprocess.PIPE)
        if zstd is None:
            return 127
        status, stopped = None, False
        try:
            status = self._receive(args, folder, zstd.stdout, quota_left)
        finally:
            if status != 0:
                try:
                    zstd.wait(timeout=_DECOMPRESS_GRACE)  # a zstd that ended the stream is ending
                except subprocess.TimeoutExpired:
                    # Nobody reads its output any more: it would wait on a full pipe, or on a
                    # client that sends on, forever. Stopped here, its status tells nothing.
                    zstd.kill()
                    stopped = True
            zstd.stdout.close()
            decompress_status = zstd.wait()
        if not stopped and decompress_failure(decompress_status):
            self._say(decompress_failure(decompress_status))
        return pipe_status(decompress_status, status)


class _Refusals:
    """Saying no: on stderr for the source, in the log, and in the host's refusal counters."""

    def _refuse(self, err):
        kind = getattr(err, "kind", "command")
        if kind == SHELL_RECEIVE:
            self._say("btrfs-backup serve: declined: %s" % err)
            self.log("declined for %s: %s" % (self.root, err), "info")
            return EXIT_REFUSED
        self._say("btrfs-backup serve: refused: %s" % err)
        self.log("refused[%s] for %s: %s; command: %r" % (kind, self.root, err, self.line),
                 refusal_priority(kind))
        self._count_refusal(kind)
        return EXIT_REFUSED

    def _count_refusal(self, kind):
        """Count one refusal of `kind` for this host (None: only make its counters exist); a
        counter that cannot be written is logged, never a reason to answer otherwise."""
        if self.metrics_file is None:
            return
        host = posixpath.basename(self.root)
        try:
            if kind is None and refusal_counter.known(self.metrics_file, host, REFUSAL_KINDS):
                return
            refusal_counter.update(self.metrics_file, host, REFUSAL_KINDS, kind)
        except OSError as err:
            if kind is not None:  # said once per refusal, not at every connection
                self.log("cannot count refusals in %s: %s" % (self.metrics_file, err.strerror or err), "err")

    def _say(self, text):
        self.stderr.write((text + "\n").encode("utf-8", "replace"))
        self.stderr.flush()


class Server(_LocalOperations, _BtrfsOperations, _ReceiveOperations, _QuotaOperations, _ZstdOperations, _Refusals,
             StagingOperations):
    """Runs accepted operations for one root, checking each path again on disk (symlinks)."""

    environment = SERVE_ENV  # the environment of the programs serve runs
    _refused = Refused  # how the staging verbs refuse (serve_staging)

    def __init__(self, root, btrfs_path="btrfs", stdin=None, stdout=None, stderr=None,
                 use_sudo=None, append_only=False, log=None, quota_bytes=None, filesystem=None,
                 clock_skew=name_trust.DEFAULT_CLOCK_SKEW, metrics_file=None, restore=False, hosts=None,
                 receive_slots=None, slot_folder=None, slot_wait=3600):
        self.root = check_root(root)
        # At most `receive_slots` receives at once on this server (all hosts), each waiting up to
        # `slot_wait` seconds for a flock on a slot file in `slot_folder` (None: no limit).
        self.receive_slots, self.slot_folder, self.slot_wait = receive_slots, slot_folder, slot_wait
        self.restore = restore  # a restore key: reads backups, writes nothing (parse_restore_command)
        self.hosts = None if hosts is None else frozenset(hosts)  # the host folders a restore key may read
        self.clock_skew = clock_skew  # seconds a received backup's name may be ahead of this clock
        self.metrics_file = metrics_file  # the refusal counters' textfile (refusal_counter), or None
        self.filesystem = filesystem  # the UUID of the filesystem the root was set up on
        self.append_only = append_only
        self.quota_bytes = quota_bytes
        self.log = log if log is not None else _syslog  # log(message, priority name)
        self.btrfs_path = btrfs_path
        self.use_sudo = os.geteuid() != 0 if use_sudo is None else use_sudo
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer
        self.real_root = os.path.realpath(self.root)
        self.receive_errors = []  # the `ERROR:` lines of the last btrfs receive

    def serve(self, line: str) -> int:
        """Check the whole request first, then run it; returns the exit status for ssh."""
        self.line = line
        self._count_refusal(None)  # a host's counters exist from its first connection
        try:
            request = parse_request(line, self.root, self.restore, self.hosts)
        except Refused as err:
            return self._refuse(err)
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            if err.errno == errno.ENOENT:
                return self._serve_without_root(request)
            self._say("btrfs-backup serve: cannot open %s: %s" % (self.root, err.strerror))
            return 1
        if self.filesystem is not None:
            try:
                on_its_disk(self.root, self.filesystem, _filesystem_of(self.root))
            except Refused as err:
                os.close(root_fd)
                return self._refuse(err)
        try:
            # One command at a time per root: nothing can swap a checked path for a symlink
            # (e.g. from inside a concurrent receive) between the check and the command.
            fcntl.flock(root_fd, fcntl.LOCK_EX)
            return self._run_all(request, self._run)
        finally:
            os.close(root_fd)

    def _run_all(self, request, run):
        """Each operation in order (`run(operation)` its status), each status after the batch's marker."""
        status = 0
        for operation in request.operations:
            status = run(operation)
            if request.marker is not None:
                self.stdout.write(("\n%s %d\n" % (request.marker, status)).encode())
                self.stdout.flush()
            if request.chained and status != 0:
                if operation.op == "mkdir":
                    self._say("btrfs-backup serve: the folder %s could not be created, so nothing was "
                              "received" % operation.paths[0])
                break
        return status

    def _serve_without_root(self, request):
        """The key's folder does not exist (the role's server part failed, or the backup disk did
        not mount): the probes are answered, so a source learns that it meets serve, and paths
        are said to be missing; anything else is refused once (kind disk), naming the folder."""
        refused = []

        def run(operation):
            if operation.op in ROOTLESS_OPERATIONS:
                return self._run(operation)
            if refused:
                return refused[0]
            refused.append(self._refuse(Refused(missing_root_refusal(self.root), "disk")))
            return refused[0]
        return self._run_all(request, run)

    def _on_disk(self, path):
        """The path as the kernel would resolve it must be the path as written (no symlinks
        below the root), so what was checked is what the command touches."""
        rel = posixpath.relpath(path, self.root)
        expected = self.real_root if rel == "." else posixpath.join(self.real_root, rel)
        if os.path.realpath(path) != expected:
            raise Refused("%s leads outside %s (symbolic link)" % (path, self.root), "path")
        return expected

    def _run(self, operation):
        try:
            paths = [self._on_disk(p) for p in operation.paths]
            if self.append_only:
                self._check_append_only(operation, paths)
            if self.receive_slots and operation.op in SLOT_OPERATIONS:
                return self._in_receive_slot(operation, paths)
            return self._carry_out(operation, paths)
        except Refused as err:
            return self._refuse(err)

    def _carry_out(self, operation, paths):
        if operation.decompress:
            return getattr(self, "_op_" + operation.op)(paths, operation.flags, decompress=True)
        return getattr(self, "_op_" + operation.op)(paths, operation.flags)

    def _in_receive_slot(self, operation, paths):
        """The receive once it holds one of the server's receive slots (waiting for one, said on
        stderr for the source); EXIT_NO_SLOT, with nothing received, when none came free in time."""
        try:
            held, waited = receive_slots.take_slot(self.slot_folder, self.receive_slots, self.slot_wait,
                                                   lambda busy: self._say(waiting_line(busy)),
                                                   lambda: receive_slots.hung_up(self.stdout.fileno()))
        except receive_slots.NoSlot as err:
            self._say(timeout_line(err.busy, self.slot_wait))
            return EXIT_NO_SLOT
        except receive_slots.SenderGone:
            self._say(gone_line())
            return EXIT_NO_SLOT
        except OSError as err:
            self._say("btrfs-backup serve: cannot take a receive slot in %s: %s"
                      % (self.slot_folder, err.strerror or err))
            return 1
        try:
            if waited:
                self._say(waited_line(waited))
            return self._carry_out(operation, paths)
        finally:
            os.close(held)


#: What serve answers also when its root is missing: the probes, and the paths' existence.
ROOTLESS_OPERATIONS = ("mode", "btrfs_version", "zstd_version", "mountinfo", "readlink", "test")


def missing_root_refusal(root: str) -> str:
    """Pure: why nothing but the probes runs while the key's folder is missing."""
    return ("the folder %s of this key does not exist on this server: did the role's server part fail "
            "here, or is the backup disk not mounted? Nothing was changed" % root)


def _filesystem_of(path):
    try:
        return subvol_info.filesystem_uuid(path)
    except OSError:
        return None  # not on btrfs


def on_its_disk(root, expected, found):
    """Pure (rule 8): refuse when the root is not on the filesystem it was set up on (`found`:
    the UUID of the filesystem that holds it now, None if that is not btrfs), so that backups
    never land on the server's system disk when the backup disk did not mount."""
    if found != expected:
        raise Refused("the backup root %s is not on the filesystem it was set up on (%s) but on %s: "
                      "is the backup disk mounted? Nothing was received"
                      % (root, expected, found or "a filesystem that is not btrfs"), "disk")


def _subvolumes_in(folder):
    """The subvolumes directly in `folder`."""
    try:
        with os.scandir(folder) as entries:
            return {e.path for e in entries
                    if e.is_dir(follow_symlinks=False) and subvol_info.is_subvolume_root(e.path)}
    except OSError:
        return set()


def filter_listing(text: str, root_in_fs: str, hosts: Iterable[str] | None = None) -> str:
    """Pure: keep the `btrfs subvolume list` lines of subvolumes at or below `root_in_fs` (the
    root's path from the filesystem's top level), so a host never learns another's UUIDs; with
    `hosts`, only those at or below these host folders of the root."""
    if hosts is not None:
        folders = sorted(posixpath.join(root_in_fs, host) for host in hosts)
        return "".join(filter_listing(text, folder) for folder in folders)
    kept = []
    for line in text.splitlines():
        if not line.startswith("ID "):
            continue
        path = line.partition(" path ")[2]
        if path.startswith("<FS_TREE>/"):
            path = path[len("<FS_TREE>/"):]
        path = path.strip("/")
        if not root_in_fs or path == root_in_fs or path.startswith(root_in_fs + "/"):
            kept.append(line)
    return "".join(line + "\n" for line in kept)


def _syslog(message, priority):
    """Refusals go to the server's log (the journal), where an administrator looks for attacks;
    `priority` is a syslog priority name ("alert", "err", ...): `journalctl -p alert` finds them."""
    import syslog  # only here: a refusal is rare, a run's start-up time is not
    client = os.environ.get("SSH_CLIENT", "").split(" ")[0] or "local"
    syslog.openlog("btrfs-backup-serve", syslog.LOG_PID, syslog.LOG_AUTH)
    syslog.syslog(getattr(syslog, "LOG_" + priority.upper()), "from %s: %s" % (client, message))


def slot_settings(receive_slots, slot_folder, slot_wait) -> tuple[int | None, str | None, int]:
    """Pure: (slots or None for no limit, their folder, seconds a receive waits) from serve's
    --receive-slots, --slot-folder and --slot-wait; ConfigError for what cannot work."""
    count = units.parse_count(receive_slots, "--receive-slots") if receive_slots not in (None, "") else 0
    wait = units.parse_duration(slot_wait, "--slot-wait")
    if not count:
        return None, None, wait
    if not slot_folder or not slot_folder.startswith("/") or _has_control(slot_folder):
        raise ConfigError("--receive-slots needs --slot-folder: an absolute folder for the slot files, "
                          "writable by this key's user and the same for every host's key")
    return count, posixpath.normpath(slot_folder), wait


def main(root, btrfs_path="btrfs", environ=None, append_only=False, quota_size=None, filesystem=None,
         clock_skew="15m", metrics_file=None, restore=False, hosts=None, receive_slots=None, slot_folder=None,
         slot_wait=DEFAULT_SLOT_WAIT):
    """`btrfs-backup serve --root DIR`: the forced command of a source host's key (`restore`: of
    an administrator's restore key, within the folders of `hosts` when given)."""
    environ = os.environ if environ is None else environ
    untraceable()
    try:
        if restore and (append_only or quota_size):
            raise ConfigError("--restore only reads backups: --append-only and --quota are for a source's key")
        if hosts and not restore:
            raise ConfigError("--host is for a restore key (--restore)")
        for host in hosts or ():
            if not _COMPONENT_RE.match(host):
                raise ConfigError("--host %r is not a host folder name" % (host,))
        quota_bytes = units.parse_size(quota_size, "--quota") if quota_size else None
        skew = name_trust.parse_clock_skew(clock_skew, "--clock-skew")
        slots = slot_settings(receive_slots, slot_folder, slot_wait)
        server = Server(root, btrfs_path, append_only=append_only, quota_bytes=quota_bytes,
                        filesystem=filesystem.lower() if filesystem else None, clock_skew=skew,
                        metrics_file=metrics_file, restore=restore, hosts=hosts or None,
                        receive_slots=slots[0], slot_folder=slots[1], slot_wait=slots[2])
    except (Refused, ConfigError) as err:
        sys.stderr.write("btrfs-backup serve: %s\n" % err)
        return 2
    return server.serve(environ.get("SSH_ORIGINAL_COMMAND", ""))
