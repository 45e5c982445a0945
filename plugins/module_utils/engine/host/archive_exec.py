# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The program that runs an archive store's command (borg, restic) with its secrets in the environment,
and passes a send stream on only if it arrived whole.

It runs as its own process, from its source text (`python3 -c`), so it imports nothing of the
engine. Its modes:
- `exec [--env-file F] [--set K=V]... -- ARGV`: ARGV with the environment built from the file's
  KEY=VALUE lines and the --set items (values never reach a command line or a log);
- `check [--verdict FILE]`: copy standard input to standard output; exit 1 unless the stream ended
  with a btrfs send stream's end command (borg's --content-from-command then stores no archive);
- `guard [options] -- ARGV`: ARGV (the store) reads the stream through this program, which stops
  it with SIGINT (then SIGKILL) instead of closing its input when the stream was cut, so that the
  store saves nothing (restic has no --stdin-from-command before 0.17); the store also dies with it.
With `--verdict FILE` (a stream sent while the run still lists the repository) a whole stream is
passed on only once FILE says `go`; `abort` there, or no verdict in time, counts as a cut.

Pipe to pipe the bytes move with splice(2) and never enter this process, all but the last few:
those are read, so that the end command is still checked.
"""

# Only what every mode needs is imported here: this program starts for every store command, and
# its start is part of the stream's time (subprocess, signal, select are imported where used).
import os
import sys
import time

# The last 10 bytes of a whole btrfs send stream: the end command's header (length 0, command 21,
# its crc32c), which is the same in every stream.
_HEADER_SIZE = 10
_END_COMMAND = 21
_BLOCK = 1 << 20
# How long a stream waits for the run's verdict (the run lists the repository meanwhile), how
# often it looks, and how often a flowing stream looks for an abort.
_VERDICT_TIMEOUT = 600.0
_VERDICT_POLL = 0.005
_VERDICT_LOOK = 0.05
_POLL_MS = 50
# The stream's pipes (in and out) are made this large (Linux's default limit for a user), and while
# only the last bytes wait in it the guard sleeps this long: what comes meanwhile moves in one splice.
_PIPE_SIZE = 1 << 20
_SPLICE_WAIT = 0.001


def build_environment(env_file, settings):
    """This process's environment plus the file's KEY=VALUE lines (# comments, blank lines and an
    `export ` prefix allowed; quotes around a value removed) and the KEY=VALUE settings."""
    environment = dict(os.environ, LC_ALL="C")
    if env_file:
        with open(env_file) as handle:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("export "):
                    line = line[len("export "):].lstrip()
                key, sep, value = line.partition("=")
                if not sep or not key.strip().replace("_", "").isalnum():
                    raise SystemExit("archive_env_file %s: line %d is not KEY=VALUE" % (env_file, number))
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                environment[key.strip()] = value
    for item in settings:
        key, _sep, value = item.partition("=")
        environment[key] = value
    return with_rest_credentials(environment)


def with_rest_credentials(environment):
    """The environment with RESTIC_REST_USERNAME/RESTIC_REST_PASSWORD also written into a rest:
    RESTIC_REPOSITORY's URL: restic reads those variables only from 0.16 on, older ones only the URL.
    The URL with the password lives in this environment alone, never on a command line."""
    repository = environment.get("RESTIC_REPOSITORY", "")
    user, password = environment.get("RESTIC_REST_USERNAME"), environment.get("RESTIC_REST_PASSWORD")
    scheme, sep, rest = repository.partition("://")
    if not (repository.startswith("rest:") and sep and user and password) or "@" in rest.split("/", 1)[0]:
        return environment
    import urllib.parse
    userinfo = "%s:%s@" % (urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""))
    return dict(environment, RESTIC_REPOSITORY="%s://%s%s" % (scheme, userinfo, rest))


def stream_is_whole(tail):
    """Whether the last bytes of a stream are a btrfs send stream's end command."""
    if len(tail) < _HEADER_SIZE:
        return False
    header = tail[-_HEADER_SIZE:]
    return int.from_bytes(header[0:4], "little") == 0 and int.from_bytes(header[4:6], "little") == _END_COMMAND


class Verdict:
    """The run's word on a stream sent before it knew the repository's listing: a file that says
    `go` or `abort` (none: no word yet). Without a file the stream needs no word. While the run
    waits to give it, it holds a lock on the file's `.run` sibling: a run that died said abort."""

    def __init__(self, path=None, timeout=_VERDICT_TIMEOUT):
        self.path = path
        self.deadline = None
        self.timeout = timeout
        self.next_look = 0.0

    def said(self):
        """`go`, `abort`, or None (nothing said yet)."""
        if self.path is None:
            return "go"
        try:
            with open(self.path) as handle:
                word = handle.read().strip()
        except FileNotFoundError:
            return None
        return "go" if word == "go" else "abort"

    def aborted_meanwhile(self):
        """Whether the run has said abort while the stream still flows (looked at a few times a second)."""
        if self.path is None:
            return False
        now = time.monotonic()
        if now < self.next_look:
            return False
        self.next_look = now + _VERDICT_LOOK
        return self.said() == "abort"

    def wait(self):
        """Whether the run says go, waiting for its word (up to the timeout, or until the run is
        gone: then no)."""
        deadline = time.monotonic() + self.timeout
        while True:
            word = self.said()
            if word is not None:
                return word == "go"
            if time.monotonic() > deadline or not self.run_alive():
                return self.said() == "go"  # its last word may have come meanwhile
            time.sleep(_VERDICT_POLL)

    def run_alive(self):
        """Whether the run still holds its lock (it may still give its word)."""
        import fcntl
        try:
            fd = os.open(self.path + ".run", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


class Aborted(Exception):
    """The run said abort while the stream flowed."""


def copy_stream(source_fd, target_fd, verdict=None):
    """Copy everything from one descriptor to the other; the last bytes copied (to check the end).
    Aborted when `verdict` says abort meanwhile."""
    verdict = verdict or Verdict()
    if _splices(source_fd, target_fd):
        return _splice_stream(source_fd, target_fd, verdict)
    tail = b""
    buffer = bytearray(_BLOCK)
    whole = memoryview(buffer)
    with os.fdopen(source_fd, "rb", buffering=0, closefd=False) as source:
        while True:
            if verdict.aborted_meanwhile():
                raise Aborted()
            count = source.readinto(buffer)
            if not count:
                return tail
            _write_all(target_fd, whole[:count])
            tail = (tail + bytes(whole[max(0, count - _HEADER_SIZE):count]))[-_HEADER_SIZE:]


def _write_all(fd, view):
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _splices(source_fd, target_fd):
    """Whether both ends are pipes and this Python has os.splice (3.10 on)."""
    if not hasattr(os, "splice"):
        return False
    import stat
    try:
        return all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (source_fd, target_fd))
    except OSError:
        return False


def _available(fd):
    """How many bytes wait in a pipe (FIONREAD)."""
    import fcntl
    import termios
    count = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return int.from_bytes(count, sys.byteorder)


def _splice_stream(source_fd, target_fd, verdict):
    """copy_stream pipe to pipe: what waits in the pipe is spliced but its last _HEADER_SIZE bytes,
    which stay until more follows them or the stream ends; the end is read, never spliced. While
    only those wait, this sleeps a moment rather than passing them on in a write of their own
    (which would cost the reader a read of its own): the pipe, made larger, holds what comes meanwhile."""
    import fcntl
    import select
    for fd in (source_fd, target_fd):
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
        except OSError:
            pass  # a smaller pipe only means more rounds
    tail = b""
    poller = select.poll()
    poller.register(source_fd, select.POLLIN)
    while True:
        if verdict.aborted_meanwhile():
            raise Aborted()
        events = poller.poll(_POLL_MS)
        if not events:
            continue
        available = _available(source_fd)
        if available > _HEADER_SIZE:
            os.splice(source_fd, target_fd, available - _HEADER_SIZE)
            continue
        if available and not any(event & select.POLLHUP for _fd, event in events):
            time.sleep(_SPLICE_WAIT)  # only the last bytes wait, and the writer is still there
            continue
        block = os.read(source_fd, _BLOCK)
        if not block:
            return tail
        _write_all(target_fd, memoryview(block))
        tail = (tail + block)[-_HEADER_SIZE:]


def _die_with_parent():
    """In the store's process: it gets SIGKILL when this program dies (a cut before it could decide)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_CUT = "the send stream was cut: the archive store was stopped and saved nothing"
_ABORTED = "the run stopped this stream (the repository's listing asked for another one): nothing was saved"


def guard(argv, environment, verdict=None):
    """Run the store on the stream; its exit status, or 1 with the store stopped when the stream was
    cut (or the run said abort)."""
    import subprocess
    verdict = verdict or Verdict()
    store = subprocess.Popen(argv, stdin=subprocess.PIPE, env=environment,  # pylint: disable=ansible-bad-function
                             preexec_fn=_die_with_parent)
    try:
        tail = copy_stream(0, store.stdin.fileno(), verdict)
    except Aborted:
        return _stop(store, _ABORTED)
    except OSError as err:  # the store stopped reading: its own status says why
        store.stdin.close()
        return store.wait() or ("archive store stopped reading the stream: %s" % err)
    if not stream_is_whole(tail):
        return _stop(store, _CUT)
    if not verdict.wait():
        return _stop(store, _ABORTED)
    store.stdin.close()
    return store.wait()


def _stop(store, why):
    """Stop the store before its input ends (it saves nothing); `why`."""
    import signal
    import subprocess
    store.send_signal(signal.SIGINT)
    try:
        store.wait(timeout=20)
    except subprocess.TimeoutExpired:
        store.kill()
        store.wait()
    store.stdin.close()
    return why


def check(verdict):
    """Copy the stream to standard output; 0 when it was whole and the run says go."""
    try:
        tail = copy_stream(0, 1, verdict)
    except Aborted:
        return _ABORTED
    if not stream_is_whole(tail):
        return "the send stream was cut: no archive is stored"
    return 0 if verdict.wait() else _ABORTED


def main(args):
    mode, args = args[0], args[1:]
    env_file, settings, verdict = None, [], Verdict()
    while args and args[0] != "--":
        option, value, args = args[0], args[1], args[2:]
        if option == "--env-file":
            env_file = value
        elif option == "--set":
            settings.append(value)
        elif option == "--verdict":
            verdict = Verdict(value)
        else:
            return "unknown option %s" % option
    if mode == "check":
        return check(verdict)
    argv = args[1:]
    try:
        environment = build_environment(env_file, settings)
    except OSError as err:
        return "archive_env_file %s: %s" % (env_file, err.strerror)
    if mode == "guard":
        return guard(argv, environment, verdict)
    try:
        os.execvpe(argv[0], argv, environment)
    except OSError as err:
        return "%s: %s" % (argv[0], err.strerror)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
