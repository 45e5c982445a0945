"""Hosts sharing a backup server: a crafted stream from one host's key cannot take another's data.

`btrfs receive` finds a stream's incremental parent and its clone sources by UUID anywhere on the
destination filesystem, `--chroot` or not. Host B, holding only its own `serve` key, crafts
streams that name host A's backup as their parent or as the source of a clone (here the
simplest real way: B's side has A's snapshot and sends `-p A` or `-c A`; an attacker writes the
same commands by hand from A's UUID and ctransid, the stream format is public). serve runs
receive with the host's own subvolume as its root (`-m`), where A's backup is unreachable; a
receive that reports an error (a clone it skipped) but exits 0 leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from cli_helpers import CLI, assert_backup, is_subvolume, ok, show, subvolumes, take_snapshot
from support.btrfs_loop import pipeline, run
from support.sshd import Sshd
from support.tenant_keys import authorize_hosts, cli_ssh_flags, host_ssh_argv
from support.trees import MiB
from test_serve_ssh import require_sshd


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_digests(folder: Path) -> dict:
    """{sha256: path} of every regular file below `folder`, across subvolumes."""
    found = {}
    for where, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(where, name)
            if path.is_file() and not path.is_symlink():
                found[digest(path)] = path
    return found


def send(snapshot: Path, *flags) -> bytes:
    return subprocess.run(["btrfs", "send", "-q"] + list(flags) + [str(snapshot)],
                          stdout=subprocess.PIPE, check=True).stdout


def dump(stream: bytes) -> str:
    return subprocess.run(["btrfs", "receive", "--dump"], input=stream, stdout=subprocess.PIPE,
                          check=True).stdout.decode()


@pytest.fixture
def shared_server(require_btrfs, make_fs, subvolume, request):
    """A server whose hosts a and b each have a folder (a subvolume, as the role makes them, or a
    plain folder) and a key confined to it; host a has one backup, pushed by the CLI."""
    require_sshd()
    fs = make_fs("server")
    make_folder = subvolume if request.param == "subvolume" else (lambda path: path.mkdir() or path)
    roots = {host: make_folder(fs / host) for host in ("a", "b")}
    source_fs = make_fs("src")
    source_a = subvolume(source_fs / "a")
    (source_a / "secret.bin").write_bytes(os.urandom(4 * MiB))
    with Sshd(host="127.0.0.5") as server:
        keys = authorize_hosts(server, CLI, roots, ["--append-only"])
        url = server.url(roots["a"] / "data")
        pushed = ok(*cli_ssh_flags(server, keys["a"]), "--snapshot-folder", source_fs / "snapshots-a",
                    source_a, url).result
        snapshot_a = source_fs / "snapshots-a" / pushed["snapshot"]["name"]
        assert_backup(roots["a"] / "data", snapshot_a)
        yield server, keys, roots, snapshot_a


# B's snapshots are named as the engine names them (serve refuses other names, rule 12).
BASE, CLONING, ON_A = "20200101-000000", "20200101-000001", "20200101-000002"


def crafted_streams(snapshot_a: Path, workdir: Path) -> dict:
    """{variant: stream} of host b, each naming host a's snapshot: as the incremental parent, and
    as the source of a clone (b's own base is in its folder already)."""
    b = workdir / "b"
    run(["btrfs", "subvolume", "create", b])
    (b / "own.txt").write_text("b's own data\n")
    base = take_snapshot(b, workdir / "snapshots-b", BASE)
    run(["cp", "--reflink=always", snapshot_a / "secret.bin", b / "stolen.bin"])
    cloning = take_snapshot(b, workdir / "snapshots-b", CLONING)
    run(["btrfs", "subvolume", "snapshot", snapshot_a, workdir / "b-on-a"])
    (workdir / "b-on-a" / "own.txt").write_text("b's own data\n")
    on_a = take_snapshot(workdir / "b-on-a", workdir / "snapshots-b", ON_A)
    streams = {"base": send(base),
               "parent": send(on_a, "-p", str(snapshot_a)),
               "clone": send(cloning, "-p", str(base), "-c", str(snapshot_a))}
    uuid_a = show(snapshot_a).uuid
    assert "parent_uuid=%s" % uuid_a in dump(streams["parent"]).splitlines()[0]
    assert any(line.startswith("clone") and "stolen.bin" in line for line in dump(streams["clone"]).splitlines())
    return streams


def push_as_b(server, keys, folder: Path, stream: bytes) -> subprocess.CompletedProcess:
    """B's key asks for a plain receive into its folder; serve decides how it runs."""
    line = "btrfs receive %s" % shlex.quote(str(folder))
    return subprocess.run(host_ssh_argv(server, keys["b"], line), input=stream, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)


@pytest.mark.parametrize("shared_server", ["subvolume"], indirect=True)
def test_a_crafted_stream_cannot_take_another_hosts_backup(shared_server, make_fs):
    server, keys, roots, snapshot_a = shared_server
    secret = digest(snapshot_a / "secret.bin")
    streams = crafted_streams(snapshot_a, snapshot_a.parents[1])
    folder = roots["b"] / "data"
    folder.mkdir()
    assert push_as_b(server, keys, folder, streams["base"]).returncode == 0

    parent = push_as_b(server, keys, folder, streams["parent"])
    assert parent.returncode not in (0, 126), parent
    assert b"not reachable" in parent.stderr, parent.stderr
    assert sorted(subvolumes(folder)) == [BASE], "the parent attack left a subvolume behind"

    clone = push_as_b(server, keys, folder, streams["clone"])
    # btrfs-progs 6.2 says so and skips the clone, but its status stays 0: serve reads receive's
    # ERROR line, deletes the broken backup (its file would be empty) and refuses the stream.
    assert b"clone: source subvol path" in clone.stderr and b"unreachable" in clone.stderr, clone.stderr
    assert clone.returncode == 126 and b"refused: btrfs receive reported an error yet ended with status 0" \
        in clone.stderr and b"deleted it" in clone.stderr, clone
    assert sorted(subvolumes(folder)) == [BASE], "the clone attack left a backup behind"

    assert secret not in file_digests(roots["b"]), "b's folder holds a's data"
    assert digest(roots["a"] / "data" / snapshot_a.name / "secret.bin") == secret  # a's backup untouched


@pytest.mark.parametrize("shared_server", ["folder"], indirect=True)
def test_with_plain_host_folders_a_crafted_stream_takes_another_hosts_data(shared_server):
    """The documented limit of `btrfs_backup_server_host_folder_type: folder`: receive has no
    subvolume of the host's own to be confined to, and --chroot does not stop the lookup by UUID.
    If this ever fails, btrfs receive confines parents itself: update the threat model."""
    server, keys, roots, snapshot_a = shared_server
    secret = digest(snapshot_a / "secret.bin")
    streams = crafted_streams(snapshot_a, snapshot_a.parents[1])
    folder = roots["b"] / "data"
    folder.mkdir()
    assert push_as_b(server, keys, folder, streams["parent"]).returncode == 0
    assert secret in file_digests(roots["b"])
    assert is_subvolume(folder / ON_A) and show(folder / ON_A).received_uuid
