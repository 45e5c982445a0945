"""The ceiling on snapshots kept for a destination that cannot be reached, for real: runs while its
sshd is stopped warn and count, the run at the ceiling takes no snapshot and says why, and when the
server is back the next run sends every waiting snapshot incrementally and prunes."""

from __future__ import annotations

import json

import pytest

from cli_helpers import assert_backup, destination, ok, run_cli, run_raw, sent, snapshot_names, ssh_args
from support.sshd import REQUIRED_TOOLS, Sshd
from support.trees import write_file

import conftest

CEILING = 3


@pytest.fixture
def server():
    """A server of this test's own (127.0.0.5) that it stops and starts again on the same port."""
    conftest._require(REQUIRED_TOOLS, "sshd")
    server = Sshd(host="127.0.0.5")
    try:
        yield server.start()
    finally:
        server.stop()


def unsent_metric(metrics_dir, dest_id):
    """btrfs_backup_unsent_snapshots of one destination in the job's textfile, or None."""
    for line in (metrics_dir / "btrfs_backup_data.prom").read_text().splitlines():
        if line.startswith("btrfs_backup_unsent_snapshots{") and 'destination="%s"' % dest_id in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_ceiling_stops_new_snapshots_until_the_destination_is_back(src, dst, server, tmp_path):
    remote = dst / "backups"
    remote.mkdir()
    url, snaps = server.url(remote), src / "snapshot"
    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    job = ["--job-name", "data", "--metrics-dir", metrics_dir, "-N", "2",
           "--max-unsent-snapshots", str(CEILING)]
    first = ok(*job, *ssh_args(server), src, url).result["snapshot"]["name"]
    assert unsent_metric(metrics_dir, url) == 0

    server.stop()  # by its pid; the port stays this destination's
    waiting = []
    for n in range(CEILING):
        write_file(src / ("outage-%d.bin" % n), 4096, seed=n)
        done = run_cli(*job, src, url)
        assert done.code == 1 and destination(done.result, url)["status"] == "failed", done.explain()
        waiting.append(done.result["snapshot"]["name"])
        assert "%d snapshot(s) are waiting for %s" % (n + 1, url) in done.stderr, done.stderr
        assert unsent_metric(metrics_dir, url) == n + 1
    assert snapshot_names(snaps) == [first] + waiting  # retention deleted none: it cannot see the server

    stopped = run_cli(*job, src, url)

    assert stopped.code == 1, stopped.explain()
    assert stopped.result["snapshot"] is None and snapshot_names(snaps) == [first] + waiting
    message = "%d snapshots are waiting for %s, unreachable since " % (CEILING, url)
    assert message in stopped.stderr and "not taking another (max_unsent_snapshots %d)" % CEILING \
        in stopped.stderr and "must come back or be removed from the job" in stopped.stderr, stopped.stderr
    assert unsent_metric(metrics_dir, url) == CEILING
    status = run_raw("status", "--json", *job[:2], src, url)
    [verdict] = json.loads(status.stdout)["jobs"]
    assert verdict["status"] == "CRITICAL", verdict
    assert any("no new snapshot is taken" in r for r in verdict["reasons"]), verdict["reasons"]

    server.start()  # the same port: the same destination
    back = ok(*job, *ssh_args(server), src, url).result

    latest = back["snapshot"]["name"]
    chain = [first] + waiting + [latest]
    assert sent(back, url) == [(b, "incremental", a) for a, b in zip(chain, chain[1:])]
    assert_backup(remote, snaps / latest, parent_name=waiting[-1])
    assert snapshot_names(snaps) == chain[-2:]  # retention applies again
    assert unsent_metric(metrics_dir, url) == 0
