# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A remote source's send that waits at a gate for the run's verdict, in one remote command:

    { [mkdir &&] WRITE LOCKS && SNAPSHOT && its facts; } >&2 && btrfs send --no-data [-p P] S
        && read -r verdict && [ "$verdict" = go ] && btrfs send [-p P] S [| zstd]

Its `--no-data` stream comes first on stdout: it estimates the real stream's size, which decides
whether the transfer is staged (resumable). The run then says `go`, and the real stream follows on
the same stdout as the first stage of the stream (pipeline.run_stream takes the process), or `stop`,
and the command ends there (a staged transfer sends the snapshot in a command of its own). So a
relay's source is asked for its snapshot, the size and the send in one command, not two.

The remote shell reads the verdict only after the `--no-data` send has exited, so nothing of the
real stream can come before it: what arrives up to the end command is the `--no-data` stream, whole.
The verdict is one of two fixed words on the command's stdin; nothing the run says there is run.
"""

from __future__ import annotations

import os
import time

from .pipeline import stderr_log

GATE = 'read -r verdict && [ "$verdict" = go ]'
GO, STOP = b"go\n", b"stop\n"


def gated_line(first: str, no_data_line: str) -> str:
    """The part of the remote line before the real send: `first` (the lock file written, the
    snapshot taken, its facts on stderr: snapshot_in_send.snapshot_line), the `--no-data` send,
    then the gate."""
    return f"{first} && {no_data_line} && {GATE}"


class GatedSend:
    """The gated command (`argv`: ssh and the whole remote line) once started: its stdout read up
    to the `--no-data` stream's end, its stderr kept in an in-memory file."""

    def __init__(self, runner, argv: list[str]):
        import subprocess

        self.argv = list(argv)
        self.log = stderr_log()
        try:
            self.proc = runner.popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        except OSError:
            self.log.close()
            raise
        self.waiting = False  # at the gate: the `--no-data` stream read whole, the command alive

    def read_no_data(self, sizer, timeout: float = 300.0):
        """Feed the `--no-data` stream to `sizer` (stream_size.StreamSizer) up to its end command;
        returns it finished, or None when the command ended first (a lock file, snapshot or send
        that failed: said on stderr). A stream that is not one raises ValueError, the time limit
        TimeoutError."""
        from .stream_size import read_stream

        read_stream(self.proc, sizer, time.monotonic() + timeout, until_end_command=True)
        if not sizer.ended:
            return None
        sizer.finish()
        self.waiting = self.proc.poll() is None
        return sizer

    def go(self):
        """Let the real stream come: (process, stderr file) for the stream to take as its first
        stage (pipeline.run_stream's `source`: its stdout is the stream)."""
        self._say(GO)
        self.waiting = False
        return self.proc, self.log

    def stop(self, timeout: float = 30.0) -> str:
        """End the command at its gate (or wherever it is); returns what it said on stderr."""
        import subprocess

        self._say(STOP)
        self.waiting = False
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.said()

    def said(self) -> str:
        """What the command wrote to stderr so far (the snapshot's facts come first)."""
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        self.log.seek(0, os.SEEK_END)
        return text

    def close(self) -> None:
        """Stop the command if it still runs (an error, an interruption) and free its file."""
        if self.proc.poll() is None:
            self.stop(timeout=10.0)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self.log.close()

    def _say(self, verdict: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(verdict)
            stdin.flush()
        except OSError:  # the command has ended: it reads no verdict
            pass
        try:
            stdin.close()
        except OSError:
            pass
