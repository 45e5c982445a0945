# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""Run a stream as connected processes: no shell, the stream never enters Python.

A stream is a tree of stages (`Node`): a chain of processes, and where a node has several
children a `tee -p` copies its output to each of them. Every stage's exit status is checked,
and each leaf (one destination's receiver) gets its own verdict: a receiver that fails, or
whose own stages fail, does not stop the others (`tee -p` drops an output whose reader has
gone and goes on with the rest)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing: the CLI starts faster

import os
import signal
import threading
import time

from ..model.errors import TransferError

if TYPE_CHECKING:
    import subprocess
    from typing import Callable, Iterator
    from .runner import CommandRunner


class Stage:
    """One process. `meter`: its output is the whole uncompressed stream (its byte count is the
    transfer's size and its progress); `wire`: its output is what crosses the link compressed;
    `capture_stderr=False` lets it draw on the terminal (pv); `answers`: a leaf's last stage whose
    output is kept (a receive's answer about what arrived, host/arrival_check.py); `remote`: an ssh
    command, whose output an ssh connection's master may write itself (the ssh process then counts
    nothing of it): its bytes are counted where a process here reads them, or not at all."""

    __slots__ = ("name", "argv", "capture_stderr", "meter", "wire", "answers", "remote")

    def __init__(self, name, argv, capture_stderr=True, meter=False, wire=False, answers=False, remote=False):
        self.name, self.argv, self.capture_stderr = name, argv, capture_stderr
        self.meter, self.wire, self.answers, self.remote = meter, wire, answers, remote

    def __repr__(self):
        return "Stage(%r)" % (self.name,)


class Node:
    """Stages run in a chain; `children` each read all of the last stage's output; `leaf`
    names a leaf (whose receiver ends it)."""

    __slots__ = ("stages", "children", "leaf")

    def __init__(self, stages, children=(), leaf=None):
        self.stages, self.children, self.leaf = list(stages), list(children), leaf

    def leaves(self) -> list[tuple[Node, list[Stage]]]:
        """(leaf, the stages from the root to its end), for every leaf."""
        if self.leaf is not None:
            return [(self.leaf, list(self.stages))]
        return [(leaf, self.stages + path) for child in self.children for leaf, path in child.leaves()]

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


class StreamResult:
    """What a stream did: `failures` leaf -> the reason it failed (absent: it succeeded);
    `bytes_sent` the stream's size (the meter stage's output; None when no stage here sees the
    uncompressed stream), `wire_bytes` leaf -> what crossed its link compressed (absent: not
    compressed), `seconds` the wall time, `stderr` leaf -> what the stages on its way said on
    stderr (a backup server's notes, such as a wait for a receive slot), `answers` leaf -> the
    output of its last stage where that stage `answers`, `source_said` what the first stage (the
    send) said on stderr (a pulled source's snapshot taken in its command: host/snapshot_in_send.py)."""

    def __init__(self, failures, bytes_sent, wire_bytes, seconds, stderr=None, answers=None, source_said=""):
        self.failures, self.bytes_sent = failures, bytes_sent
        self.wire_bytes, self.seconds = wire_bytes, seconds
        self.stderr = stderr or {}
        self.answers = answers or {}
        self.source_said = source_said


def stderr_log():
    """A nameless in-memory file for one stage's stderr or answer (read back when the stage has ended)."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("btrfs-backup-stderr", os.MFD_CLOEXEC), "w+b")
    import tempfile  # no memfd (not Linux): an unlinked temp file does the same
    return tempfile.TemporaryFile()


def written_bytes(pid: int) -> int | None:
    """Bytes a process wrote so far (or before it was reaped), from /proc/PID/io; None if unknown."""
    return _io_count(pid, "wchar:")


def read_bytes(pid: int) -> int | None:
    """Bytes a process read so far (or before it was reaped), from /proc/PID/io; None if unknown."""
    return _io_count(pid, "rchar:")


def _io_count(pid, field):
    try:
        with open("/proc/%d/io" % pid) as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _wait_keep_zombie(pid):
    """Wait for `pid` to exit without reaping it, so its /proc entry can still be read."""
    if not hasattr(os, "waitid"):
        return
    while True:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


class _Started:
    """The processes of a running stream, in start order, with their stages and stderr logs."""

    def __init__(self):
        self.procs, self.stages, self.logs, self.tees = [], [], [], {}
        self.answers = {}  # id(stage) -> the file its output goes to (Stage.answers)
        self.copiers = []  # threads that carry a stage's stream to an early stage (_adopt)
        self.readers = {}  # id(stage) -> (stage, pid) of the process here that reads its output (counter)
        self.copied = {}  # id(stage) -> [bytes] a copier carried of its output

    def counter(self, flag: str):
        """(pid to wait for, a function that gives the bytes so far) of the stage with `flag`
        (meter, wire): its own count, or for an ssh stage (Stage.remote) what the process here that
        reads its output read (a copier's count); None: no such stage, or nothing here sees it."""
        for stage, proc in zip(self.stages, self.procs):
            if not getattr(stage, flag):
                continue
            if not stage.remote:
                return proc.pid, lambda: written_bytes(proc.pid)
            if id(stage) in self.copied:
                return None, lambda: self.copied[id(stage)][0]
            reader = self.readers.get(id(stage))
            if reader is None or reader[0].remote:
                return None
            return reader[1], lambda: read_bytes(reader[1])
        return None

    def add(self, stage: Stage, proc: subprocess.Popen, log: object) -> None:
        self.procs.append(proc)
        self.stages.append(stage)
        self.logs.append(log)


class EarlyStages:
    """Last stages of a stream started before the stream (a remote receive: its ssh channel opens
    while the run still works here). Each reads a pipe whose write end this run keeps until the
    stage before it in the stream takes it (run_stream with a stage of the same argv), or until
    `give_up()` closes it: the stage then reads an empty stream (a `btrfs receive` makes nothing)."""

    def __init__(self, runner: CommandRunner):
        self.runner = runner
        self._waiting = {}  # tuple(argv) -> (Popen, write end, stderr log, answer file or None)
        self._starting = None  # the start in the background (start_beside), until it is waited for

    def start_beside(self, stage: Stage) -> None:
        """start(stage) in the background: the run goes on with its next command at once (the
        stage's process starts while that one's does); take and give_up wait for it."""
        from .overlap import InBackground

        self._starting = InBackground(self.start, stage)

    def _started(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.result()

    def start(self, stage: Stage) -> None:
        """Start `stage` now, reading a pipe; if it cannot start, the stream starts it as usual."""
        import subprocess

        read, write = os.pipe()
        log = stderr_log()
        answer = stderr_log() if stage.answers else None
        try:
            proc = self.runner.popen(stage.argv, stdin=read, stdout=answer or subprocess.DEVNULL, stderr=log)
        except OSError:
            os.close(write)
            for file in (log, answer):
                if file is not None:
                    file.close()
            return
        finally:
            os.close(read)
        self._waiting[tuple(stage.argv)] = (proc, write, log, answer)

    def take(self, stage: Stage):
        """(process, write end, stderr log, answer file) of the stage started early with this
        stage's argv, now the stream's (None: none was)."""
        self._started()
        return self._waiting.pop(tuple(stage.argv), None)

    def give_up(self, timeout: float = 10.0) -> None:
        """Every stage not taken reads an empty stream and is waited for (stopped after `timeout`);
        what it said is not the run's: it got no stream."""
        import subprocess

        self._started()
        waiting, self._waiting = list(self._waiting.values()), {}
        for _proc, write, _log, _answer in waiting:
            os.close(write)
        deadline = time.monotonic() + timeout
        for proc, _write, log, answer in waiting:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for file in (log, answer):
                if file is not None:
                    file.close()


def run_stream(runner: CommandRunner, root: Node, on_progress: Callable | None = None,
               interval: float = 30.0, early: EarlyStages | None = None, source=None) -> StreamResult:
    """Start every stage of the tree, wait for all, and judge each leaf by the exit status of
    every stage on its way (StreamResult). `on_progress(bytes so far, seconds)` is called every
    `interval` seconds while the stream runs. `early`: leaf stages started already (EarlyStages),
    taken where a stage of the same argv ends a chain. `source`: the first stage's process
    started already (host/gated_send.py): (process, stderr file); its stdout is the stream. On any
    exception (KeyboardInterrupt, SIGTERM) every stage still running is stopped."""
    import subprocess  # here, not at the top: runs with nothing to send never need it (start-up time)

    started = _Started()
    begun = time.monotonic()
    done = threading.Event()
    ticker = None
    try:
        _start(runner, subprocess, root, subprocess.DEVNULL, started, early, source)
        if early is not None:
            early.give_up()  # one this stream did not take (its command line changed) ends now
        meter = started.counter("meter")
        if on_progress is not None and meter is not None:
            ticker = threading.Thread(target=_tick, args=(done, meter[1], begun, on_progress, interval))
            ticker.daemon = True
            ticker.start()
        wire = started.counter("wire")
        for counted in (meter, wire):
            if counted is not None and counted[0] is not None:
                _wait_keep_zombie(counted[0])
        for copier in started.copiers:
            copier.join()
        bytes_sent = meter[1]() if meter is not None else None
        wire_bytes = wire[1]() if wire is not None else None
        codes = dict((id(stage), proc.wait()) for stage, proc in zip(started.stages, started.procs))
    except BaseException:
        _stop(started.procs)
        raise
    finally:
        done.set()
        seconds = time.monotonic() - begun
        errors = {}
        for stage, log in zip(started.stages, started.logs):
            if log is not None:
                errors[id(stage)] = _read_back(log)
        outputs = {key: _read_back(out) for key, out in started.answers.items()}
    failures, compressed, said, answers = {}, {}, {}, {}
    for leaf, path in root.leaves():
        if any(stage.wire for stage in path):  # None: compressed, but no process here saw its bytes
            compressed[leaf] = wire_bytes
        said[leaf] = "".join(errors.get(id(s), "") for s in path)
        if id(path[-1]) in outputs:
            answers[leaf] = outputs[id(path[-1])]
        path = path + [started.tees[id(n)] for n in root.walk() if id(n) in started.tees and _on_path(n, leaf)]
        failed = [(s, codes[id(s)], errors.get(id(s), "")) for s in path if codes.get(id(s), 0) != 0]
        if failed:
            failures[leaf] = _describe_failure(failed)
    return StreamResult(failures, bytes_sent, compressed, seconds, said, answers,
                        errors.get(id(root.stages[0]), "") if root.stages else "")


def _read_back(log) -> str:
    """What a stage wrote to its in-memory file, which is closed."""
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    log.close()
    return text


def run_pipeline(runner: CommandRunner, stages: list[Stage]) -> StreamResult:
    """A plain chain (a restore's send | receive): raises TransferError naming the failing
    stage(s) with their stderr."""
    result = run_stream(runner, Node(stages, leaf="the receiver"))
    if result.failures:
        raise TransferError(result.failures["the receiver"])
    return result


def _on_path(node, leaf):
    return any(found == leaf for found, _path in node.leaves())


def _start(runner, subprocess, node, stdin, started, early=None, source=None, upstream=None):
    """Start a node's stages, then its children; a node with several children gets a tee. A
    chain's last stage started early (EarlyStages) is taken: the stage before it writes to it.
    `source`: the process of the root's first stage, started already (run_stream); `upstream`:
    the stage whose output `stdin` is."""
    last = len(node.stages) - 1
    for index, stage in enumerate(node.stages):
        adopted = source if index == 0 else None
        before = node.stages[index - 1] if index else upstream
        end = index == last and not node.children
        stdout = subprocess.DEVNULL if end else subprocess.PIPE
        if end and stage.answers:
            stdout = started.answers[id(stage)] = stderr_log()
        taken = None
        if early is not None and index == last - 1 and not node.children:
            taken = early.take(node.stages[last])
        if taken is None:
            if adopted:
                stdin = _adopt(stage, adopted, started)
            else:
                stdin = _popen(runner, subprocess, stage, stdin, stdout, started, upstream=before)
            continue
        proc, write, log, answer = taken
        try:
            if adopted:
                _adopt(stage, adopted, started, into=write)
            else:
                _popen(runner, subprocess, stage, stdin, write, started, upstream=before)
        finally:
            os.close(write)  # only the writer may hold it: the reader sees the stream's end
            started.add(node.stages[last], proc, log)
            started.readers[id(stage)] = (node.stages[last], proc.pid)
            if answer is not None:
                started.answers[id(node.stages[last])] = answer
        break
    if len(node.children) == 1:
        _start(runner, subprocess, node.children[0], stdin, started, early, upstream=node.stages[-1])
    elif node.children:
        # tee -p: an output whose reader has gone (a failed destination) is dropped, the others go on.
        pipes = [os.pipe() for _child in node.children[1:]]
        tee = Stage("tee", ["tee", "-p"] + ["/dev/fd/%d" % w for _r, w in pipes])
        started.tees[id(node)] = tee
        try:
            first = _popen(runner, subprocess, tee, stdin, subprocess.PIPE, started,
                           pass_fds=tuple(w for _r, w in pipes), upstream=node.stages[-1])
        finally:
            for _r, w in pipes:
                os.close(w)
        reads = [first] + [os.fdopen(r, "rb") for r, _w in pipes]
        for child, read in zip(node.children, reads):
            _start(runner, subprocess, child, read, started, early, upstream=tee)


def _adopt(stage, source, started, into=None):
    """The first stage's process started already (`source`: process, stderr file): its stdout,
    or with `into` (an early stage's pipe) None, a thread then copying the stream there (a
    running process's stdout cannot be given another reader)."""
    proc, log = source
    started.add(stage, proc, log)
    if into is None:
        return proc.stdout
    started.copied[id(stage)] = copied = [0]
    copier = threading.Thread(target=_copy, args=(proc.stdout, os.dup(into), copied))
    copier.daemon = True
    copier.start()
    started.copiers.append(copier)
    return None


def _copy(read_file, write_fd, copied):
    """Everything from `read_file` into `write_fd` until its end, counted in `copied[0]`; a write
    that fails (the reader has gone) closes both, so that the writer before sees its reader gone too."""
    source = read_file.fileno()
    try:
        while True:
            data = os.read(source, 1 << 20)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
            copied[0] += len(data)
    except OSError:
        pass
    finally:
        os.close(write_fd)
        read_file.close()


def _popen(runner, subprocess, stage, stdin, stdout, started, pass_fds=(), upstream=None):
    log = stderr_log() if stage.capture_stderr else None
    try:
        kwargs = {"pass_fds": pass_fds} if pass_fds else {}
        proc = runner.popen(stage.argv, stdin=stdin, stdout=stdout,
                            stderr=log if log is not None else None, **kwargs)
    except OSError as err:
        if log is not None:
            log.close()
        raise TransferError("cannot start %s (%s): %s" % (stage.name, stage.argv[0], err.strerror))
    finally:
        if stdin is not subprocess.DEVNULL:
            stdin.close()  # only this stage may hold the read end
    started.add(stage, proc, log)
    if upstream is not None:
        started.readers[id(upstream)] = (stage, proc.pid)
    return proc.stdout


def _tick(done, count, begun, on_progress, interval):
    while not done.wait(interval):
        sent = count()
        if sent is not None and not done.is_set():
            try:
                on_progress(sent, time.monotonic() - begun)
            except Exception:  # pylint: disable=broad-except
                pass  # a progress line is never worth a failed transfer


def _describe_failure(failed):
    parts = []
    for stage, code, err in failed:
        status = "killed by signal %d" % -code if code < 0 else "exit status %d" % code
        if code == 255 and os.path.basename(stage.argv[0]) == "ssh":
            status += ": the ssh connection failed or was lost"
        lines = [line for line in err.strip().splitlines() if line.strip()]
        detail = ": " + " / ".join(lines[-3:]) if lines else ""
        parts.append("%s failed (%s)%s" % (stage.name, status, detail))
    return "; ".join(parts)


def _stop(procs):
    import subprocess

    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
