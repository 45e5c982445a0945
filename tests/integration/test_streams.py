"""Streams on real btrfs and real ssh: zstd where a stream crosses ssh (push, pull, ssh to ssh),
one send fanned out to many destinations, the rate limit, the buffer, progress lines.

What a user checks: the files arrived (checksums), the chain stayed incremental, the stream
was compressed (its compressed size is reported and smaller), one failing destination did not
stop the others and catches up incrementally, nothing partial was kept.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import CLI, LOCK_FILE, destination, ok, run_cli, sent, ssh_args, subvolumes
from faults import descendants, fill_up, find_process, start_cli
from support.btrfs_loop import run
from support.sshd import Sshd
from support.trees import MiB, assert_same_tree, modify_tree, write_file, write_mixed_tree, write_text_files

FS_SIZE = "600M"
@pytest.fixture
def source(make_fs, subvolume):
    src = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_text_files(src / "text", 40, 256 * 1024, seed=1)
    write_mixed_tree(src / "mixed", n_small=60, small_size=2048, large_files=[2 * MiB], seed=2)
    return src


def only_snapshot(src: Path) -> str:
    names = sorted(subvolumes(src / "snapshot"))
    return names[-1]


def assert_backup(src: Path, folder: Path, name: str) -> None:
    backup = subvolumes(folder)[name]
    assert backup.complete_backup and backup.received_uuid == subvolumes(src / "snapshot")[name].uuid
    assert_same_tree(src / "snapshot" / name, folder / name)


def transfer(result, dest_id, index=-1) -> dict:
    return destination(result, dest_id)["transfers"][index]


# -- compression across ssh --------------------------------------------------------------------


def test_a_push_over_ssh_is_compressed_and_arrives_whole(source, make_fs, sshd):
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    url = sshd.url(remote)
    first = ok(*ssh_args(sshd), source, url).result
    name = only_snapshot(source)
    full = transfer(first, url)
    assert full["mode"] == "full" and full["status"] == "done"
    # Text compresses: the link carried far less than the stream.
    assert full["compressed_bytes"] < full["bytes"] * 0.7, full
    assert_backup(source, remote, name)

    modify_tree(source / "text", n_bytes=200000, seed=5, add_files=2, remove_files=1)
    second = ok(*ssh_args(sshd), source, url).result
    new = only_snapshot(source)
    assert sent(second, url) == [(new, "incremental", name)]
    assert "compressed_bytes" in transfer(second, url)
    assert_backup(source, remote, new)


def test_compress_none_sends_the_plain_stream(source, make_fs, sshd):
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    url = sshd.url(remote)
    done = ok(*ssh_args(sshd), "--compress", "none", source, url).result
    assert "compressed_bytes" not in transfer(done, url)
    assert_backup(source, remote, only_snapshot(source))


def test_auto_leaves_incompressible_data_plain(make_fs, subvolume, sshd):
    # Media-like data: compressing it would only cost CPU at both ends (a slower run on a fast
    # link). auto samples it and sends it plain; zstd asked for by name still compresses.
    src = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_mixed_tree(src / "media", n_small=50, small_size=4096, large_files=[4 * MiB, 4 * MiB], seed=12)
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    url = sshd.url(remote)
    done = run_cli(*ssh_args(sshd), "-v", "info", src, url)
    assert done.code == 0, done.explain()
    assert "compressed_bytes" not in transfer(done.result, url)
    assert "the snapshot's data does not compress" in done.stderr, done.stderr
    assert_backup(src, remote, only_snapshot(src))
    modify_tree(src / "media", n_bytes=4096, seed=13)
    time.sleep(1.05)
    forced = ok(*ssh_args(sshd), "--compress", "zstd", src, url).result
    assert "compressed_bytes" in transfer(forced, url)
    assert_backup(src, remote, only_snapshot(src))


def test_a_pull_to_two_destinations_reads_the_source_once(make_fs, subvolume, sshd):
    # The source is reached over ssh: it sends once, compressed; this host decompresses once
    # and feeds both local destinations.
    src = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_text_files(src / "text", 30, 256 * 1024, seed=3)
    one, two = make_fs("one", size=FS_SIZE) / "b", make_fs("two", size=FS_SIZE) / "b"
    one.mkdir()
    two.mkdir()
    done = ok(*ssh_args(sshd), sshd.url(src), one, two).result
    name = only_snapshot(src)
    for folder, other in ((one, two), (two, one)):
        record = transfer(done, folder)
        assert record["status"] == "done" and record["shared_with"] == [str(other)]
        # What crossed the link, as this host read it (not the ssh client's own few bytes).
        assert record["compressed"] and 0.05 * record["bytes"] < record["compressed_bytes"] < record["bytes"] * 0.7, record
        assert_backup(src, folder, name)


def test_ssh_to_ssh_relay_is_compressed_end_to_end(make_fs, subvolume, sshd, sshd2):
    src = subvolume(make_fs("src", size=FS_SIZE) / "data")
    write_text_files(src / "text", 20, 256 * 1024, seed=4)
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    done = ok(*ssh_args(sshd, sshd2), sshd.url(src), sshd2.url(remote)).result
    record = transfer(done, sshd2.url(remote))
    # Not decompressed on the way: the plain size is unknown. The receive at the far host started
    # before the stream, so this run carries the stream into it and counts what crossed, well below
    # the 5 MiB of text (not the ssh clients' own few bytes).
    assert record["status"] == "done" and record["compressed"] is True and record["bytes"] is None, record
    assert 0.05 * 20 * 256 * 1024 < record["compressed_bytes"] < 0.5 * 20 * 256 * 1024, record
    assert_backup(src, remote, only_snapshot(src))


@pytest.fixture(scope="module")
def sshd_without_zstd(tmp_path_factory):
    """A host whose commands find everything but zstd."""
    bin_dir = tmp_path_factory.mktemp("no-zstd-bin")
    for tool in ("btrfs", "sh", "cat", "printf", "readlink", "test", "mkdir", "sudo"):
        for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            if os.path.exists(os.path.join(folder, tool)):
                os.symlink(os.path.join(folder, tool), bin_dir / tool)
                break
    with Sshd(host="127.0.0.4", extra_config=["SetEnv PATH=%s" % bin_dir]) as server:
        yield server


def test_a_host_without_zstd_gets_the_plain_stream(source, make_fs, sshd_without_zstd):
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    url = sshd_without_zstd.url(remote)
    done = run_cli(*ssh_args(sshd_without_zstd), "-v", "info", source, url)
    assert done.code == 0, done.explain()
    assert "compressed_bytes" not in transfer(done.result, url)
    assert done.stderr.count("no zstd at %s" % url) == 1, done.stderr
    assert_backup(source, remote, only_snapshot(source))
    # Asked for by name, the fallback is a warning, and the backup still arrives.
    modify_tree(source / "text", n_bytes=4096, seed=6)
    again = run_cli(*ssh_args(sshd_without_zstd), "--compress", "zstd:5", source, url)
    assert again.code == 0 and "WARNING: %s: no zstd" % url in again.stderr, again.explain()


def test_the_decompressor_killed_mid_stream_is_a_failed_transfer(source, make_fs, sshd):
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    remote.mkdir()
    url = sshd.url(remote)
    ok(*ssh_args(sshd), source, url)
    first = only_snapshot(source)
    write_text_files(source / "more", 40, 512 * 1024, seed=7)
    time.sleep(1.05)
    # Slowed down so that the remote `zstd -d` can be caught while it runs.
    with start_cli(*ssh_args(sshd), "--limit-rate", "1M", source, url) as cli:
        zstd = find_process("the remote zstd -d", sshd.pid,
                            lambda p: p.comm == "zstd" and "-d" in p.argv, timeout=60)
        time.sleep(0.5)
        os.kill(zstd.pid, signal.SIGKILL)
        done = cli.finish()
    assert done.code != 0 and done.result is not None
    second = only_snapshot(source)
    record = transfer(done.result, url)
    assert record["status"] == "failed" and record["snapshot"] == second, record
    # Nothing partial kept (rule 2), the lock kept for the next run (rule 3).
    assert second not in subvolumes(remote)
    locks = (source / "snapshot" / LOCK_FILE).read_text()
    assert second in locks and url in locks
    # The next run catches up, incrementally from the first backup.
    retry = ok(*ssh_args(sshd), "--no-snapshot", source, url).result
    assert sent(retry, url) == [(second, "incremental", first)]
    assert_backup(source, remote, second)
    assert second not in (source / "snapshot" / LOCK_FILE).read_text() if \
        (source / "snapshot" / LOCK_FILE).exists() else True


# -- one send, many destinations ---------------------------------------------------------------


def test_one_send_feeds_local_and_ssh_destinations(source, make_fs, sshd):
    local_a, local_b = make_fs("a", size=FS_SIZE) / "b", make_fs("b", size=FS_SIZE) / "b"
    remote = make_fs("remote", size=FS_SIZE) / "backups"
    for folder in (local_a, local_b, remote):
        folder.mkdir()
    url = sshd.url(remote)
    done = ok(*ssh_args(sshd), source, local_a, local_b, url).result
    name = only_snapshot(source)
    for folder in (local_a, local_b):
        assert_backup(source, folder, name)
        assert set(transfer(done, folder)["shared_with"]) == {str(local_a), str(local_b), url} - {str(folder)}
    assert_backup(source, remote, name)
    assert "compressed_bytes" in transfer(done, url) and "compressed_bytes" not in transfer(done, local_a)
    # One stream: every destination reports the same stream size.
    assert len({transfer(done, d)["bytes"] for d in (str(local_a), str(local_b), url)}) == 1


def test_a_full_destination_does_not_stop_the_others(source, make_fs):
    folders = [make_fs("d%d" % i, size="300M" if i == 2 else FS_SIZE) / "b" for i in range(3)]
    for folder in folders:
        folder.mkdir()
    ok(source, *folders)
    first = only_snapshot(source)
    write_file(source / "big.bin", 40 * MiB, seed=9)
    time.sleep(1.05)
    ballast = fill_up(folders[2].parent, leave_free=8 * MiB)
    done = run_cli(source, *folders)
    assert done.code != 0 and done.result is not None, done.explain()
    second = only_snapshot(source)
    full = destination(done.result, folders[2])
    assert full["status"] == "failed" and full["transfers"][-1]["status"] == "failed"
    assert second not in subvolumes(folders[2])  # its partial receive is gone (rule 2)
    for folder in folders[:2]:
        assert destination(done.result, folder)["status"] == "ok"
        assert sent(done.result, folder) == [(second, "incremental", first)]
        assert_backup(source, folder, second)
    # Space again: the next run catches the third one up, incrementally.
    ballast.unlink()
    run(["btrfs", "filesystem", "sync", folders[2].parent])
    retry = ok("--no-snapshot", source, *folders).result
    assert sent(retry, folders[2]) == [(second, "incremental", first)]
    assert sent(retry, folders[0]) == []
    assert_backup(source, folders[2], second)


def test_destinations_with_different_parents_get_separate_sends(source, make_fs):
    behind, ahead = make_fs("behind", size=FS_SIZE) / "b", make_fs("ahead", size=FS_SIZE) / "b"
    behind.mkdir()
    ahead.mkdir()
    ok(source, ahead)
    first = only_snapshot(source)
    modify_tree(source / "text", n_bytes=4096, seed=8)
    time.sleep(1.05)
    done = ok(source, behind, ahead).result
    second = only_snapshot(source)
    # `behind` needs the first snapshot in full, then the second from it: the second is shared.
    assert sent(done, behind) == [(first, "full", None), (second, "incremental", first)]
    assert sent(done, ahead) == [(second, "incremental", first)]
    assert "shared_with" not in transfer(done, behind, 0)
    assert transfer(done, behind, 1)["shared_with"] == [str(ahead)]
    for folder in (behind, ahead):
        assert_backup(source, folder, second)


# -- rate limit, buffer, progress --------------------------------------------------------------


def test_rate_limit_and_progress_lines_of_a_long_transfer(source, make_fs):
    target = make_fs("target", size=FS_SIZE) / "b"
    target.mkdir()
    write_file(source / "payload.bin", 40 * MiB, seed=10)
    # 40 MiB at 1 MiB/s: about 40 s, so at least one progress line (every 30 s) with an ETA.
    done = run_cli("-v", "info", "--limit-rate", "1M", "--buffer", "4M", source, target, timeout=240)
    assert done.code == 0, done.explain()
    record = transfer(done.result, target)
    rate = record["bytes"] / record["seconds"]
    assert abs(rate - MiB) / MiB < 0.10, (rate, record)
    lines = [line for line in done.stderr.splitlines() if "MiB/s" in line and "sending" in line]
    assert lines, done.stderr
    assert " of about " in lines[0] and " left" in lines[0], lines
    assert_backup(source, target, only_snapshot(source))


@pytest.mark.parametrize("args, message", [
    (["--compress", "gzip"], "compress must be auto, none, zstd or zstd:LEVEL"),
    (["--compress", "zstd:99"], "compress must be"),
    (["--limit-rate", "fast"], "limit_rate must be a positive size"),
    (["--limit-rate=-5M"], "limit_rate must be a positive size"),
    (["--buffer", "0"], "buffer must be a positive size"),
])
def test_bad_stream_settings_change_nothing(source, make_fs, args, message):
    target = make_fs("target", size=FS_SIZE) / "b"
    target.mkdir()
    done = run_cli(*args, source, target)
    assert done.code == 2 and message in (done.stderr + str(done.result)), done.explain()
    assert not (source / "snapshot").exists() and subvolumes(target) == {}


# -- send protocol 2 ---------------------------------------------------------------------------


def test_protocol_2_sends_compressed_extents_as_they_are(make_fs, subvolume):
    # On a filesystem that compresses, protocol 2 (auto) carries the compressed extents: the
    # stream is far smaller than protocol 1's, and the files arrive the same.
    src = subvolume(make_fs("src", size=FS_SIZE, mount_options=["compress-force=zstd"]) / "data")
    write_text_files(src / "text", 40, 256 * 1024, seed=11)
    run(["btrfs", "filesystem", "sync", src])
    v2, v1 = make_fs("v2", size=FS_SIZE) / "b", make_fs("v1", size=FS_SIZE) / "b"
    v2.mkdir()
    v1.mkdir()
    auto = ok(src, v2).result
    name = only_snapshot(src)
    plain = ok("--no-snapshot", "--send-protocol", "1", src, v1).result
    assert sent(plain, v1) == [(name, "full", None)]
    assert transfer(auto, v2)["bytes"] < 0.5 * transfer(plain, v1)["bytes"], (transfer(auto, v2), transfer(plain, v1))
    for folder in (v2, v1):
        assert_backup(src, folder, name)


def test_at_a_terminal_a_progress_bar_with_an_eta(source, make_fs):
    # `script` gives the run a terminal, as a user at a shell has: pv draws its bar, sized by the
    # estimate of the stream (btrfs send --no-data), so it shows a percentage and an ETA.
    target = make_fs("target", size=FS_SIZE) / "b"
    target.mkdir()
    write_file(source / "payload.bin", 30 * MiB, seed=14)
    command = " ".join(shlex.quote(str(a)) for a in (CLI, "--limit-rate", "10M", source, target))
    shown = subprocess.run(["script", "-q", "-e", "-c", command, "/dev/null"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
    out = shown.stdout.decode("utf-8", "replace")
    assert shown.returncode == 0, out
    bars = [part for part in out.replace("\r", "\n").splitlines() if "ETA" in part]
    assert bars and "%" in bars[0], out
    assert_backup(source, target, only_snapshot(source))
