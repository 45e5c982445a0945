"""The archive stores' loopback servers, proven with the stores' own commands (borg behind an
append-only forced command over ssh, restic over REST from rclone and over S3 from moto), and the
role's borg forced command and restic REST unit run for real."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest

from support.archive_stores import (PASSPHRASE, REST_PASSWORD, REST_USER, S3_SECRET_KEY, RcloneRestServer, borg_env,
                                    restic_env, run)
from support.procs import wait_listening
from support.role_templates import render_role_template
from support.sshd import free_port


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


def test_borg_over_ssh_stores_nothing_of_a_failed_command(borg_ssh_server, archive_key_file, archive_client_dirs,
                                                          stream):
    borg_ssh_server.repository("store-proof")
    env = borg_env(archive_client_dirs / "borg", archive_key_file, borg_ssh_server.client_environment("store-proof"))
    url = borg_ssh_server.url("store-proof")
    # A command that fails after part of its stream creates no archive: borg's own guarantee for a
    # cut stream (the archives and the append-only key are proven through the CLI and the role).
    cut = run(["borg", "create", "--content-from-command", f"{url}::cut", "--",
               "sh", "-c", 'head -c 100000 "$1"; exit 1', "sh", str(stream)], env)
    assert cut.returncode != 0
    listed = run(["borg", "list", "--json", url], env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["archives"] == []
    _no_secret(cut.stdout, cut.stderr, listed.stdout, listed.stderr)


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


# -- the role's archive servers, run for real ---------------------------------------------------


def test_the_roles_borg_forced_command_lets_a_client_make_and_fill_its_repository_only(
        borg_ssh_server, archive_key_file, archive_client_dirs, stream):
    repos = borg_ssh_server.workdir / "role-repos"
    repos.mkdir()
    client_key = borg_ssh_server.workdir / "role_client_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    rendered = render_role_template(
        "borg_authorized_keys.j2", __btrfs_backup_borg_repos_dir=str(repos),
        btrfs_backup_borg_server_repositories=[{"name": "web1", "keys": [client_key.with_suffix(".pub").read_text()]}])
    with open(borg_ssh_server.sshd.workdir / "authorized_keys", "a") as handle:
        handle.write(rendered)
    rsh = borg_ssh_server.rsh("web1").replace(str(borg_ssh_server.identity_file("web1")), str(client_key))
    env = borg_env(archive_client_dirs / "borg", archive_key_file, {"BORG_RSH": rsh})
    url = borg_ssh_server.sshd.url(repos / "web1")

    # The client makes its repository through the forced command: the passphrase never reaches the server.
    made = run(["borg", "init", "--encryption", "repokey-blake2", url], env)
    assert made.returncode == 0, made.stderr
    stored = run(["borg", "create", "--content-from-command", f"{url}::one", "--", "cat", str(stream)], env)
    assert stored.returncode == 0, stored.stderr
    assert "append_only = 1" not in (repos / "web1" / "config").read_text()  # append-only is the key's, not the repository's
    refused = run(["borg", "init", "--encryption", "repokey-blake2", borg_ssh_server.sshd.url(repos / "web2")], env)
    assert refused.returncode != 0 and b"not allowed" in refused.stderr, refused.stderr
    # No shell behind the key: any command runs borg serve, which speaks only its protocol.
    shell = subprocess.run(["ssh", "-F", "none", "-o", f"IdentityFile={client_key}", "-o", "IdentitiesOnly=yes",
                            "-o", f"UserKnownHostsFile={borg_ssh_server.sshd.known_hosts_file}", "-o", "BatchMode=yes",
                            "-p", str(borg_ssh_server.sshd.port), borg_ssh_server.sshd.destination, "touch /tmp/x"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert shell.returncode != 0
    _no_secret(made.stdout, made.stderr, stored.stdout, stored.stderr)


def test_the_roles_rest_server_unit_serves_append_only_behind_its_password(archive_key_file, archive_client_dirs,
                                                                         stream, tmp_path):
    root, port = tmp_path / "restic-root", free_port("127.0.0.1")
    root.mkdir()
    unit = render_role_template("btrfs-backup-restic-rest.service.j2", btrfs_backup_restic_server_root=str(root),
                                btrfs_backup_restic_server_listen=f"127.0.0.1:{port}")
    (exec_start,) = [line[len("ExecStart="):] for line in unit.splitlines() if line.startswith("ExecStart=")]
    # The credentials as the role's environment file gives them (RCLONE_USER, RCLONE_PASS).
    server_env = dict(os.environ, RCLONE_USER=REST_USER, RCLONE_PASS=REST_PASSWORD)
    server = subprocess.Popen(shlex.split(exec_start), env=server_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rest = RcloneRestServer(user=REST_USER, password=REST_PASSWORD)
        rest.host, rest.port = "127.0.0.1", port
        wait_listening(server, "127.0.0.1", port, 20)
        env = restic_env(archive_client_dirs / "restic", archive_key_file)
        anonymous = run(["restic", "-r", f"rest:http://127.0.0.1:{port}/web1", "init"], env)
        assert anonymous.returncode != 0 and b"401" in anonymous.stderr, anonymous.stderr
        made = run(["restic", "-r", rest.repository("web1"), "init"], env)
        assert made.returncode == 0, made.stderr
        with open(stream, "rb") as data:
            stored = run(["restic", "-r", rest.repository("web1"), "backup", "--stdin"], env, stdin=data)
        assert stored.returncode == 0, stored.stderr
        (snapshot,) = [s["id"] for s in json.loads(run(["restic", "-r", rest.repository("web1"), "snapshots",
                                                        "--json"], env).stdout)]
        assert rest.delete_status("web1", "snapshots", snapshot) == 403
    finally:
        server.terminate()
        server.wait(timeout=10)
