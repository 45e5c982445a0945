"""`btrfs-backup restore` and `btrfs-backup verify` for real: local and ssh backups, read-only
and writable restores, refusal to overwrite, --force, failed restores that leave nothing
behind, and verify finding real differences between a backup and its snapshot."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal

import pytest

from cli_helpers import (
    TIMESTAMP_RE,
    job_state_folders,
    ok,
    run_raw,
    run_subcommand,
    show,
    ssh_args,
    subvolumes,
)
from faults import (
    MiB,
    fill_up,
    is_btrfs,
    is_ssh_running,
    let_go,
    make_writable,
    midstream,
    set_readonly_keeping_received_uuid,
    staging_leftovers,
    start_cli,
    wait_signal_pending,
)
from support.trees import assert_same_tree, checksum_tree, modify_tree, write_file

FS_SIZE = "1G"  # each filesystem of the shared fixtures (conftest)
SOURCE_TREE = dict(n_small=60, small_size=2048, large_files=[MiB], seed=1)  # the source's data (conftest's src)


@pytest.fixture
def backups(src, make_fs):
    """Two backups of `src` in a local folder: (folder, [one, two]); `two` is incremental."""
    dest = make_fs("dst", size="1G") / "backups"
    one = ok(src, dest).result["snapshot"]["name"]
    modify_tree(src / "small", 64 * 1024, seed=2, add_files=2, remove_files=1)
    two = ok(src, dest).result["snapshot"]["name"]
    return dest, [one, two]


@pytest.fixture
def target_fs(make_fs):
    return make_fs("target", size="1G")


def origin(where, folder, sshd):
    """The backup folder as restore/verify take it, and the ssh flags it needs."""
    if where == "local":
        return str(folder), []
    return sshd.url(folder), ssh_args(sshd)


def restore(*args, **kwargs):
    return run_subcommand("restore", *args, **kwargs)


def verify(*args, **kwargs):
    return run_subcommand("verify", *args, **kwargs)


def assert_nothing_left(folder, expected=()):
    """No staging folder and no subvolume in `folder` except the `expected` names."""
    assert staging_leftovers(folder) == [], os.listdir(folder)
    assert sorted(subvolumes(folder)) == sorted(expected), sorted(subvolumes(folder))


# -- restore -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_restore_the_newest_backup_read_only(src, backups, target_fs, sshd, where):
    folder, (one, two) = backups
    location, flags = origin(where, folder, sshd)
    target = target_fs / "home-restored"

    done = restore(*flags, location, target)

    assert done.code == 0, done.explain()
    assert done.result["snapshot"] == two and done.result["target"] == str(target)
    assert done.result["moved_aside"] is None and done.result["writable"] is False
    restored, backup = show(target), show(folder / two)
    assert restored.readonly and restored.received_uuid == backup.received_uuid
    assert_same_tree(src / "snapshot" / two, target)
    assert_nothing_left(target_fs, ["home-restored"])
    # The target is the backup as received: a rerun recognises it and changes nothing.
    again = restore(*flags, location, target)
    assert again.code == 0 and again.result["changed"] is False, again.explain()
    assert show(target).uuid == restored.uuid


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_restore_a_chosen_backup_writable_ready_to_use(src, backups, target_fs, sshd, where):
    folder, (one, two) = backups
    location, flags = origin(where, folder, sshd)
    target = target_fs / "srv" / "home-new"
    target.parent.mkdir()

    done = restore(*flags, "--snapshot", one, "-W", location, target)

    assert done.code == 0, done.explain()
    assert done.result["snapshot"] == one and done.result["writable"] is True
    assert_same_tree(src / "snapshot" / one, target)
    restored = show(target)
    assert not restored.readonly and restored.received_uuid is None  # a plain subvolume
    (target / "new-file").write_text("in use\n")  # ready to use
    assert_nothing_left(target.parent, ["home-new"])


def test_restore_never_overwrites_an_existing_target(src, backups, target_fs):
    folder, (one, two) = backups
    target = target_fs / "home"
    target.mkdir()
    (target / "precious.txt").write_text("do not touch\n")
    before = checksum_tree(target)

    done = restore(folder, target)

    assert done.code == 1, done.explain()
    assert str(target) in done.stderr and "already exists" in done.stderr, done.stderr
    assert checksum_tree(target) == before
    assert_nothing_left(target_fs)
    assert sorted(os.listdir(target_fs)) == ["home"]


def test_restore_force_renames_the_existing_target_aside(src, backups, target_fs):
    """Restoring again over an earlier restore (a read-only subvolume) with --force: the earlier
    one is renamed to TARGET.before-restore-<timestamp>, untouched."""
    folder, (one, two) = backups
    target = target_fs / "home"
    assert restore("--snapshot", one, folder, target).code == 0
    earlier = show(target)

    done = restore("--force", folder, target)

    assert done.code == 0, done.explain()
    aside = done.result["moved_aside"]
    assert re.fullmatch(re.escape(str(target)) + r"\.before-restore-" + TIMESTAMP_RE, aside), aside
    assert show(aside).uuid == earlier.uuid
    assert_same_tree(src / "snapshot" / one, aside)
    assert_same_tree(src / "snapshot" / two, target)
    assert_nothing_left(target_fs, ["home", os.path.basename(aside)])


def failing_snapshot_env(workdir, target):
    """PATH with a stand-in `btrfs` that refuses `btrfs subvolume snapshot ... TARGET` (as a
    full or read-only-remounted filesystem would) and runs the real btrfs for everything else."""
    bindir = workdir / "failing-snapshot-bin"
    bindir.mkdir()
    (bindir / "btrfs").write_text(
        "#!/bin/sh\n"
        'for last; do :; done\n'
        'if [ "$1 $2" = "subvolume snapshot" ] && [ "$last" = %s ]; then\n'
        '    echo "ERROR: cannot snapshot: No space left on device" >&2\n'
        "    exit 1\n"
        "fi\n"
        'exec %s "$@"\n' % (shlex.quote(str(target)), shlex.quote(shutil.which("btrfs"))))
    (bindir / "btrfs").chmod(0o755)
    return {"PATH": "%s:%s" % (bindir, os.environ["PATH"])}


def test_restore_force_puts_the_old_target_back_when_the_new_one_cannot_be_made(
        src, backups, target_fs, tmp_path):
    folder, (one, two) = backups
    target = target_fs / "home"
    target.mkdir()
    (target / "precious.txt").write_text("do not lose\n")
    before = checksum_tree(target)

    done = restore("--force", folder, target, env=failing_snapshot_env(tmp_path, target))

    assert done.code == 1, done.explain()
    assert "No space left on device" in done.stderr and "%s is unchanged" % target in done.stderr, done.stderr
    assert checksum_tree(target) == before
    assert_nothing_left(target_fs)
    assert sorted(os.listdir(target_fs)) == ["home"]


def test_restore_check_mode_changes_nothing(src, backups, target_fs):
    folder, (one, two) = backups
    (target_fs / "home").mkdir()

    done = restore("--check", "--force", folder, target_fs / "home")

    assert done.code == 0, done.explain()
    assert done.result["changed"] is True and len(done.result["plan"]) == 3, done.result
    assert sorted(os.listdir(target_fs)) == ["home"] and subvolumes(target_fs) == {}


# -- a restore that fails ----------------------------------------------------------------------


@pytest.fixture
def big_backup(src, backups):
    """A third backup that carries 64 MiB more, so that its restore takes a while."""
    folder, names = backups
    write_file(src / "big.bin", 64 * MiB, seed=3)
    names.append(ok(src, folder).result["snapshot"]["name"])
    return folder, names


def test_restore_fails_when_the_target_fills_up(big_backup, target_fs):
    folder, names = big_backup
    fill_up(target_fs, leave_free=16 * MiB)

    done = restore(folder, target_fs / "home")

    assert done.code == 1, done.explain()
    assert "No space left on device" in done.stderr, done.stderr
    assert not (target_fs / "home").exists()
    assert_nothing_left(target_fs)


@pytest.mark.parametrize("how", ["local send killed", "ssh connection killed", "SIGTERM"])
def test_a_restore_broken_mid_stream_leaves_nothing_behind(big_backup, target_fs, sshd, how):
    folder, names = big_backup
    where = "ssh" if how == "ssh connection killed" else "local"
    location, flags = origin(where, folder, sshd)
    target = target_fs / "home"
    (target_fs / "home").mkdir()  # with --force, the old target must survive a failed restore

    with start_cli("restore", *flags, "--force", location, target) as cli:
        receiver = midstream(cli)
        if how == "local send killed":
            os.kill(cli.child("btrfs send", lambda p: is_btrfs(p, "send")).pid, signal.SIGKILL)
        elif how == "ssh connection killed":
            os.kill(cli.child("ssh", is_ssh_running("btrfs send")).pid, signal.SIGKILL)
        else:
            cli.signal(signal.SIGTERM)
            wait_signal_pending(receiver, signal.SIGTERM)
        let_go(receiver)
        done = cli.finish()
        assert cli.strays() == [] and cli.ssh_masters() == []

    assert done.code == (143 if how == "SIGTERM" else 1), done.explain()
    assert sorted(os.listdir(target_fs)) == ["home"] and os.listdir(target) == []
    assert_nothing_left(target_fs)


# -- verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "ssh destination", "ssh source"])
def test_verify_passes_on_good_backups(src, backups, sshd, where):
    folder, (one, two) = backups
    source, dest, flags = str(src), str(folder), []
    if where == "ssh destination":
        dest, flags = sshd.url(folder), ssh_args(sshd)
    elif where == "ssh source":
        source, flags = sshd.url(src), ssh_args(sshd)

    newest = verify(*flags, source, dest)
    first = verify(*flags, "--snapshot", one, source, dest)

    for done, name in ((newest, two), (first, one)):
        assert done.code == 0, done.explain()
        report = done.result
        assert report["ok"] is True and report["problems"] == [], report
        assert report["snapshot"] == name and report["content_differences"] == []
        assert report["received_uuid"] == show(src / "snapshot" / name).uuid
    assert newest.result["incremental_parent"] == one
    assert first.result["incremental_parent"] is None


@pytest.mark.parametrize("folder_flag", ["snapshot/", "./snapshot", "snapshot//"])
@pytest.mark.parametrize("where", ["local source", "ssh source"])
def test_verify_records_in_the_backup_runs_state_whatever_the_snapshot_folders_spelling(
        src, dst, sshd, where, folder_flag):
    """`-f snapshot/` names the same folder as `-f snapshot`: verify's record lands in the state of
    the job whose runs made the backup, not in a state of its own."""
    dest = dst / "backups"
    source, flags = (str(src), []) if where == "local source" else (sshd.url(src), ssh_args(sshd))
    ok(*flags, "-f", folder_flag, source, dest)
    [state_folder] = job_state_folders()

    done = verify(*flags, "-f", folder_flag, source, dest)

    assert done.code == 0, done.explain()
    assert job_state_folders() == [state_folder]
    record = json.loads((state_folder / "last-run.json").read_text())
    assert record["snapshot_folder"] == str(src / "snapshot")
    assert record["destinations"][str(dest)]["verify"]["ok"] is True, record


def tamper(root):
    """Change a backup the ways bit rot or a person would: edit, add, delete, chmod."""
    victim = sorted((root / "small" / "d000").iterdir())[3]
    with open(victim, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff\xfe")
    (root / "small" / "extra.txt").write_text("not in the snapshot\n")
    gone = sorted((root / "small" / "d000").iterdir())[5]
    gone.unlink()
    os.chmod(root / "special" / "script.sh", 0o700)
    return [str(p.relative_to(root)) for p in (victim, root / "small" / "extra.txt", gone,
                                                 root / "special" / "script.sh")]


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_verify_reports_a_backup_whose_content_changed(src, backups, sshd, where):
    """The backup was made writable without clearing its received_uuid (the kernel's flag, as
    btrfs-progs < 5.14 did it), changed, and made read-only again: by UUID it is still the
    snapshot's backup; the content check finds every change, --no-content does not look."""
    folder, (one, two) = backups
    dest, flags = origin(where, folder, sshd)
    set_readonly_keeping_received_uuid(folder / two, False)
    changed = tamper(folder / two)
    set_readonly_keeping_received_uuid(folder / two, True)

    done = verify(*flags, src, dest)
    chain_only = verify(*flags, "--no-content", src, dest)

    assert done.code == 1, done.explain()
    problems = done.result["problems"]
    assert done.result["snapshot"] == two and done.result["ok"] is False
    edited, added, deleted, chmodded = changed
    assert any(p.startswith("differs: %s " % edited) and "sha256" in p for p in problems), problems
    assert "only in backup: %s" % added in problems, problems
    assert "missing in backup: %s" % deleted in problems, problems
    assert any(p.startswith("differs: %s " % chmodded) and "mode=" in p for p in problems), problems
    assert len(problems) == 4, problems
    # Without --json, the same report is written for people.
    human = run_raw("verify", *flags, src, dest)
    assert human.returncode == 1 and "PROBLEM" in human.stderr, human.stderr
    assert all(p in human.stderr for p in problems), human.stderr
    assert chain_only.code == 0, chain_only.explain()
    assert chain_only.result["ok"] is True and "content_differences" not in chain_only.result


def test_verify_reports_a_backup_made_writable_by_hand(src, backups):
    """`btrfs property set -f BACKUP ro false` clears the received_uuid (btrfs-progs >= 5.14):
    the subvolume is no longer the snapshot's backup, and verify says so."""
    folder, (one, two) = backups
    make_writable(folder / two)
    (folder / two / "small" / "new.txt").write_text("changed by hand\n")

    named = verify("--snapshot", two, src, folder)
    newest = verify(src, folder)

    assert named.code == 1, named.explain()
    assert named.result["backup"] is None
    [problem] = named.result["problems"]
    assert show(src / "snapshot" / two).uuid in problem and "exists but is not it" in problem
    # Without --snapshot, verify checks the newest snapshot the destination still holds.
    assert newest.code == 0 and newest.result["snapshot"] == one, newest.explain()
