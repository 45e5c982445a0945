"""The ceiling on snapshots kept for a destination that cannot be reached, for real: runs while its
sshd is stopped warn and count; at the ceiling a local destination that stays still gets every
backup while source retention keeps only the ssh one's parent beyond its policy, and when the server
is back it continues incrementally from that parent; a destination never reached stops the snapshots."""

from __future__ import annotations

import json

import pytest

from cli_helpers import (assert_backup, destination, ok, run_cli, run_raw, sent, snapshot_names, ssh_args,
                         subvolumes)
from support.sshd import REQUIRED_TOOLS, Sshd
from support.trees import assert_same_tree, write_file

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


def test_at_the_ceiling_the_others_get_every_backup_and_the_one_out_of_reach_continues_from_its_parent(
        src, dst, make_fs, server, tmp_path):
    remote, local = dst / "backups", make_fs("local") / "backups"
    remote.mkdir()
    local.mkdir()
    url, snaps = server.url(remote), src / "snapshot"
    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    job = ["--job-name", "data", "--metrics-dir", metrics_dir, "-N", "2", "--max-unsent-snapshots", str(CEILING)]
    first = ok(*job, *ssh_args(server), src, local, url).result["snapshot"]["name"]
    assert unsent_metric(metrics_dir, url) == 0

    server.stop()  # by its pid; the port stays this destination's
    taken = [first]
    for n in range(3 * CEILING):
        write_file(src / ("outage-%d.bin" % n), 4096, seed=n)
        done = run_cli(*job, src, local, url)
        assert done.code == 1 and destination(done.result, url)["status"] == "failed", done.explain()
        # Rule 9: every run takes its snapshot and the local destination gets it, incrementally.
        assert destination(done.result, str(local))["status"] == "ok", done.explain()
        taken.append(done.result["snapshot"]["name"])
        assert sent(done.result, str(local)) == [(taken[-1], "incremental", taken[-2])]
        # Bounded: the ceiling, the snapshot kept as its parent, and this run's.
        assert len(snapshot_names(snaps)) <= CEILING + 1, snapshot_names(snaps)
        assert first in snapshot_names(snaps)
        if n < CEILING:
            assert "%d snapshot(s) are waiting for %s" % (n + 1, url) in done.stderr, done.stderr
            assert snapshot_names(snaps) == taken  # kept for it: the server may be back soon
        if n == CEILING:  # the first run at the ceiling
            assert "%d snapshots are waiting for %s, unreachable since " % (CEILING, url) in done.stderr
            assert ("source retention keeps %s, the newest it holds, and when it is back it continues "
                    "incrementally from there" % first) in done.stderr, done.stderr
            assert "misses those deleted in between" in done.stderr
            assert snapshot_names(snaps) == [first] + taken[-2:]  # -N 2, and its parent
            assert unsent_metric(metrics_dir, url) == 2
            status = run_raw("status", "--json", *job[:2], src, local, url)
            [verdict] = json.loads(status.stdout)["jobs"]
            assert verdict["status"] == "WARNING", verdict
            assert any("it continues from %s when it is back" % first in r for r in verdict["reasons"]), verdict
    assert snapshot_names(local) == taken  # the local destination has every backup
    for older, newer in zip(taken, taken[1:]):
        assert_backup(local, local / newer, parent_name=older)

    server.start()  # the same port: the same destination
    kept = snapshot_names(snaps)
    back = ok(*job, *ssh_args(server), src, local, url).result

    chain = kept + [back["snapshot"]["name"]]
    assert sent(back, url) == [(b, "incremental", a) for a, b in zip(chain, chain[1:])]
    received = subvolumes(remote)
    for older, newer in zip(chain, chain[1:]):  # each received on top of the one before
        assert received[newer].complete_backup and received[newer].parent_uuid == received[older].uuid, received
    assert_backup(remote, snaps / chain[-1], parent_name=chain[-2])  # by UUID, at the source still
    assert_same_tree(snaps / chain[-1], remote / chain[-1])  # the files' checksums
    assert snapshot_names(remote) == chain  # it missed the ones deleted meanwhile
    assert snapshot_names(snaps) == chain[-2:]  # its parent is no longer needed: retention applies again
    assert unsent_metric(metrics_dir, url) == 0


def test_a_destination_never_reached_stops_the_snapshots_at_the_ceiling(src, dst, server, tmp_path):
    """What it holds is not known: none of what waits for it may go, so no snapshot is taken."""
    remote = dst / "backups"
    remote.mkdir()
    url, snaps = server.url(remote), src / "snapshot"
    job = ["--job-name", "data", "-N", "1", "--max-unsent-snapshots", str(CEILING)]
    server.stop()
    for n in range(CEILING):
        assert run_cli(*job, src, url).code == 1
    waiting = snapshot_names(snaps)
    assert len(waiting) == CEILING

    stopped = run_cli(*job, src, url)

    assert stopped.code == 1, stopped.explain()
    assert stopped.result["snapshot"] is None and snapshot_names(snaps) == waiting
    for part in ("%d snapshots are waiting for %s, that no recorded run has reached" % (CEILING, url),
                 "not taking another (max_unsent_snapshots %d)" % CEILING,
                 "the newest backup it holds is not known", "must come back or be removed from the job"):
        assert part in stopped.stderr, stopped.stderr
    status = run_raw("status", "--json", *job[:2], src, url)
    [verdict] = json.loads(status.stdout)["jobs"]
    assert verdict["status"] == "CRITICAL", verdict
    assert any("no new snapshot is taken" in r for r in verdict["reasons"]), verdict["reasons"]

    server.start()
    back = ok(*job, *ssh_args(server), src, url).result
    chain = waiting + [back["snapshot"]["name"]]
    assert sent(back, url)[0] == (chain[0], "full", None)
    assert snapshot_names(remote) == chain
