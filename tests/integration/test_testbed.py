"""Prove the test bed itself works: real btrfs loop filesystems, send/receive, real ssh, tree comparison."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings

import pytest

from support.btrfs_loop import (
    BtrfsPool,
    fs_type,
    is_mounted,
    loop_devices_of,
    pipeline,
    run,
)
from support.trees import MiB, assert_same_tree, checksum_tree, modify_tree, write_mixed_tree


def _received_uuid(subvol) -> str:
    for line in run(["btrfs", "subvolume", "show", subvol]).stdout.splitlines():
        if line.strip().startswith("Received UUID:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Received UUID line for {subvol}")


def _loop_lines_mentioning(text: str):
    out = run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"]).stdout
    return [line for line in out.splitlines() if text in line]


# -- btrfs -------------------------------------------------------------------


def test_filesystem_is_btrfs_on_a_loop_device(make_fs, btrfs_pool):
    fs = make_fs("src", size="256M")
    assert fs_type(fs) == "btrfs"
    assert is_mounted(fs)
    device = btrfs_pool.loop_device_of(fs)
    assert device.startswith("/dev/loop")
    assert loop_devices_of(btrfs_pool.image_of(fs)) == [device]
    # Images live in the pool's own tmpfs, never at a fixed path.
    assert btrfs_pool.image_of(fs).parent == btrfs_pool.tmpfs
    assert fs_type(btrfs_pool.tmpfs) == "tmpfs"


def test_make_fs_unmounts_after_release(make_fs, btrfs_pool):
    fs = make_fs("short-lived", size="200M")
    image = btrfs_pool.image_of(fs)
    btrfs_pool.release(fs)
    assert not fs.exists()
    assert not image.exists()
    assert not _loop_lines_mentioning(str(image))


def test_local_send_receive_preserves_tree(make_fs, subvolume, snapshot):
    src, dst = make_fs("src"), make_fs("dst")
    vol = subvolume(src / "data")
    write_mixed_tree(vol, n_small=300, large_files=[3 * MiB + 123], seed=1)
    snap = snapshot(vol, src / "data.1")

    pipeline(["btrfs", "send", "-q", snap], ["btrfs", "receive", dst])

    assert_same_tree(snap, dst / "data.1")
    assert _received_uuid(dst / "data.1") not in ("", "-")


# -- ssh ---------------------------------------------------------------------


def test_ssh_runs_btrfs_remotely(sshd):
    result = sshd.run("btrfs", "--version")
    assert "btrfs-progs" in result.stdout
    assert sshd.url("/srv/backups").startswith(f"ssh://root@127.0.0.2:{sshd.port}/srv/backups")


def test_two_independent_sshd_hosts(sshd, sshd2):
    assert (sshd.host, sshd2.host) == ("127.0.0.2", "127.0.0.3")
    assert sshd2.run("true").returncode == 0
    # Each "host" trusts only its own client key.
    foreign = sshd2.ssh_argv("true")
    foreign[foreign.index(f"IdentityFile={sshd2.identity_file}")] = f"IdentityFile={sshd.identity_file}"
    assert subprocess.run(foreign, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0


def test_send_receive_over_ssh_full_then_incremental(make_fs, subvolume, snapshot, sshd):
    src, dst = make_fs("src"), make_fs("dst")
    vol = subvolume(src / "data")
    write_mixed_tree(vol, n_small=500, large_files=[5 * MiB], seed=2)
    snap1 = snapshot(vol, src / "data.1")
    pipeline(["btrfs", "send", "-q", snap1], sshd.ssh_argv("btrfs", "receive", str(dst)))
    assert_same_tree(snap1, dst / "data.1")

    changes = modify_tree(vol, 512 * 1024, seed=3)
    assert changes.modified and changes.added and changes.removed
    snap2 = snapshot(vol, src / "data.2")
    pipeline(["btrfs", "send", "-q", "-p", snap1, snap2], sshd.ssh_argv("btrfs", "receive", str(dst)))
    assert_same_tree(snap2, dst / "data.2")
    assert checksum_tree(dst / "data.1") != checksum_tree(dst / "data.2")


# -- tree comparison ---------------------------------------------------------


def _flip_byte(root):
    path = root / "small" / "d000" / "f000007.dat"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "small/d000/f000007.dat"


def _chmod(root):
    os.chmod(root / "special" / "script.sh", 0o644)
    return "special/script.sh"


def _retarget_symlink(root):
    link = root / "special" / "link-relative"
    link.unlink()
    os.symlink("nested/a/b/c/other.txt", link)
    return "special/link-relative"


def _add_empty_dir(root):
    (root / "special" / "another-empty-dir").mkdir()
    return "special/another-empty-dir"


def _remove_empty_file(root):
    (root / "special" / "empty-file").unlink()
    return "special/empty-file"


@pytest.mark.parametrize(
    "mutate", [_flip_byte, _chmod, _retarget_symlink, _add_empty_dir, _remove_empty_file]
)
def test_assert_same_tree_detects_changes(tmp_path, mutate):
    a, b = tmp_path / "a", tmp_path / "b"
    write_mixed_tree(a, n_small=20, small_size=1000, large_files=[MiB + 1], seed=4)
    shutil.copytree(a, b, symlinks=True)
    assert_same_tree(a, b)
    before = checksum_tree(b)

    changed = mutate(b)

    with pytest.raises(AssertionError, match=changed):
        assert_same_tree(a, b)
    with pytest.raises(AssertionError, match=changed):
        assert_same_tree(before, b)


def test_write_mixed_tree_is_deterministic(tmp_path):
    write_mixed_tree(tmp_path / "a", n_small=50, large_files=[2 * MiB + 5], seed=9)
    write_mixed_tree(tmp_path / "b", n_small=50, large_files=[2 * MiB + 5], seed=9)
    write_mixed_tree(tmp_path / "c", n_small=50, large_files=[2 * MiB + 5], seed=10)
    assert_same_tree(tmp_path / "a", tmp_path / "b")
    with pytest.raises(AssertionError):
        assert_same_tree(tmp_path / "a", tmp_path / "c")


# -- pool cleanup ------------------------------------------------------------


def test_pool_cleans_up_when_the_body_fails(require_btrfs):
    with pytest.raises(ZeroDivisionError):
        with BtrfsPool(tmpfs_size="1G") as pool:
            fs = pool.filesystem("failing", size="200M")
            image, tmpfs = pool.image_of(fs), pool.tmpfs
            1 / 0
    assert not is_mounted(fs) and not fs.exists()
    assert not is_mounted(tmpfs) and not tmpfs.exists()
    assert not _loop_lines_mentioning(str(image))


def test_pool_retries_while_a_process_briefly_holds_the_mount(require_btrfs):
    with BtrfsPool(tmpfs_size="1G") as pool:
        fs = pool.filesystem("briefly-busy", size="200M")
        holder = subprocess.Popen(["sleep", "0.5"], cwd=fs)
        try:
            with warnings.catch_warnings():
                # A lazy unmount would warn; here plain retries must suffice.
                warnings.simplefilter("error", RuntimeWarning)
                assert pool.close() == []
        finally:
            holder.wait()
    assert not fs.exists()


def test_pool_lazily_unmounts_a_mount_that_stays_busy(require_btrfs):
    with BtrfsPool(tmpfs_size="1G", umount_retries=3, retry_delay=0.1) as pool:
        fs = pool.filesystem("stays-busy", size="200M")
        device = pool.loop_device_of(fs)
        holder = subprocess.Popen(["sleep", "60"], cwd=fs)
        try:
            with pytest.warns(RuntimeWarning, match="lazily unmounted"):
                assert pool.close() == []
            assert not is_mounted(fs) and not fs.exists()
        finally:
            # Our own sleep, by PID: once it exits the kernel releases the mount and the loop device.
            holder.kill()
            holder.wait()
    deadline = time.monotonic() + 10
    while [line for line in _loop_lines_mentioning(device + " ") if "stays-busy" in line]:
        assert time.monotonic() < deadline, f"{device} still attached after its holder exited"
        time.sleep(0.1)
