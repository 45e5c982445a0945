# Copyright: btrfs.backup maintainers
# MIT License (see LICENSES/MIT.txt or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""The program that runs an archive store's command (borg, restic) with its secrets in the environment,
and passes a send stream on only if it arrived whole.

It runs as its own process, from its source text (`python3 -c`), so it imports nothing of the
engine. Its modes:
- `exec [--env-file F] [--set K=V]... -- ARGV`: ARGV with the environment built from the file's
  KEY=VALUE lines and the --set items (values never reach a command line or a log);
- `check`: copy standard input to standard output; exit 1 unless the stream ended with a btrfs
  send stream's end command (borg's --content-from-command then stores no archive);
- `guard [options] -- ARGV`: ARGV (the store) reads the stream through this program, which stops
  it with SIGINT (then SIGKILL) instead of closing its input when the stream was cut, so that the
  store saves nothing (restic has no --stdin-from-command before 0.17); the store also dies with it.
"""

import os
import signal
import subprocess
import sys
import urllib.parse

# The last 10 bytes of a whole btrfs send stream: the end command's header (length 0, command 21,
# its crc32c), which is the same in every stream.
_HEADER_SIZE = 10
_END_COMMAND = 21
_BLOCK = 1 << 20


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
    userinfo = "%s:%s@" % (urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""))
    return dict(environment, RESTIC_REPOSITORY="%s://%s%s" % (scheme, userinfo, rest))


def stream_is_whole(tail):
    """Whether the last bytes of a stream are a btrfs send stream's end command."""
    if len(tail) < _HEADER_SIZE:
        return False
    header = tail[-_HEADER_SIZE:]
    return int.from_bytes(header[0:4], "little") == 0 and int.from_bytes(header[4:6], "little") == _END_COMMAND


def copy_stream(source_fd, target_fd):
    """Copy everything from one descriptor to the other; the last bytes copied (to check the end)."""
    tail = b""
    while True:
        block = os.read(source_fd, _BLOCK)
        if not block:
            return tail
        view = memoryview(block)
        while view:
            written = os.write(target_fd, view)
            view = view[written:]
        tail = (tail + block)[-_HEADER_SIZE:]


def _die_with_parent():
    """In the store's process: it gets SIGKILL when this program dies (a cut before it could decide)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def guard(argv, environment):
    """Run the store on the stream; its exit status, or 1 with the store stopped when the stream was cut."""
    store = subprocess.Popen(argv, stdin=subprocess.PIPE, env=environment,  # pylint: disable=ansible-bad-function
                             preexec_fn=_die_with_parent)
    try:
        tail = copy_stream(0, store.stdin.fileno())
    except OSError as err:  # the store stopped reading: its own status says why
        store.stdin.close()
        return store.wait() or ("archive store stopped reading the stream: %s" % err)
    if not stream_is_whole(tail):
        store.send_signal(signal.SIGINT)
        try:
            store.wait(timeout=20)
        except subprocess.TimeoutExpired:
            store.kill()
            store.wait()
        store.stdin.close()
        return "the send stream was cut: the archive store was stopped and saved nothing"
    store.stdin.close()
    return store.wait()


def main(args):
    mode, args = args[0], args[1:]
    if mode == "check":
        tail = copy_stream(0, 1)
        return 0 if stream_is_whole(tail) else "the send stream was cut: no archive is stored"
    env_file, settings = None, []
    while args and args[0] != "--":
        option, value, args = args[0], args[1], args[2:]
        if option == "--env-file":
            env_file = value
        elif option == "--set":
            settings.append(value)
        else:
            return "unknown option %s" % option
    argv = args[1:]
    try:
        environment = build_environment(env_file, settings)
    except OSError as err:
        return "archive_env_file %s: %s" % (env_file, err.strerror)
    if mode == "guard":
        return guard(argv, environment)
    try:
        os.execvpe(argv[0], argv, environment)
    except OSError as err:
        return "%s: %s" % (argv[0], err.strerror)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
