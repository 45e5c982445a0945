"""One run at a time per job (rule 5): --wait SECONDS waits for the running run instead of failing, and
`status` answers while a run holds the job's lock. Real runs of the CLI, slowed down with --limit-rate."""

from __future__ import annotations

import json
import subprocess
import time

from ansible_helpers import Ansible, install_collection
from cli_helpers import CLI, job_state_folder, sent

SLOW = ["--limit-rate", "400K"]  # the source's 1 MiB file takes a few seconds to send
SLOWER = ["--limit-rate", "128K"]  # about 8 s: time for three more commands while it runs


def start(*args):
    return subprocess.Popen([str(CLI), "--json"] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, json.loads(out) if out.strip() else None, err


def lock_held_by(proc, timeout=30):
    """Wait until `proc` holds the job's lock (its pid is in the lock file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (job_state_folder() / "lock").read_text().strip() == str(proc.pid):
                return
        except (AssertionError, OSError):
            pass
        assert proc.poll() is None, "the run ended before it was seen holding the lock"
        time.sleep(0.05)
    raise AssertionError("the run never held the job's lock")


def test_two_runs_started_together_with_wait_both_succeed_one_after_the_other(src, dst):
    runs = [start("--wait", "60", *SLOW, src, dst) for _ in range(2)]
    (code1, result1, err1), (code2, result2, err2) = [finish(run) for run in runs]
    assert (code1, code2) == (0, 0), err1 + err2
    waited = [err for err in (err1, err2) if "waiting for the running run of" in err]
    assert len(waited) == 1 and waited[0].count("waiting for the running run of") == 1, err1 + err2
    first, second = sorted((result1, result2), key=lambda result: result["snapshot"]["name"])
    assert sent(first, dst) == [(first["snapshot"]["name"], "full", None)]
    assert sent(second, dst) == [(second["snapshot"]["name"], "incremental", first["snapshot"]["name"])]


def test_without_wait_the_second_run_fails_at_once_and_status_answers_meanwhile(src, dst, tmp_path):
    running = start(*SLOWER, src, dst)
    try:
        lock_held_by(running)
        started = time.monotonic()
        busy = subprocess.run([str(CLI), "--json", src, dst], capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < 10
        assert busy.returncode == 3, busy.stderr
        assert f"another run of this job is in progress (pid {running.pid} holds" in busy.stderr

        # A run that waits too little fails the same way, saying how long it waited.
        short = subprocess.run([str(CLI), "--json", "--wait", "1", src, dst], capture_output=True, text=True,
                               timeout=60)
        assert short.returncode == 3 and f"(pid {running.pid} holds" in short.stderr
        assert "after waiting 1s for it" in short.stderr

        config_dir = tmp_path / "jobs"
        config_dir.mkdir()
        (config_dir / "data.conf").write_text(f"{src}\n{dst}\n")
        started = time.monotonic()
        status = subprocess.run([str(CLI), "status", "--config-dir", str(config_dir), "--json"],
                                capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < 10 and running.poll() is None  # answered while the run held it
        assert "data" in json.loads(status.stdout)["jobs"][0]["job"], status.stdout
    finally:
        code, result, err = finish(running)
    assert code == 0, err


def test_the_info_module_answers_while_a_run_holds_the_lock(src, dst, tmp_path, tmp_path_factory):
    ansible = Ansible(install_collection(tmp_path_factory.mktemp("collections")), tmp_path)
    running = start("--limit-rate", "64K", src, dst)  # about 16 s
    try:
        lock_held_by(running)
        done = ansible.task("btrfs_backup_info", {"source": str(src), "destinations": [str(dst)]})
        assert running.poll() is None, "the run ended before the module answered"
        assert done.code == 0, done.explain()
        assert done.result["jobs"][0]["source"] == str(src), done.result["jobs"][0]
    finally:
        code, _result, err = finish(running)
    assert code == 0, err
