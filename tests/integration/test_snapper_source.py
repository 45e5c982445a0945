"""A job whose snapshots snapper takes (--source-snapshots snapper:CONFIG): real snapper on a loop btrfs,
sent to a local folder and over real ssh; checksums, incremental chains, and snapper deleting snapshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from cli_helpers import (
    CLI, assert_no_partial, destination, live_locks, ok, run_raw, sent, show, ssh_args, subvolumes, write_locks_03,
)
from support.sshd import Sshd
from support.trees import assert_same_tree, modify_tree


@pytest.fixture
def snapper(src):
    """`snapper(*args)` runs snapper on a configuration of `src` made for the test (deleted after it,
    with its snapshots); `snapper.config` is its name."""
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if shutil.which("snapper") is None:
        give_up("snapper is not installed")
    config = "btrfsbackuptest" + uuid.uuid4().hex[:8]

    def run(*args):
        done = subprocess.run(["snapper", "--no-dbus", "-c", config] + list(args), capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    run("create-config", str(src))
    run.config = config
    try:
        yield run
    finally:
        subprocess.run(["snapper", "--no-dbus", "-c", config, "delete-config"], capture_output=True)
        if os.path.exists(f"/etc/snapper/configs/{config}"):  # the config is not left on the machine
            os.unlink(f"/etc/snapper/configs/{config}")


def numbered(snapper) -> dict:
    """snapper's number -> the path of its snapshot."""
    listed = json.loads(snapper("--jsonout", "list", "--disable-used-space"))[snapper.config]
    return {e["number"]: e for e in listed if e["number"]}


def named(run, dest_id) -> dict:
    """The run's transfers to one destination: snapshot name -> (mode, parent)."""
    return {name: (mode, parent) for name, mode, parent in sent(run.result, dest_id)}


def test_snappers_snapshots_full_then_incremental_to_a_local_folder_and_over_ssh(src, dst, sshd, snapper, tmp_path):
    local, remote = dst / "local", dst / "remote"
    url = sshd.url(remote)
    job = ssh_args(sshd) + ["--source-snapshots", f"snapper:{snapper.config}", "--num-snapshots", "1", src,
                            local, url]
    snaps = src / ".snapshots"

    snapper("create", "--description", "first")
    first = ok(*job)
    (one,) = named(first, local)
    assert one.endswith("_1") and named(first, url) == {one: ("full", None)}
    assert first.result["snapshot"]["path"] == str(snaps / "1" / "snapshot")
    assert "num_snapshots and preserve_snapshots are ignored" in first.stderr

    modify_tree(src / "small", 32 * 1024, seed=2, add_files=1, remove_files=1)
    snapper("create", "--description", "second")
    pre = snapper("create", "--type", "pre", "--print-number").strip()
    snapper("create", "--type", "post", "--pre-number", pre)
    subprocess.run(["btrfs", "property", "set", "-f", str(snaps / "3" / "snapshot"), "ro", "false"], check=True)
    planned = ok("--check", *job)
    sends = sorted(line for line in planned.result["plan"] if line.startswith("send "))
    assert len(sends) == 4 and all("(incremental from " in line for line in sends), planned.result["plan"]
    assert sorted({line.split()[1].rsplit("_", 1)[1] for line in sends}) == ["2", "4"]
    assert sorted(subvolumes(local)) == [one]  # check mode changed nothing
    second = ok(*job)
    two, four = sorted(named(second, local), key=lambda n: int(n.rsplit("_", 1)[1]))
    assert two.endswith("_2") and four.endswith("_4")
    for dest in (local, url):
        assert named(second, dest) == {two: ("incremental", one), four: ("incremental", two)}
    assert f"{snaps / '3' / 'snapshot'} is writable, so it is not used as a snapshot" in second.result["warnings"]
    assert sorted(numbered(snapper)) == [1, 2, 3, 4]  # snapper's retention, not the job's -N 1

    for dest in (local, remote):
        assert sorted(subvolumes(dest)) == [one, two, four]
        assert_no_partial(dest)
        for name, number in ((one, 1), (two, 2), (four, 4)):
            backup = subvolumes(dest)[name]
            assert backup.received_uuid == show(snaps / str(number) / "snapshot").uuid  # rule 1
            assert_same_tree(snaps / str(number) / "snapshot", dest / name)
        # Received on top of two's backup (receive finds it by UUID anywhere on the filesystem: here
        # both destinations share one).
        assert subvolumes(dest)[four].parent_uuid in {subvolumes(d)[two].uuid for d in (local, remote)}

    # A run cut between the receive and the rename leaves the backup as `snapshot`: named, not resent.
    subprocess.run(["mv", "-T", str(local / four), str(local / "snapshot")], check=True)
    again = ok(*job)
    assert named(again, local) == {} and named(again, url) == {}
    assert sorted(subvolumes(local)) == [one, two, four]

    # snapper deletes the newest common snapshot: the next one goes from the newest both still have.
    # (The lock file, in snapper's folder, names it as the parent of a transfer cut short.)
    write_locks_03(snaps, {four: {"locks": [], "parent_locks": [str(local)]}})
    snapper("delete", "4")
    number = snapper("create", "--description", "fifth", "--print-number").strip()  # snapper reuses 4
    fifth = ok(*job)
    (five,) = named(fifth, local)
    assert five.endswith("_" + number) and five > four
    assert f"snapper deleted {four}, which the lock file keeps (parent of an unfinished transfer to {local})" \
        in " ".join(fifth.result["warnings"])
    assert live_locks(snaps) == {}
    for dest in (local, url):
        assert named(fifth, dest) == {five: ("incremental", two)}

    # ... and every one a destination's backups came from: a full send, saying why.
    snapper("delete", "1", "2", "3", number)
    last = snapper("create", "--description", "sixth", "--print-number").strip()
    sixth = ok(*job)
    (six,) = named(sixth, local)
    for dest in (local, url):
        assert named(sixth, dest) == {six: ("full", None)}
        assert destination(sixth.result, dest)["status"] == "ok"
    assert any("snapper's cleanup deleted them" in w for w in sixth.result["warnings"])
    for dest in (local, remote):
        assert_same_tree(snaps / last / "snapshot", dest / six)
        assert_no_partial(dest)

    # `status` finds the job's last run where its runs record it (its snapshot folder is snapper's).
    config_dir = tmp_path / "jobs"
    config_dir.mkdir()
    (config_dir / "data.conf").write_text("\n".join(str(a) for a in job) + "\n")
    status = subprocess.run([str(CLI), "status", "--config-dir", str(config_dir), "--json"], capture_output=True,
                            text=True, timeout=60)
    (found,) = json.loads(status.stdout)["jobs"]
    assert found["snapshot_folder"] == str(snaps) and found["status"] == "OK", found

    # Something else under the name a receive arrives with fails that destination only, saying so.
    subprocess.run(["btrfs", "subvolume", "create", str(local / "snapshot")], check=True, capture_output=True)
    snapper("create", "--description", "seventh")
    blocked = run_raw("--json", *job)
    assert blocked.returncode == 1
    result = json.loads(blocked.stdout)
    assert destination(result, local)["status"] == "failed" and destination(result, url)["status"] == "ok"
    assert f"{local / 'snapshot'} at {local} is in the way of the next receive" in blocked.stderr
    assert (local / "snapshot").is_dir()  # not ours: left alone


def test_a_snapper_job_with_another_configurations_subvolume_or_none_changes_nothing(src, dst, snapper, subvolume):
    other = subvolume(src.parent / "other")
    done = run_raw("--json", "--source-snapshots", f"snapper:{snapper.config}", other, dst / "b")
    assert done.returncode != 0
    assert f"configuration {snapper.config} is of {src}, not of the job's source {other}" in done.stderr
    missing = run_raw("--json", "--source-snapshots", "snapper:nosuchconfig", src, dst / "b")
    assert missing.returncode != 0 and "snapper cannot list configuration nosuchconfig" in missing.stderr
    assert not (dst / "b").exists() or not subvolumes(dst / "b")


def test_a_snapper_job_with_a_quiescing_hook_is_refused_before_anything_is_sent(src, dst, snapper, tmp_path):
    ran = tmp_path / "hook-ran"
    snapper("create")
    done = run_raw("--json", "--source-snapshots", f"snapper:{snapper.config}",
                   "--before-snapshot", f"touch {ran}", src, dst / "b")
    assert done.returncode != 0
    assert (f"before_snapshot cannot run: snapper takes this job's snapshots (configuration {snapper.config})"
            in done.stderr)
    assert not ran.exists()
    assert not (dst / "b").exists() or not subvolumes(dst / "b")


def test_a_backup_server_is_refused_before_anything_is_sent_and_the_others_get_their_backups(src, dst, make_fs,
                                                                                             snapper):
    server_fs = make_fs("server")
    (server_fs / "web1").mkdir()
    with Sshd(host="127.0.0.4") as server:
        # Its only key runs `serve --root <fs>/web1`, as the role installs it.
        key = (server.workdir / "id_ed25519.pub").read_text().strip()
        forced = f"{CLI} serve --root {server_fs / 'web1'}"
        (server.workdir / "authorized_keys").write_text(f'restrict,command="{forced}" {key}\n')
        url = server.url(server_fs / "web1" / "data")
        snapper("create")
        done = run_raw("--json", *ssh_args(server), "--source-snapshots", f"snapper:{snapper.config}", src,
                       dst / "local", url)
    assert done.returncode == 1, done.stderr
    assert "is a backup server (btrfs-backup serve), which cannot take snapper's snapshots yet" in done.stderr
    (name,) = subvolumes(dst / "local")
    assert name.endswith("_1")
    assert not (server_fs / "web1" / "data").exists() or not subvolumes(server_fs / "web1" / "data")
