"""The archive stores' loopback servers, proven with the stores' own commands: borg behind an
append-only forced command over ssh, restic over REST (rclone, append-only) and over S3 (moto)."""

from __future__ import annotations

import json
import os

import pytest

from support.archive_stores import PASSPHRASE, REST_PASSWORD, S3_SECRET_KEY, borg_env, restic_env, run


@pytest.fixture
def stream(tmp_path):
    """A file standing in for a send stream (random bytes: nothing to deduplicate or compress)."""
    path = tmp_path / "stream"
    path.write_bytes(os.urandom(1 << 20))
    return path


def _no_secret(*outputs: bytes):
    for output in outputs:
        for secret in (PASSPHRASE, REST_PASSWORD, S3_SECRET_KEY):
            assert secret.encode() not in output


def test_borg_append_only_over_ssh(borg_ssh_server, archive_key_file, archive_client_dirs, stream):
    repo_path = borg_ssh_server.repository("store-proof")
    env = borg_env(archive_client_dirs / "borg", archive_key_file, borg_ssh_server.client_environment("store-proof"))
    url = borg_ssh_server.url("store-proof")

    # A command that fails creates no archive: borg's own guarantee for a cut stream.
    cut = run(["borg", "create", "--content-from-command", f"{url}::cut", "--",
               "sh", "-c", 'head -c 100000 "$1"; exit 1', "sh", str(stream)], env)
    assert cut.returncode != 0
    listed = run(["borg", "list", "--json", url], env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["archives"] == []

    made = run(["borg", "create", "--content-from-command", f"{url}::whole", "--", "cat", str(stream)], env)
    assert made.returncode == 0, made.stderr
    extracted = run(["borg", "extract", "--stdout", f"{url}::whole"], env)
    assert extracted.stdout == stream.read_bytes()

    # Append-only: a client's delete hides the archive from listings but frees nothing on the
    # server; every segment the server held is still there for its owner to roll back to.
    segments_before = {p: p.stat().st_size for p in borg_ssh_server.segment_files("store-proof")}
    deleted = run(["borg", "delete", f"{url}::whole"], env)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(run(["borg", "list", "--json", url], env).stdout)["archives"] == []
    compacted = run(["borg", "compact", url], env)
    after = {p: p.stat().st_size for p in borg_ssh_server.segment_files("store-proof")}
    assert all(after.get(p) == size for p, size in segments_before.items()), (compacted.stderr, after)
    assert (repo_path / "transactions").read_text().count("transaction") >= 3  # points to roll back to

    # The forced command serves this repository only: another path on the same host is refused.
    other = borg_ssh_server.workdir / "repos" / "other"
    refused = run(["borg", "init", "--encryption", "repokey-blake2", borg_ssh_server.sshd.url(other)], env)
    assert refused.returncode != 0
    assert b"not allowed" in refused.stderr, refused.stderr
    assert not other.exists()
    _no_secret(cut.stdout, cut.stderr, made.stdout, made.stderr, listed.stdout, deleted.stderr)


def test_restic_rest_append_only(rest_server, archive_key_file, archive_client_dirs, stream):
    repository = rest_server.repository("store-proof")
    env = restic_env(archive_client_dirs / "restic", archive_key_file)
    initialised = run(["restic", "-r", repository, "init"], env)
    assert initialised.returncode == 0, initialised.stderr
    with open(stream, "rb") as data:
        made = run(["restic", "-r", repository, "backup", "--stdin", "--stdin-filename", "stream",
                    "--tag", "job=proof"], env, stdin=data)
    assert made.returncode == 0, made.stderr
    listed = run(["restic", "-r", repository, "snapshots", "--json"], env)
    (snapshot,) = [s["id"] for s in json.loads(listed.stdout)]
    assert run(["restic", "-r", repository, "dump", snapshot, "stream"], env).stdout == stream.read_bytes()

    # Append-only: the server refuses to delete a snapshot (restic's forget retries the 403 for
    # about 45 s and then fails; the protocol's answer is asked directly here).
    assert rest_server.delete_status("store-proof", "snapshots", snapshot) == 403
    listed = run(["restic", "-r", repository, "snapshots", "--json"], env)
    assert [s["id"] for s in json.loads(listed.stdout)] == [snapshot]
    _no_secret(initialised.stdout, initialised.stderr, made.stdout, made.stderr, listed.stdout)


def test_restic_s3(s3_server, archive_key_file, archive_client_dirs, stream):
    repository = s3_server.repository("store-proof")
    env = restic_env(archive_client_dirs / "restic", archive_key_file, s3_server.environment())
    initialised = run(["restic", "-r", repository, "init"], env)
    assert initialised.returncode == 0, initialised.stderr
    with open(stream, "rb") as data:
        made = run(["restic", "-r", repository, "backup", "--stdin", "--stdin-filename", "stream"], env, stdin=data)
    assert made.returncode == 0, made.stderr
    assert run(["restic", "-r", repository, "dump", "latest", "stream"], env).stdout == stream.read_bytes()

    _no_secret(initialised.stdout, initialised.stderr, made.stdout, made.stderr)
