# -*- coding: utf-8 -*-
# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A fake btrfs host for unit tests: answers the engine's commands from an in-memory subvolume table."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import shutil
import subprocess
import uuid

try:
    from ansible_collections.btrfs.backup.plugins.module_utils.engine.host.runner import CommandResult
    from ansible_collections.btrfs.backup.plugins.module_utils.engine.model.server_mode import (
        MODE_PROBE, features_line, serve_answer)
except ImportError:  # the engine's own unit tests import it as `engine`, as the CLI does
    from engine.host.runner import CommandResult
    from engine.model.server_mode import MODE_PROBE, features_line, serve_answer


class FakeHost(object):
    """Stands in for the module's command runner (run/popen), over a real temp dir as the btrfs mount.

    Folders are real directories, so the engine's lock file and job lock work as on a real host;
    which of them are subvolumes, their uuids and read-only flags live in `subvolumes`.
    Every argv the engine runs is kept in `commands`; `answers` forces the result of a command
    (matched by its first words) for error cases. A `btrfs send | btrfs receive` pipeline runs
    as real `true` processes while the receive's effect happens in the table; `fail_receive`
    makes the receives into one folder fail, leaving a partial receive or not.

    ssh commands (an `ssh://HOST/PATH` endpoint) run on the same table, as if HOST were this
    host: a plain ssh host by default; `serve_mode` "append-only" makes it `serve --append-only`
    (it answers the mode probe and refuses deleting a complete backup, as serve does), and
    "append-only, older" a serve from before the mode probe (it refuses the probe's whole batch).
    A serve names its features after btrfs's version (server_mode.features_line) unless
    `serve_features` is False (a serve from before them: it refuses the receive that makes its folder).
    """

    REFUSED = 126  # serve.EXIT_REFUSED

    def __init__(self, root):
        self.root = os.path.realpath(str(root))
        self.subvolumes = {}  # absolute path -> dict(id, uuid, parent_uuid, received_uuid, readonly)
        self.commands = []
        self.answers = []
        self.failing_receives = {}  # folder -> whether a failed receive leaves a partial receive
        self._next_id = 256
        self._sending = None
        self.serve_mode = None
        self.serve_features = True
        self.refusals = []  # what the emulated serve refused

    # -- building the scene --------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def subvolume(self, path, readonly=False, parent_uuid=None, received_uuid=None):
        os.makedirs(path)
        self.subvolumes[path] = dict(id=self._next_id, uuid=str(uuid.uuid4()), parent_uuid=parent_uuid,
                                     received_uuid=received_uuid, readonly=readonly)
        self._next_id += 1
        return path

    def snapshot(self, source, target):
        return self.subvolume(target, readonly=True, parent_uuid=self.subvolumes[source]["uuid"])

    def answer(self, prefix, returncode, stdout="", stderr=""):
        """Make every command starting with the words `prefix` end with this result."""
        self.answers.append((list(prefix), CommandResult(list(prefix), returncode, stdout, stderr)))

    def fail_receive(self, folder, leave_partial=True):
        """Make every receive into `folder` fail (exit status 1), like a connection that drops."""
        self.failing_receives[folder] = leave_partial

    def ran(self, *words):
        """The commands that started with these words."""
        return [argv for argv in self.commands if argv[:len(words)] == list(words)]

    # -- the runner interface --------------------------------------------------------------

    def run(self, argv, input_text=None):
        argv = list(argv)
        self.commands.append(argv)
        for prefix, result in self.answers:
            if argv[:len(prefix)] == prefix:
                return CommandResult(argv, result.returncode, result.stdout, result.stderr)
        handler = self._handlers().get(tuple(argv[:3])) or self._handlers().get(tuple(argv[:2])) \
            or self._handlers().get(tuple(argv[:1]))
        if handler is None:
            raise AssertionError("the fake host does not know %s" % shlex.join(argv))
        return handler(argv)

    def popen(self, argv, stdin=None, stdout=None, stderr=None, pass_fds=()):
        argv = list(argv)
        self.commands.append(argv)
        ok, answer = True, None
        receive, check = self._remote_receive(argv) if argv[0] == "ssh" else ([], [])
        if argv[:2] == ["btrfs", "send"]:
            self._sending = argv[-1]
        elif argv[:2] == ["btrfs", "receive"]:
            ok = self._receive(argv[-1])
        elif receive[-3:-1] == ["btrfs", "receive"]:
            if check and self.serve_mode:
                raise AssertionError("serve refuses a receive with more after it: %s" % shlex.join(argv))
            ok = self._receive(receive[-1])
            if ok and (check or self.serve_mode == "append-only"):
                # The receive's answer about what arrived: its own command's, or a serve's.
                answer = self._show(os.path.join(receive[-1], os.path.basename(self._sending)))
        elif argv[0] not in ("pv", "tee", "zstd", "mbuffer") and argv[:2] != ["sh", "-c"]:
            raise AssertionError("the fake host does not stream %s" % shlex.join(argv))
        process = ["true" if ok else "false"] if answer is None else ["printf", "%s", answer]
        return subprocess.Popen(process, stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=pass_fds)

    def _remote_receive(self, argv):
        """(the words of a remote command up to its first `&&`, the words after it); a leading
        `mkdir -p -- F &&` (the receive that makes its folder) is carried out first."""
        words = self._made_folder(self._remote_words(argv))
        if "&&" not in words:
            return words, []
        return words[:words.index("&&")], words[words.index("&&") + 1:]

    def _made_folder(self, words):
        """The words after a leading `[sudo -n] mkdir -p -- F &&`, once F is made; a serve that
        named no features refuses that form, as one from before it does."""
        first = words[2:] if words[:2] == ["sudo", "-n"] else words
        if first[:3] != ["mkdir", "-p", "--"] or first[4:5] != ["&&"]:
            return words
        if self.serve_mode and not (self.serve_features and self.serve_mode == "append-only"):
            raise AssertionError("this serve refuses `&&`: %s" % shlex.join(words))
        os.makedirs(first[3], exist_ok=True)
        return first[5:]

    def _show(self, path):
        """`btrfs subvolume show` of a subvolume of the table, after the receive's answer marker."""
        sub = self.subvolumes[path]
        return ("\nbtrfs-backup-arrived\n%s\n\tName: \t\t\t%s\n\tUUID: \t\t\t%s\n\tParent UUID: \t\t%s\n"
                "\tReceived UUID: \t\t%s\n\tSubvolume ID: \t\t%d\n\tFlags: \t\t\t%s\n\tSnapshot(s):\n" % (
                    os.path.relpath(path, self.root), os.path.basename(path), sub["uuid"], sub["parent_uuid"] or "-",
                    sub["received_uuid"] or "-", sub["id"], "readonly" if sub["readonly"] else "-"))

    def _receive(self, folder):
        snapshot = self.subvolumes[self._sending]
        target = os.path.join(folder, os.path.basename(self._sending))
        if folder in self.failing_receives:
            if self.failing_receives[folder]:
                self.subvolume(target)  # writable, without received_uuid: a partial receive
            return False
        # A received subvolume sent again carries its received_uuid (a restore's stream).
        self.subvolume(target, readonly=True, received_uuid=snapshot["received_uuid"] or snapshot["uuid"])
        return True

    def _handlers(self):
        return {
            ("readlink",): self._readlink,
            ("cat", "/proc/self/mountinfo"): self._mountinfo,
            ("btrfs", "subvolume", "list"): self._list,
            ("btrfs", "subvolume", "snapshot"): self._snapshot,
            ("btrfs", "subvolume", "delete"): self._delete,
            ("btrfs", "subvolume", "sync"): self._ok,
            ("btrfs", "property", "set"): self._set_writable,
            ("mkdir",): self._mkdir,
            ("rmdir",): self._rmdir,
            ("test", "-e"): lambda argv: self._ok(argv) if os.path.lexists(argv[-1]) else self._fail(argv, ""),
            ("mv", "-T"): self._move,
            ("btrfs", "--version"): lambda argv: self._ok(argv, "btrfs-progs v6.2\n"),
            ("zstd", "--version"): lambda argv: self._fail(argv, "zstd: command not found", 127),
            ("echo",): lambda argv: self._ok(argv, " ".join(argv[1:]) + "\n"),
            ("ssh",): self._ssh,
        }

    # -- ssh: the remote host is this one ----------------------------------------------------

    @staticmethod
    def _remote_words(argv):
        return shlex.split(argv[argv.index("--") + 1]) if "--" in argv else []

    def _ssh(self, argv):
        if "-G" in argv or "-O" in argv or "-N" in argv:  # ssh's config; the shared connection's start or end
            return self._ok(argv)
        line = argv[argv.index("--") + 1]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segments = [[]]
        for token in lexer:
            if token == ";":
                segments.append([])
            else:
                segments[-1].append(token)
        if self.serve_mode == "append-only, older" and MODE_PROBE in segments:
            return self._refuse(argv, "%r is not a command that a backup sends" % " ".join(MODE_PROBE))
        if len(segments) == 1:
            return self._remote(segments[0])
        out, err, status = [], [], 0
        for segment in segments:
            if segment[0] == "printf":  # the batch's status marker
                out.append(segment[1].replace("\\n", "\n").replace("%d", str(status)))
                continue
            result = self._remote(segment)
            status = result.returncode
            out.append(result.stdout)
            err.append(result.stderr)
        return CommandResult(argv, 0, "".join(out), "".join(err))

    def _remote(self, words):
        if words[:2] == ["sudo", "-n"]:
            words = words[2:]
        if self.serve_mode and words == MODE_PROBE:
            return self._ok(words, serve_answer(append_only=True))
        if self.serve_mode == "append-only" and self.serve_features and words == ["btrfs", "--version"]:
            return self._ok(words, "btrfs-progs v6.2\n" + features_line())
        if self.serve_mode and words[:3] == ["btrfs", "subvolume", "delete"]:
            for path in words[words.index("--") + 1:]:
                sub = self.subvolumes.get(path)
                if sub and sub["readonly"] and sub["received_uuid"]:
                    return self._refuse(words, "append-only: %s is a complete backup; only the "
                                               "server's own retention deletes it" % path)
        return self.run(words)

    def _refuse(self, argv, why):
        self.refusals.append(why)
        return self._fail(argv, "btrfs-backup serve: refused: %s\n" % why, self.REFUSED)

    # -- commands --------------------------------------------------------------------------

    def _ok(self, argv, stdout=""):
        return CommandResult(argv, 0, stdout, "")

    def _fail(self, argv, stderr, returncode=1):
        return CommandResult(argv, returncode, "", stderr)

    def _readlink(self, argv):
        path = argv[-1]
        if not os.path.exists(path):
            return self._fail(argv, "")
        return self._ok(argv, os.path.realpath(path) + "\n")

    def _filesystems(self):
        """Each folder directly under the root is a btrfs filesystem of its own (a source and its
        destinations live on different disks, as rule 8 wants); the root itself is one too."""
        tops = sorted(e.name for e in os.scandir(self.root) if e.is_dir()) if os.path.isdir(self.root) else []
        return [(self.root, "/dev/fake0")] + [(os.path.join(self.root, t), "/dev/fake-" + t) for t in tops]

    def _mount_of(self, path):
        return max((m for m in self._filesystems() if path == m[0] or path.startswith(m[0] + "/")),
                   key=lambda m: len(m[0]))

    def _mountinfo(self, argv):
        lines = ["22 1 254:1 / / rw - ext4 /dev/vda1 rw"]
        for number, (point, device) in enumerate(self._filesystems()):
            lines.append("%d 22 0:%d / %s rw - btrfs %s rw,subvol=/" % (50 + number, 99 + number, point, device))
        return self._ok(argv, "\n".join(lines) + "\n")

    def _list(self, argv):
        readonly_only = "-r" in argv
        mount = self._mount_of(os.path.realpath(argv[-1]))[0]
        lines = []
        for path, sub in sorted(self.subvolumes.items(), key=lambda item: item[1]["id"]):
            if readonly_only and not sub["readonly"]:
                continue
            if self._mount_of(path)[0] != mount:
                continue  # on another filesystem
            lines.append("ID %d gen 10 top level 5 parent_uuid %s received_uuid %s uuid %s path %s\n" % (
                sub["id"], sub["parent_uuid"] or "-", sub["received_uuid"] or "-", sub["uuid"],
                os.path.relpath(path, mount)))
        return self._ok(argv, "".join(lines))

    def _snapshot(self, argv):
        source, target = argv[-2], argv[-1]
        if source not in self.subvolumes:
            return self._fail(argv, "ERROR: not a subvolume: %s" % source)
        if os.path.exists(target):
            return self._fail(argv, "ERROR: target path already exists: %s" % target)
        if "-r" in argv:
            self.snapshot(source, target)
            # A read-only snapshot of a received subvolume keeps its received_uuid (a restore).
            self.subvolumes[target]["received_uuid"] = self.subvolumes[source]["received_uuid"]
        else:
            self.subvolume(target, parent_uuid=self.subvolumes[source]["uuid"])
        return self._ok(argv, "Create a readonly snapshot of '%s' in '%s'\n" % (source, target))

    def _delete(self, argv):
        for path in argv[argv.index("--") + 1:]:
            if path not in self.subvolumes:
                return self._fail(argv, "ERROR: Not a Btrfs subvolume: %s" % path)
            del self.subvolumes[path]
            shutil.rmtree(path)
        return self._ok(argv)

    def _set_writable(self, argv):
        self.subvolumes[argv[-3]]["readonly"] = False
        return self._ok(argv)

    def _rmdir(self, argv):
        os.rmdir(argv[-1])
        return self._ok(argv)

    def _move(self, argv):
        source, target = argv[-2], argv[-1]
        os.rename(source, target)
        if source in self.subvolumes:
            self.subvolumes[target] = self.subvolumes.pop(source)
        return self._ok(argv)

    def _mkdir(self, argv):
        os.makedirs(argv[-1], exist_ok="-p" in argv)
        return self._ok(argv)
