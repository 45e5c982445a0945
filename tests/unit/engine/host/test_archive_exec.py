"""engine.host.archive_exec: a stream passes only whole (the btrfs send end command last), a cut
one stops the store before it can save; the environment comes from the file, never an argv."""

import os
import subprocess
import sys

import pytest

from engine.host import archive_exec

PROGRAM = archive_exec.__file__
# A btrfs send stream's end: the end command's header (length 0, command 21, its crc32c).
END = (0).to_bytes(4, "little") + (21).to_bytes(2, "little") + bytes.fromhex("a3a1b0d7")
WHOLE = b"btrfs-stream\0" + (1).to_bytes(4, "little") + os.urandom(3000) + END


@pytest.mark.parametrize("tail, whole", [
    (WHOLE, True),
    (WHOLE[:-1], False),
    (WHOLE[:-4000 + 1000], False),
    (b"", False),
    (END, True),
    ((1).to_bytes(4, "little") + (21).to_bytes(2, "little") + b"\0\0\0\0", False),  # length is not 0
    ((0).to_bytes(4, "little") + (20).to_bytes(2, "little") + b"\0\0\0\0", False),  # not the end command
])
def test_a_stream_is_whole_only_with_its_end_command_last(tail, whole):
    assert archive_exec.stream_is_whole(tail) is whole


def _run(args, data):
    return subprocess.run([sys.executable, PROGRAM] + args, input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)


def test_check_passes_a_whole_stream_on_unchanged():
    run = _run(["check"], WHOLE)
    assert run.returncode == 0 and run.stdout == WHOLE


def test_check_fails_a_cut_stream():
    run = _run(["check"], WHOLE[:2000])
    assert run.returncode == 1 and b"the send stream was cut" in run.stderr


def test_check_copies_from_a_file_too(tmp_path):
    # Not a pipe: copied through a buffer instead of spliced, the same bytes and the same check.
    stream = tmp_path / "stream"
    stream.write_bytes(WHOLE * 300)
    with open(stream, "rb") as handle:
        run = subprocess.run([sys.executable, PROGRAM, "check"], stdin=handle, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, check=False)
    assert run.returncode == 0 and run.stdout == WHOLE * 300


def test_check_passes_a_large_stream_through_pipes_unchanged():
    data = os.urandom(5 << 20) + WHOLE
    run = _run(["check"], data)
    assert run.returncode == 0 and run.stdout == data


@pytest.mark.parametrize("word, passes", [("go", True), ("abort", False), ("anything else", False)])
def test_check_with_a_verdict_passes_a_whole_stream_only_on_go(tmp_path, word, passes):
    verdict = tmp_path / "verdict"
    verdict.write_text(word + "\n")
    run = _run(["check", "--verdict", str(verdict)], WHOLE)
    assert (run.returncode == 0) is passes
    if not passes:
        assert b"nothing was saved" in run.stderr


def _check_waiting_for_a_word(verdict):
    """A check that has read a whole stream and waits for the run's word, while the run holds the
    lock on the verdict's .run file (as a run does while it may still speak); (process, lock fd)."""
    import fcntl
    run_lock = os.open(str(verdict) + ".run", os.O_WRONLY | os.O_CREAT)
    fcntl.flock(run_lock, fcntl.LOCK_EX)
    proc = subprocess.Popen([sys.executable, PROGRAM, "check", "--verdict", str(verdict)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(WHOLE)
    proc.stdin.close()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.3)  # a whole stream, but no word from the run yet
    return proc, run_lock


def test_check_waits_for_the_verdict(tmp_path):
    verdict = tmp_path / "verdict"
    proc, _run_lock = _check_waiting_for_a_word(verdict)
    verdict.write_text("go")
    assert proc.wait(timeout=10) == 0 and proc.stdout.read() == WHOLE


def test_check_stops_waiting_when_the_run_is_gone(tmp_path):
    # The run holds a lock on the verdict's .run file while it may still speak; a killed run does not.
    proc, run_lock = _check_waiting_for_a_word(tmp_path / "verdict")
    os.close(run_lock)  # the run died without a word
    assert proc.wait(timeout=10) == 1 and b"nothing was saved" in proc.stderr.read()


def test_guard_stops_the_store_when_the_run_says_abort(tmp_path):
    out, verdict = tmp_path / "saved", tmp_path / "verdict"
    verdict.write_text("abort")
    store = 'trap "exit 130" INT; cat > /dev/null; touch "$0"'
    run = _run(["guard", "--verdict", str(verdict), "--", "sh", "-c", store, str(out)], WHOLE)
    assert run.returncode == 1 and b"nothing was saved" in run.stderr
    assert not out.exists()


def test_guard_gives_the_store_a_whole_stream_and_its_exit_status(tmp_path):
    out = tmp_path / "stored"
    run = _run(["guard", "--", "sh", "-c", 'cat > "$0"; exit 3', str(out)], WHOLE)
    assert run.returncode == 3 and out.read_bytes() == WHOLE


def test_guard_stops_the_store_before_a_cut_stream_ends(tmp_path):
    # The store saves only when its input ends; a cut one never ends for it: it is interrupted.
    out = tmp_path / "saved"
    store = 'trap "exit 130" INT; cat > /dev/null; touch "$0"'
    run = _run(["guard", "--", "sh", "-c", store, str(out)], WHOLE[:2000])
    assert run.returncode == 1 and b"saved nothing" in run.stderr
    assert not out.exists()


def test_the_environment_comes_from_the_file_and_the_settings(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# credentials\nAWS_SECRET_ACCESS_KEY=s3cr3t\nexport RESTIC_X='quoted value'\n\n")
    run = _run(["exec", "--env-file", str(env_file), "--set", "RESTIC_PASSWORD_FILE=/k", "--",
                "sh", "-c", 'printf "%s|%s|%s" "$AWS_SECRET_ACCESS_KEY" "$RESTIC_X" "$RESTIC_PASSWORD_FILE"'], b"")
    assert run.returncode == 0 and run.stdout == b"s3cr3t|quoted value|/k"


@pytest.mark.parametrize("content, problem", [
    ("not a setting\n", "line 1 is not KEY=VALUE"),
    ("A-B=1\n", "line 1 is not KEY=VALUE"),
])
def test_a_bad_environment_file_is_named_without_its_values(tmp_path, content, problem):
    env_file = tmp_path / "env"
    env_file.write_text(content)
    run = _run(["exec", "--env-file", str(env_file), "--", "true"], b"")
    assert run.returncode == 1 and problem in run.stderr.decode()


def test_a_missing_environment_file_is_a_clear_error(tmp_path):
    run = _run(["exec", "--env-file", str(tmp_path / "nope"), "--", "true"], b"")
    assert run.returncode == 1 and "archive_env_file" in run.stderr.decode()


@pytest.mark.parametrize("environment, repository", [
    ({"RESTIC_REPOSITORY": "rest:http://127.0.0.1:8000/r", "RESTIC_REST_USERNAME": "u",
      "RESTIC_REST_PASSWORD": "p w/@"}, "rest:http://u:p%20w%2F%40@127.0.0.1:8000/r"),
    ({"RESTIC_REPOSITORY": "rest:http://127.0.0.1:8000/r", "RESTIC_REST_USERNAME": "u"},
     "rest:http://127.0.0.1:8000/r"),  # no password: left to restic
    ({"RESTIC_REPOSITORY": "s3:http://127.0.0.1:9000/b", "RESTIC_REST_USERNAME": "u", "RESTIC_REST_PASSWORD": "p"},
     "s3:http://127.0.0.1:9000/b"),  # not a REST repository
    ({"RESTIC_REPOSITORY": "rest:http://a:b@127.0.0.1:8000/r", "RESTIC_REST_USERNAME": "u",
      "RESTIC_REST_PASSWORD": "p"}, "rest:http://a:b@127.0.0.1:8000/r"),  # the URL's own are kept
])
def test_rest_credentials_reach_restic_through_the_environment_only(environment, repository):
    assert archive_exec.with_rest_credentials(environment)["RESTIC_REPOSITORY"] == repository
