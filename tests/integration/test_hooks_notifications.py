"""Hooks and notifications for real: commands around a backup on loop btrfs (one that fails, one
that hangs with a child, one that prints a lot) and pings to an HTTP server on loopback that
records every request, hangs once, or is not there at all; the secret in the URLs never shows."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import job_state_folder, ok, run_cli, snapshot_names
from support.btrfs_loop import run

FS_SIZE = "256M"
SECRET = "6d1f0c2a-secret-uuid"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records (method, path, body); the first request to a path with /hang-once/ gets no answer
    for 10 s (longer than a try's timeout)."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        server = self.server
        with server.lock:
            server.requests.append((self.command, self.path, body))
            first = not server.seen
            server.seen.add(self.path)
        if "/hang-once/" in self.path and first:
            server.stop.wait(10)
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def pings():
    """An HTTP server on 127.0.0.1 that records what it is sent: (server, base URL)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    server.requests, server.seen, server.lock, server.stop = [], set(), threading.Lock(), threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:%d/ping/%s" % (port, SECRET)


def assert_secret_nowhere(done, metrics_dir=None):
    """The URLs' secret part is in no output, result, run record or metrics."""
    places = {"stderr": done.stderr, "result": json.dumps(done.result)}
    for path in job_state_folder().iterdir():
        if path.is_file():
            places[str(path)] = path.read_text(errors="replace")
    for path in (metrics_dir.iterdir() if metrics_dir else ()):
        places[str(path)] = path.read_text()
    for where, text in places.items():
        assert SECRET not in text, where


def last_run(record_folder) -> dict:
    return json.loads((record_folder / "last-run.json").read_text())["last_run"]


def test_hooks_run_around_the_snapshot_and_the_pings_report_success(src, dst, pings, tmp_path):
    server, base = pings
    env_file, metrics = tmp_path / "after.env", tmp_path / "metrics"
    metrics.mkdir()
    done = ok(src, dst / "backups", "--job-name", "home", "--metrics-dir", metrics,
              # written into the source before the snapshot: the snapshot must hold it
              "--before-snapshot", "sh -c 'echo \"$BTRFS_BACKUP_JOB quiesced\" > \"$BTRFS_BACKUP_SOURCE/quiesced\"'",
              "--after-run", "sh -c 'env | grep ^BTRFS_BACKUP_ | sort > %s'" % env_file,
              "--ping-url", "%s/ping/%s" % (base, SECRET), "--ntfy-url", "%s/ntfy/%s" % (base, SECRET),
              "--ntfy-on-success")
    name = done.result["snapshot"]["name"]
    assert (src / "snapshot" / name / "quiesced").read_text() == "home quiesced\n"
    assert (dst / "backups" / name / "quiesced").read_text() == "home quiesced\n"
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert env["BTRFS_BACKUP_STATUS"] == "success" and env["BTRFS_BACKUP_JOB"] == "home"
    assert env["BTRFS_BACKUP_SNAPSHOT"] == str(src / "snapshot" / name)
    assert env["BTRFS_BACKUP_FAILED_DESTINATIONS"] == ""
    assert [(m, p) for m, p, _body in server.requests] == [
        ("GET", "/ping/%s/start" % SECRET), ("GET", "/ping/%s" % SECRET), ("POST", "/ntfy/%s" % SECRET)]
    assert server.requests[2][2] == "home: backup done, snapshot %s" % name
    assert "before_snapshot [stdout]" not in done.stderr and "before_snapshot: running sh -c" in done.stderr
    assert_secret_nowhere(done, metrics)


def test_a_failing_before_hook_aborts_the_run_and_the_failure_is_reported(src, dst, pings, tmp_path):
    server, base = pings
    env_file = tmp_path / "after.env"
    done = run_cli(src, dst / "backups", "--job-name", "home",
                   "--before-snapshot", "sh -c 'echo the database refused >&2; exit 7'",
                   "--after-run", "sh -c 'env | grep ^BTRFS_BACKUP_ > %s'" % env_file,
                   "--ping-url", "%s/ping/%s" % (base, SECRET), "--ntfy-url", "%s/ntfy/%s" % (base, SECRET))
    assert done.code == 1, done.explain()
    [error] = done.result["errors"]
    assert "before_snapshot hook sh -c 'echo the database refused >&2; exit 7' failed with exit status 7" in error
    assert "the database refused" in error and "no snapshot was taken" in error
    assert done.result["snapshot"] is None and snapshot_names(src / "snapshot") == []
    assert not (dst / "backups").exists() or not os.listdir(dst / "backups")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert env["BTRFS_BACKUP_STATUS"] == "failed" and env["BTRFS_BACKUP_SNAPSHOT"] == ""
    assert "exit status 7" in env["BTRFS_BACKUP_ERRORS"]
    record = last_run(job_state_folder())
    assert record["ok"] is False
    methods = [(m, p) for m, p, _body in server.requests]
    assert methods == [("GET", "/ping/%s/start" % SECRET), ("POST", "/ping/%s/fail" % SECRET),
                       ("POST", "/ntfy/%s" % SECRET)]
    fail_body = server.requests[1][2]
    assert "exit status 7" in fail_body and "the database refused" in fail_body
    assert "backup failed" in server.requests[2][2]
    assert_secret_nowhere(done)


def test_a_failing_before_hook_set_to_warn_lets_the_backup_go_on(src, dst):
    done = ok(src, dst / "backups", "--before-snapshot", "false", "--before-snapshot-failure", "warn")
    assert any("before_snapshot hook false failed with exit status 1" in w for w in done.result["warnings"])
    assert snapshot_names(dst / "backups") == [done.result["snapshot"]["name"]]


def test_a_hanging_hook_is_killed_with_its_child_and_a_chatty_one_is_logged_in_part(src, dst, tmp_path):
    child_pid = tmp_path / "child.pid"
    started = time.monotonic()
    done = run_cli(src, dst / "backups", "--hook-timeout", "1s",
                   "--before-snapshot", "sh -c 'sleep 120 & echo $! > %s; sleep 120'" % child_pid,
                   "--after-run", "seq 1 200000")
    assert time.monotonic() - started < 30
    assert done.code == 1, done.explain()
    assert "ran longer than its timeout (1s) and was killed with its process group" in done.result["errors"][0]
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    survived = os.path.exists("/proc/%d" % pid)
    if survived:
        os.kill(pid, signal.SIGKILL)  # the test's own child: not left behind when the check fails
    assert not survived, "the hook's child outlived its timeout"
    assert snapshot_names(src / "snapshot") == []
    logged = [line for line in done.stderr.splitlines() if "after_run [stdout]" in line]
    assert len(logged) < 200 and logged[-1].endswith(": 200000")


def test_a_ping_server_that_hangs_or_refuses_delays_the_run_briefly_and_only_warns(src, dst, pings):
    server, base = pings
    refused = refused_url()
    started = time.monotonic()
    done = ok(src, dst / "backups", "--ping-url", "%s/hang-once/%s" % (base, SECRET),
              "--ntfy-url", refused, "--ntfy-on-success")
    took = time.monotonic() - started
    # The start ping's first try hangs (5 s), its second is answered; the ntfy post is tried
    # three times (1 s and 2 s apart) and given up.
    assert took < 20, took
    [warning] = done.result["warnings"]
    assert warning.startswith("notification to %s/… was not delivered after 3 tries:"
                              % refused.rsplit("/", 2)[0]), warning
    paths = [p for _m, p, _body in server.requests]
    assert paths == ["/hang-once/%s/start" % SECRET] * 2 + ["/hang-once/%s" % SECRET]
    assert_secret_nowhere(done)


# -- the guide's recipes (docs/docsite/rst/hooks.rst), for real ---------------------------------

PG_BIN = "/usr/lib/postgresql/15/bin"


def _as_postgres(*argv, check=True):
    return run(["runuser", "-u", "postgres", "--", *argv], check=check, timeout=60)


@contextlib.contextmanager
def _postgres(data, sockets):
    """A PostgreSQL server on `data`, reachable only by its unix socket in `sockets`."""
    started = _as_postgres(f"{PG_BIN}/pg_ctl", "-D", data, "-w", "-l", sockets / "log", "-o",
                           f"-k {sockets} -p 5499 -c listen_addresses=''", "start", check=False)
    assert started.returncode == 0, (sockets / "log").read_text()
    try:
        yield ["psql", "-h", str(sockets), "-p", "5499", "-X", "-q", "-At", "-d", "postgres"]
    finally:
        _as_postgres(f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)


@pytest.fixture
def pg_sockets():
    """A folder for the server's socket and log that the postgres user can reach (not under
    pytest's own, which only root may enter)."""
    folder = Path(tempfile.mkdtemp(prefix="btrfs-backup-pg-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not os.path.exists(f"{PG_BIN}/initdb"), reason="PostgreSQL 15 is not installed")
def test_the_postgresql_recipe_backs_up_a_database_that_starts_from_the_backup(src, dst, pg_sockets):
    sockets = pg_sockets
    data = src / "pgdata"
    data.mkdir(mode=0o700)
    for folder in (sockets, data):
        shutil.chown(folder, "postgres", "postgres")
    _as_postgres(f"{PG_BIN}/initdb", "-A", "trust", "-D", data, "--no-sync")
    with _postgres(data, sockets) as psql:
        _as_postgres(*psql, "-c", "CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
        done = ok(src, dst / "backups", "--before-snapshot",
                  f"runuser -u postgres -- psql -h {sockets} -p 5499 -X -q -c CHECKPOINT")
        assert "before_snapshot: running runuser -u postgres -- psql" in done.stderr
    name = done.result["snapshot"]["name"]
    restored = dst / "restored"
    run(["btrfs", "subvolume", "snapshot", dst / "backups" / name, restored])
    # The copy is the server's state at the snapshot, as after a power loss: its pid file names a
    # process of this machine that may be running now (the guide says to remove it).
    (restored / "pgdata" / "postmaster.pid").unlink()
    with _postgres(restored / "pgdata", sockets) as psql:
        assert _as_postgres(*psql, "-c", "SELECT sum(n) FROM t").stdout.strip() == "500500"


def test_the_fsfreeze_recipe_backs_up_a_clean_filesystem_and_thaws_it_before_the_transfers(src, dst, tmp_path):
    image, mount = src / "app.img", tmp_path / "app"
    mount.mkdir()
    run(["truncate", "-s", "32M", image])
    run(["mkfs.ext4", "-q", image])
    device = run(["losetup", "--find", "--show", image]).stdout.strip()
    try:
        run(["mount", device, mount])
        try:
            (mount / "orders.txt").write_text("order 1\n")
            # The after-snapshot command finds the filesystem thawed only if nothing else did.
            check = "sh -c 'echo order 2 > %s/orders.txt && echo thawed'" % mount
            done = ok(src, dst / "backups", "--before-snapshot", f"fsfreeze --freeze {mount}",
                      "--after-snapshot", f"fsfreeze --unfreeze {mount}", "--after-run", check)
            assert "after_run [stdout]: thawed" in done.stderr
        finally:
            run(["fsfreeze", "--unfreeze", mount], check=False)
            run(["umount", mount])
    finally:
        run(["losetup", "-d", device], check=False)
    backup_image = dst / "backups" / done.result["snapshot"]["name"] / "app.img"
    assert run(["e2fsck", "-fn", backup_image], check=False).returncode == 0  # clean: nothing to replay
    assert "order 1" in run(["debugfs", "-R", "cat /orders.txt", backup_image]).stdout
