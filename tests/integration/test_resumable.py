"""Resumable transfers over real ssh to real btrfs (rule 13): a transfer cut mid-way completes on
the next run, which sends only what had not landed; a staged prefix that is not the regenerated
stream's is dropped with the reason; stale staging is removed; nothing staged is left behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from cli_helpers import (CLI, assert_backup, assert_no_partial, destination, ok, run_raw, sent, snapshot_names,
                         ssh_args)
from faults import find_process, is_btrfs, start_cli, wait_for
from support.sshd import Sshd
from support.trees import modify_tree

MiB = 1 << 20
CHUNK = MiB
FS_SIZE = "1G"
# A 24 MiB file of random data (it does not compress) and a few small ones: 24 chunks or so.
SOURCE_TREE = dict(n_small=20, small_size=2048, large_files=[24 * MiB], seed=7)
STAGING = ".btrfs-backup-staging"


def args(sshd, *extra):
    return ssh_args(sshd) + ["--resumable", "always", "--resumable-chunk-size", "1M",
                             "--compress", "none"] + list(extra)


def staging_folders(dest: Path) -> list:
    root = dest / STAGING
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def landed_chunks(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.name.endswith(".chunk"))


def file_hashes(root: Path) -> dict:
    found = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def cut_after(sshd, source, url, dest, chunks: int, *extra) -> Path:
    """Start a rate-limited staged run and kill it with its whole pipeline once `chunks` chunks
    have landed; the staging folder it left."""
    with start_cli(*args(sshd, "--limit-rate", "4M", *extra), source, url) as cli:
        folder = wait_for("a staging folder", lambda: (staging_folders(dest) or [None])[0], timeout=60)
        wait_for("%d landed chunks" % chunks, lambda: landed_chunks(folder) >= chunks, timeout=60, interval=0.01)
        cli.signal_group(signal.SIGKILL)
        cli.proc.wait(timeout=30)
    time.sleep(0.5)  # the destination's receiver sees its stdin close and exits
    return folder


def test_a_cut_transfer_resumes_with_only_the_rest(src, dst, sshd):
    dest, snaps = dst / "backups", src / "snapshot"
    dest.mkdir()
    url = sshd.url(dest)
    folder = cut_after(sshd, src, url, dest, chunks=8)
    staged = landed_chunks(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    stream_size = manifest["stream_size"]
    assert manifest["chunk_size"] == CHUNK and stream_size > 24 * MiB
    assert 8 <= staged < stream_size // CHUNK
    # The verified chunks were being received as they landed: the cut left a partial receive
    # (never a backup: rule 2), which the next run deletes before it resumes.

    run = ok(*args(sshd, "--no-snapshot"), src, url)  # the cut snapshot only: its bytes are counted
    first = snapshot_names(snaps)[0]
    assert sent(run.result, url) == [(first, "full", None)]
    assert "resuming the transfer of %s after %d staged chunks" % (first, staged) in run.stderr
    transfer = destination(run.result, url)["transfers"][0]
    # This run sent the rest of the stream (framed: 49 bytes a chunk) and at most one chunk more.
    assert transfer["bytes"] <= stream_size - staged * CHUNK + CHUNK + 64 * 49, (transfer, stream_size, staged)
    assert_backup(dest, snaps / first)
    assert file_hashes(dest / first) == file_hashes(snaps / first)
    assert not (dest / STAGING).exists()
    assert_no_partial(dest)

    # The chain goes on incrementally from the resumed backup.
    modify_tree(src / "small", 8 * 1024, seed=3, add_files=1, remove_files=1)
    second = ok(*args(sshd), src, url).result["snapshot"]["name"]
    assert_backup(dest, snaps / second, parent_name=first)
    assert not (dest / STAGING).exists()


def test_a_staged_prefix_that_differs_starts_over(src, dst, sshd):
    dest, snaps = dst / "backups", src / "snapshot"
    dest.mkdir()
    url = sshd.url(dest)
    folder = cut_after(sshd, src, url, dest, chunks=4)
    # Chunk 1 and its recorded hash agree with each other, not with the stream.
    chunk = folder / "00000001.chunk"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    lines = (folder / "chunks.sha256").read_text().splitlines()
    lines[1] = "%s  00000001.chunk" % hashlib.sha256(bytes(data)).hexdigest()
    (folder / "chunks.sha256").write_text("\n".join(lines) + "\n")

    run = ok(*args(sshd, "--no-snapshot"), src, url)
    assert "regenerated stream differs from the staged one at chunk 1: starting over" in run.stderr
    name = snapshot_names(snaps)[0]
    assert_backup(dest, snaps / name)
    assert file_hashes(dest / name) == file_hashes(snaps / name)
    assert not (dest / STAGING).exists()


def make_staging(folder: Path, days_old: float = 0) -> Path:
    """A staging folder with one chunk whose last chunk landed `days_old` days ago."""
    folder.mkdir(parents=True)
    (folder / "00000000.chunk").write_bytes(b"x" * 1000)
    if days_old:
        landed = time.time() - days_old * 86400
        os.utime(folder, (landed, landed))
    return folder


def test_stale_staging_is_removed_by_the_next_run_and_by_the_servers_prune(src, dst, sshd):
    dest = dst / "backups"
    stale = [make_staging(dest / STAGING / "20000101-000000.full"),  # an older snapshot: the chain went past it
             make_staging(dest / STAGING / "not-a-staging"),
             make_staging(dest / STAGING / "29980101-000000.full", days_old=8)]  # no chunk for a week
    wanted = make_staging(dest / STAGING / "29990101-000000.full", days_old=1)  # a newer snapshot's, fresh
    url = sshd.url(dest)
    run = ok(*args(sshd), src, url)
    assert "removing stale staging" in run.stderr
    assert not any(folder.exists() for folder in stale)
    assert staging_folders(dest) == [wanted]
    assert len(sent(run.result, url)) == 1

    # The server's prune (on the server, by what it observed): a staging older than the age, or one
    # whose last chunk landed before a backup arrived (the host went on without it), goes; one
    # still being staged after the newest backup arrived stays.
    old = make_staging(dest / STAGING / "29970101-000000.full", days_old=8)
    now = time.time() + 60
    fresh = dest / STAGING / "30000101-000000.full"
    make_staging(fresh)
    os.utime(fresh, (now, now))
    done = run_raw("prune", "--json", "-n", "5", str(dest))
    assert done.returncode == 0, done.stderr
    result, = json.loads(done.stdout)["folders"]
    removed = {item["key"]: item["reason"] for item in result["stale_staging"]}
    assert removed == {old.name: "its last chunk landed 8 days ago (stale after 7 days)",
                       wanted.name: "a backup arrived after its last chunk landed: the host went on without it"}
    assert result["changed"] and staging_folders(dest) == [fresh]
    assert "removed stale staging %s" % old.name in done.stderr


def test_a_killed_receiver_fails_the_run_which_records_how_far_it_got(src, dst, sshd):
    dest, snaps = dst / "backups", src / "snapshot"
    dest.mkdir()
    url = sshd.url(dest)
    with start_cli(*args(sshd, "--limit-rate", "4M"), src, url) as cli:
        folder = wait_for("a staging folder", lambda: (staging_folders(dest) or [None])[0], timeout=60)
        wait_for("4 landed chunks", lambda: landed_chunks(folder) >= 4, timeout=60, interval=0.01)
        lander = find_process("the chunk receiver", sshd.pid,
                              lambda p: p.comm.startswith("python") and str(folder) in p.argv)
        os.kill(lander.pid, signal.SIGKILL)
        done = cli.finish()
    assert done.code != 0, done.explain()
    transfer = destination(done.result, url)["transfers"][0]
    assert transfer["status"] == "failed"
    left = transfer["resumable"]
    assert left["staged_bytes"] == landed_chunks(folder) * CHUNK >= 4 * CHUNK
    assert 0 < left["percent"] < 100 and left["stream_bytes"] > 24 * MiB
    run = ok(*args(sshd, "--no-snapshot"), src, url)
    name = snapshot_names(snaps)[0]
    assert "resuming the transfer of %s" % name in run.stderr
    assert_backup(dest, snaps / name)
    assert not (dest / STAGING).exists()


def test_a_run_killed_outright_leaves_its_share_beside_the_lock_file_for_status(src, dst, sshd):
    dest, snaps = dst / "backups", src / "snapshot"
    dest.mkdir()
    url = sshd.url(dest)
    folder = cut_after(sshd, src, url, dest, chunks=6)  # SIGKILL: no run record
    name = snapshot_names(snaps)[0]
    staged = landed_chunks(folder)
    stream_size = json.loads((folder / "manifest.json").read_text())["stream_size"]
    # The lock file keeps btrfs-backup 0.3's shape; the share lies beside it.
    assert json.loads((snaps / ".outstanding_transfers").read_text()) == {name: {"locks": [url]}}
    cut_after(sshd, src, url, dest, staged + 4, "--no-snapshot")  # resumed, killed again
    figure = json.loads((snaps / ".outstanding_transfers.staged").read_text())[name][url]
    assert figure["staged_bytes"] >= staged * CHUNK and figure["stream_bytes"] == stream_size
    percent = 100 * figure["staged_bytes"] // stream_size
    assert 0 < percent < 100

    shown = run_raw("status", *args(sshd), str(src), url)
    assert "resumable transfer of %s at %d%%" % (name, percent) in shown.stdout, shown.stdout + shown.stderr
    state = json.loads(run_raw("status", "--json", *args(sshd), str(src), url).stdout)["jobs"][0]["state"]
    assert state["destinations"][url]["resumable"]["percent"] == percent

    ok(*args(sshd, "--no-snapshot"), src, url)  # it completes: no share is left to tell
    assert not (snaps / ".outstanding_transfers.staged").exists()
    shown = run_raw("status", *args(sshd), str(src), url)
    assert "resumable transfer" not in shown.stdout
    assert_backup(dest, snaps / name)


@pytest.fixture
def backup_server(make_fs):
    """A backup server: an sshd whose only key runs `serve --root <fs>/web1` (as the role sets it up)."""
    fs = make_fs("server", size=FS_SIZE)
    (fs / "web1" / "data").mkdir(parents=True)
    (fs / "web2").mkdir()
    with Sshd(host="127.0.0.6") as server:
        forced = " ".join([str(CLI), "serve", "--root", str(fs / "web1")])
        key = (server.workdir / "id_ed25519.pub").read_text().strip()
        (server.workdir / "authorized_keys").write_text('restrict,command="%s" %s\n' % (forced, key))
        yield server, fs


def test_a_cut_transfer_to_a_backup_server_resumes_through_serve(src, backup_server):
    server, fs = backup_server
    dest, snaps = fs / "web1" / "data", src / "snapshot"
    url = server.url(dest)
    folder = cut_after(server, src, url, dest, 6, "--compress", "zstd")  # serve's `zstd -d | land` too
    staged = landed_chunks(folder)
    assert staged >= 6

    run = ok(*args(server, "--no-snapshot", "--compress", "zstd"), src, url)
    first = snapshot_names(snaps)[0]
    assert "resuming the transfer of %s after %d staged chunks" % (first, staged) in run.stderr
    assert destination(run.result, url)["transfers"][0]["resumed_bytes"] == staged * CHUNK
    assert_backup(dest, snaps / first)
    assert file_hashes(dest / first) == file_hashes(snaps / first)
    assert not (dest / STAGING).exists() and list((fs / "web2").iterdir()) == []


def _the_connection(cli, server):
    # The run's ssh connection master (`ssh -N`, or retitled "ssh: PATH [mux]" once in the
    # background): killing it cuts every channel of the link at once.
    def master():
        found = cli.children() + cli.ssh_masters()
        return next((p for p in found if p.comm == "ssh" and ("-N" in p.argv or any("[mux]" in a for a in p.argv))),
                    None)
    return wait_for("the run's ssh connection", master, timeout=10, interval=0.01)


def _serve(cli, server):
    return find_process("serve's staging", server.pid,
                        lambda p: "serve" in p.argv and "--root" in p.argv and "python" in p.comm)


def _the_receive(cli, server):
    return find_process("btrfs receive at the server", server.pid, lambda p: is_btrfs(p, "receive"))


@pytest.mark.parametrize("cut", [_the_connection, _serve, _the_receive], ids=["ssh connection", "serve", "receive"])
def test_a_transfer_cut_at_either_end_resumes_from_what_landed(src, backup_server, cut):
    """The link dropped (the ssh connection killed), the server's `serve` killed, the server's
    `btrfs receive` killed: the chunks that landed stay, and the next run sends only the rest."""
    server, fs = backup_server
    dest, snaps = fs / "web1" / "data", src / "snapshot"
    url = server.url(dest)
    with start_cli(*args(server, "--limit-rate", "4M"), src, url) as cli:
        folder = wait_for("a staging folder", lambda: (staging_folders(dest) or [None])[0], timeout=60)
        wait_for("6 landed chunks", lambda: landed_chunks(folder) >= 6, timeout=60, interval=0.01)
        os.kill(cut(cli, server).pid, signal.SIGKILL)
        done = cli.finish()
    assert done.code != 0, done.explain()
    staged = landed_chunks(folder)
    stream_size = json.loads((folder / "manifest.json").read_text())["stream_size"]
    # A killed receive does not stop the chunks from landing: the whole stream may be staged.
    assert 6 <= staged <= -(-stream_size // CHUNK)

    run = ok(*args(server, "--no-snapshot"), src, url)
    first = snapshot_names(snaps)[0]
    transfer = destination(run.result, url)["transfers"][0]
    assert transfer["resumed_bytes"] == min(staged * CHUNK, stream_size)
    # The rest of the stream (framed: 49 bytes a chunk), at most one chunk more.
    assert transfer["bytes"] <= stream_size - staged * CHUNK + CHUNK + 64 * 49, (transfer, stream_size, staged)
    assert_backup(dest, snaps / first)
    assert file_hashes(dest / first) == file_hashes(snaps / first)
    assert not (dest / STAGING).exists()


def logging_btrfs(tmp_path: Path) -> tuple:
    """A `btrfs` first in PATH that logs each of its command lines here, then runs the real one:
    (the environment for the CLI, the log)."""
    folder, log = tmp_path / "logged-bin", tmp_path / "btrfs.log"
    folder.mkdir()
    shim = folder / "btrfs"
    shim.write_text("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %s\nexec %s \"$@\"\n" % (log, shutil.which("btrfs")))
    shim.chmod(0o755)
    return {"PATH": "%s:%s" % (folder, os.environ["PATH"])}, log


def local_estimates(log: Path) -> list:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith("send") and "--no-data" in line.split()]


def test_auto_sends_a_small_full_stream_without_estimating_it_first(src, dst, sshd, tmp_path):
    """With `--resumable auto` (the default), a full send whose files bound it below the threshold
    starts at once: no `--no-data` pass first, on a first run (sized by its sample's walk) and to
    a new destination later (its snapshot walked). A subvolume whose files look large (a sparse
    2 GiB file) is estimated first, and the estimate decides: not staged."""
    env, log = logging_btrfs(tmp_path)
    first_dest, second_dest = dst / "first", dst / "second"
    first_dest.mkdir()
    second_dest.mkdir()
    run = ok(*ssh_args(sshd), src, sshd.url(first_dest), env=env)
    name = run.result["snapshot"]["name"]
    assert "%s: a full stream of at most" % name in run.stderr and "not estimated first" in run.stderr
    assert local_estimates(log) == [], log.read_text()
    assert "resumable transfer" not in run.stderr
    snapshot = src / "snapshot" / name
    assert_backup(first_dest, snapshot)
    assert file_hashes(first_dest / name) == file_hashes(snapshot)

    again = ok(*ssh_args(sshd), "--no-snapshot", src, sshd.url(second_dest), env=env)
    assert sent(again.result, sshd.url(second_dest)) == [(name, "full", None)]
    assert "not estimated first" in again.stderr and local_estimates(log) == []
    assert_backup(second_dest, snapshot)
    assert file_hashes(second_dest / name) == file_hashes(snapshot)

    with open(src / "sparse", "wb") as handle:
        handle.truncate(2 << 30)
    (dst / "third").mkdir()
    third = ok(*ssh_args(sshd), "-f", src.parent / "sparse-snaps", src, sshd.url(dst / "third"), env=env)
    assert "not estimated first" not in third.stderr
    assert len(local_estimates(log)) == 1, log.read_text()
    assert "resumable transfer" not in third.stderr  # the estimate knows the hole is no data
    sparse_name = third.result["snapshot"]["name"]
    assert os.path.getsize(dst / "third" / sparse_name / "sparse") == 2 << 30
    assert_no_partial(dst / "third")
