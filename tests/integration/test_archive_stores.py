"""The archive stores' loopback servers, proven with the stores' own commands: borg behind an
append-only forced command over ssh, restic over REST (rclone, append-only) and over S3 (moto)."""

from __future__ import annotations

import json
import subprocess

import pytest

from support.archive_stores import PASSPHRASE, REST_PASSWORD, S3_SECRET_KEY, borg_env, restic_env, run
from support.btrfs_loop import pipeline
from support.trees import assert_same_tree


@pytest.fixture
def sent_snapshot(src, snapshot):
    """A read-only snapshot of the source tree, ready for ``btrfs send``."""
    (src.parent / "snapshot").mkdir()
    return snapshot(src, src.parent / "snapshot" / "data.20261205-080000")


def _received(restore_fs, snapshot_path):
    return restore_fs / "received" / snapshot_path.name


def _no_secret(*outputs: bytes, secrets=(PASSPHRASE, REST_PASSWORD, S3_SECRET_KEY)):
    for output in outputs:
        for secret in secrets:
            assert secret.encode() not in output


# -- borg over ssh, append-only ---------------------------------------------------------------


def test_borg_append_only_over_ssh(borg_ssh_server, archive_key_file, archive_client_dirs, monkeypatch,
                                   sent_snapshot, src, restore_fs):
    repo_path = borg_ssh_server.repository("store-proof")
    env = borg_env(archive_client_dirs / "borg", archive_key_file, borg_ssh_server.client_environment("store-proof"))
    url = borg_ssh_server.url("store-proof")

    # A send whose command fails creates no archive: borg's own guarantee for a cut stream.
    cut = run(["borg", "create", "--content-from-command", f"{url}::cut", "--",
               "sh", "-c", 'btrfs send -q "$1" | head -c 100000; exit 1', "sh", str(sent_snapshot)], env)
    assert cut.returncode != 0
    listed = run(["borg", "list", "--json", url], env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["archives"] == []

    made = run(["borg", "create", "--content-from-command", f"{url}::{sent_snapshot.name}", "--",
                "btrfs", "send", "-q", str(sent_snapshot)], env)
    assert made.returncode == 0, made.stderr
    listed = run(["borg", "list", "--json", url], env)
    assert [a["name"] for a in json.loads(listed.stdout)["archives"]] == [sent_snapshot.name]

    # The archive, extracted to stdout into btrfs receive, gives the snapshot back.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (restore_fs / "received").mkdir()
    pipeline(["borg", "extract", "--stdout", f"{url}::{sent_snapshot.name}"],
             ["btrfs", "receive", restore_fs / "received"])
    assert_same_tree(src, _received(restore_fs, sent_snapshot))

    # Append-only: a client's delete hides the archive from listings but frees nothing on the
    # server; every segment the server held is still there for its owner to roll back to.
    segments_before = {p: p.stat().st_size for p in borg_ssh_server.segment_files("store-proof")}
    deleted = run(["borg", "delete", f"{url}::{sent_snapshot.name}"], env)
    assert deleted.returncode == 0, deleted.stderr
    compacted = run(["borg", "compact", url], env)
    after = {p: p.stat().st_size for p in borg_ssh_server.segment_files("store-proof")}
    assert all(after.get(p) == size for p, size in segments_before.items()), (compacted.stderr, after)
    transactions = (repo_path / "transactions").read_text()
    assert transactions.count("transaction") >= 3  # init, create, delete: each a point to roll back to

    # The forced command serves this repository only: another path on the same host is refused.
    other = borg_ssh_server.workdir / "repos" / "other"
    refused = run(["borg", "init", "--encryption", "repokey-blake2", borg_ssh_server.sshd.url(other)], env)
    assert refused.returncode != 0
    assert b"not allowed" in refused.stderr or b"restricted" in refused.stderr.lower(), refused.stderr
    assert not other.exists()
    _no_secret(cut.stdout, cut.stderr, made.stdout, made.stderr, listed.stdout, deleted.stderr)


# -- restic over REST (rclone serve restic --append-only) -------------------------------------


def test_restic_rest_append_only(rest_server, archive_key_file, archive_client_dirs, monkeypatch,
                                 sent_snapshot, src, restore_fs):
    repository = rest_server.repository("store-proof")
    env = restic_env(archive_client_dirs / "restic", archive_key_file)
    initialised = run(["restic", "-r", repository, "init"], env)
    assert initialised.returncode == 0, initialised.stderr

    stream = subprocess.Popen(["btrfs", "send", "-q", str(sent_snapshot)], stdout=subprocess.PIPE)
    made = run(["restic", "-r", repository, "backup", "--stdin", "--stdin-filename", "stream",
                "--tag", "job=proof", "--tag", f"snapshot={sent_snapshot.name}"], env, stdin=stream.stdout)
    stream.stdout.close()
    assert stream.wait() == 0 and made.returncode == 0, made.stderr
    listed = run(["restic", "-r", repository, "snapshots", "--json"], env)
    snapshots = json.loads(listed.stdout)
    assert [sorted(s["tags"]) for s in snapshots] == [["job=proof", f"snapshot={sent_snapshot.name}"]]

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (restore_fs / "received").mkdir()
    pipeline(["restic", "-r", repository, "dump", snapshots[0]["id"], "stream"],
             ["btrfs", "receive", restore_fs / "received"])
    assert_same_tree(src, _received(restore_fs, sent_snapshot))

    # Append-only: the server refuses to delete a snapshot (restic's forget retries the 403 for
    # about 40 s and then fails; the protocol's answer is asked directly here).
    assert rest_server.delete_status("store-proof", "snapshots", snapshots[0]["id"]) == 403
    again = run(["restic", "-r", repository, "snapshots", "--json"], env)
    assert [s["id"] for s in json.loads(again.stdout)] == [snapshots[0]["id"]]
    _no_secret(initialised.stdout, initialised.stderr, made.stdout, made.stderr, listed.stdout)


# -- restic over S3 (moto) --------------------------------------------------------------------


def test_restic_s3(s3_server, archive_key_file, archive_client_dirs, monkeypatch, sent_snapshot, src, restore_fs):
    repository = s3_server.repository("store-proof")
    env = restic_env(archive_client_dirs / "restic", archive_key_file, s3_server.environment())
    initialised = run(["restic", "-r", repository, "init"], env)
    assert initialised.returncode == 0, initialised.stderr

    stream = subprocess.Popen(["btrfs", "send", "-q", str(sent_snapshot)], stdout=subprocess.PIPE)
    made = run(["restic", "-r", repository, "backup", "--stdin", "--stdin-filename", "stream"], env,
               stdin=stream.stdout)
    stream.stdout.close()
    assert stream.wait() == 0 and made.returncode == 0, made.stderr

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (restore_fs / "received").mkdir()
    pipeline(["restic", "-r", repository, "dump", "latest", "stream"], ["btrfs", "receive", restore_fs / "received"])
    assert_same_tree(src, _received(restore_fs, sent_snapshot))

    # Not append-only: the store's own forget and prune remove a snapshot.
    forgot = run(["restic", "-r", repository, "forget", "--prune", "latest"], env)
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(run(["restic", "-r", repository, "snapshots", "--json"], env).stdout) == []
    _no_secret(initialised.stdout, initialised.stderr, made.stdout, made.stderr, forgot.stdout, forgot.stderr)
