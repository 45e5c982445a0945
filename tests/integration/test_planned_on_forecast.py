"""A run whose one destination is a plain ssh host that took the job's last run plans on what that
run left there: it takes its snapshot and sends at once, and reads the host's survey beside the
stream (run/folder_forecast.py). The survey still comes (2 remote commands), but the stream no
longer waits for its answer. What the survey then says decides: where the folder holds what was
planned on, the backup stands; where it holds something else, the run plans again on it; where it
cannot take backups, the snapshot is deleted again (rule 7). The receive's own command checks that
the folder is on the filesystem the last run sent to, so a stream never lands on another disk,
least of all the source's own (rule 8). All against a real sshd, whose forced command logs what
the run asked."""

from __future__ import annotations

import json
import subprocess

import pytest

from cli_helpers import (assert_backup, assert_no_partial, destination, live_locks, ok, run_cli, sent,
                         snapshot_names, ssh_args, subvolumes, wait_next_second)
from support.trees import assert_same_tree
from remote_commands import survey_waits_for_a_receive
from test_round_trips import SOMETHING_TO_SEND, assert_commands, pushed_once, small_source

PLANNED = "planned on what this job's last run left there"


def forecast_file(job_state_dir):
    files = list(job_state_dir.rglob("folder-forecast.json"))
    assert len(files) == 1, files
    return files[0]


def test_the_stream_does_not_wait_for_the_survey(logged_sshd, make_fs, subvolume, tmp_path):
    """The second run's survey is held at the host until that run's receive has finished: the
    stream went, whole and incremental, before the survey answered. The receive's command checked
    the folder's filesystem first; the run made 2 remote commands, as before."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=31)
    said = survey_waits_for_a_receive(server, commands.log, tmp_path, until="end", tenths=100)
    (source / "more.txt").write_text("more\n")
    commands.take()
    run = ok(*args)
    taken = commands.take()
    assert said.read_text() == "yes\n", taken
    assert PLANNED in run.stderr, run.explain()
    assert_commands(taken, SOMETHING_TO_SEND, "incremental planned on the last run's record")
    receive = [c for c in taken if "btrfs receive" in c]
    assert len(receive) == 1 and receive[0].startswith('{ test "$(stat -f -c %i -- '), taken
    two = run.result["snapshot"]["name"]
    assert sent(run.result, url) == [(two, "incremental", one)], run.result
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    assert_same_tree(source / "snapshot" / two, dest / two)
    assert live_locks(source / "snapshot") == {}


def test_a_folder_that_holds_more_than_backups_is_surveyed_first(logged_sshd, make_fs, subvolume, tmp_path):
    """A subvolume there that is no complete backup (here somebody's writable one) might be deleted
    or renamed before a send: the run plans on the record only once the survey has confirmed it,
    so its stream waits for the survey (which waits in vain for a receive, 3 s). The other
    subvolume is left alone, and the backup arrives."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=37)
    dest = make_fs("dst") / "backups"
    dest.mkdir()
    subprocess.run(["btrfs", "subvolume", "create", str(dest / "scratch")], check=True, capture_output=True)
    url = server.url(dest)
    args = ssh_args(server) + [source, url]
    one = ok(*args).result["snapshot"]["name"]
    said = survey_waits_for_a_receive(server, commands.log, tmp_path, until="end", tenths=30)
    (source / "more.txt").write_text("more\n")
    run = ok(*args)
    assert said.read_text() == "no\n", run.explain()
    assert PLANNED in run.stderr, run.explain()
    two = run.result["snapshot"]["name"]
    assert sent(run.result, url) == [(two, "incremental", one)], run.result
    assert sorted(subvolumes(dest)) == [one, two, "scratch"]
    assert_backup(dest, source / "snapshot" / two, parent_name=one)


def test_a_run_with_nothing_to_send_keeps_the_record(logged_sshd, make_fs, subvolume, job_state_dir):
    """A run that sends nothing (-S) leaves the record as it found the folder, and the next run
    plans on it again; a record that cannot be read is no record: that run surveys first, and
    writes it anew."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=32)
    ok("-S", *args)
    recorded = json.loads(forecast_file(job_state_dir).read_text())[url]
    assert sorted(recorded["subvolumes"]) == [one] and recorded["filesystem"], recorded
    (source / "more.txt").write_text("more\n")
    run = ok(*args)
    assert PLANNED in run.stderr, run.explain()
    two = run.result["snapshot"]["name"]
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    forecast_file(job_state_dir).write_text("{not json")
    wait_next_second()
    (source / "again.txt").write_text("again\n")
    commands.take()
    run = ok(*args)
    assert PLANNED not in run.stderr, run.explain()
    three = run.result["snapshot"]["name"]
    assert sent(run.result, url) == [(three, "incremental", two)], run.result
    assert sorted(json.loads(forecast_file(job_state_dir).read_text())[url]["subvolumes"]) == [one, two, three]


def two_pushed_one_deleted(server, make_fs, subvolume, seed, first):
    """A source pushed twice, then the `first` backup (else the second) deleted at the host by hand,
    and the source changed again: (source, dest, url, the run's arguments, one, two)."""
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=seed)
    (source / "more.txt").write_text("more\n")
    two = ok(*args).result["snapshot"]["name"]
    subprocess.run(["btrfs", "subvolume", "delete", str(dest / (one if first else two))], check=True,
                   capture_output=True)
    (source / "again.txt").write_text("again\n")
    return source, dest, url, args, one, two


def test_a_backup_deleted_behind_the_jobs_back(logged_sshd, make_fs, subvolume):
    """An older backup deleted at the host: the stream planned on the record arrives (its parent
    is there), the survey shows the difference, the run lists again and has nothing more to send.
    The run after plans on the record again."""
    server, commands = logged_sshd
    source, dest, url, args, one, two = two_pushed_one_deleted(server, make_fs, subvolume, seed=33, first=True)
    commands.take()
    run = ok(*args)
    taken = commands.take()
    three = run.result["snapshot"]["name"]
    assert "it is not what the last run left" in run.stderr, run.explain()
    assert sent(run.result, url) == [(three, "incremental", two)], run.result
    assert_commands(taken, SOMETHING_TO_SEND + 1, "a record the survey contradicts: listed again")
    assert sorted(subvolumes(dest)) == [two, three]
    assert_backup(dest, source / "snapshot" / three, parent_name=two)
    (source / "last.txt").write_text("last\n")
    run = ok(*args)
    assert PLANNED in run.stderr and "not what the last run left" not in run.stderr, run.explain()
    assert_commands(commands.take(), SOMETHING_TO_SEND, "the record written anew")


def test_the_parent_deleted_behind_the_jobs_back(logged_sshd, make_fs, subvolume):
    """The backup the record names as the next parent is gone: the receive cannot find it and
    makes nothing, the survey says so, and the run plans again on what is there: the missing
    snapshot again from the newest parent left, then the new one on it."""
    server, commands = logged_sshd
    source, dest, url, args, one, two = two_pushed_one_deleted(server, make_fs, subvolume, seed=34, first=False)
    run = ok(*args)
    three = run.result["snapshot"]["name"]
    transfers = destination(run.result, url)["transfers"]
    assert [(t["snapshot"], t["parent"], t["status"]) for t in transfers] == [
        (three, two, "replanned"), (two, one, "done"), (three, two, "done")], transfers
    assert sorted(subvolumes(dest)) == [one, two, three]
    assert_backup(dest, source / "snapshot" / three, parent_name=two)
    assert_same_tree(source / "snapshot" / three, dest / three)
    assert_no_partial(dest)
    assert live_locks(source / "snapshot") == {}


@pytest.fixture
def bind_mounts():
    """`bind(folder, at)`: `folder` mounted over `at` until the test ends."""
    made = []

    def bind(folder, at):
        subprocess.run(["mount", "--bind", str(folder), str(at)], check=True)
        made.append(at)

    yield bind
    for at in reversed(made):
        subprocess.run(["umount", str(at)], check=False)


def test_a_folder_now_on_the_sources_own_disk(logged_sshd, make_fs, subvolume, bind_mounts):
    """The backup folder now lies on the source's filesystem (as when a backup disk is not mounted
    and its mount point is on the source's disk): the receive refuses the stream before it reads a
    byte, the survey says why (rule 8), and the snapshot taken for it is deleted again (rule 7).
    Nothing arrived on the source's disk. With the disk back, the next run sends incrementally."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=35)
    stand_in = source.parent / "mount-point"
    stand_in.mkdir()
    bind_mounts(stand_in, dest)
    (source / "more.txt").write_text("more\n")
    failed = run_cli(*args)
    assert failed.code == 1, failed.explain()
    error = destination(failed.result, url)["error"]
    assert "same btrfs filesystem as the source" in error and "rule 8" in error, failed.explain()
    assert "no snapshot kept, as no destination can take it" in failed.explain(), failed.explain()
    assert "is not on the filesystem this job's last run sent to" in failed.stderr, failed.explain()
    assert list(stand_in.iterdir()) == [] and snapshot_names(source / "snapshot") == [one]
    assert failed.result["snapshot"] is None and live_locks(source / "snapshot") == {}
    subprocess.run(["umount", str(dest)], check=True)
    run = ok(*args)
    two = run.result["snapshot"]["name"]
    assert sent(run.result, url) == [(two, "incremental", one)], run.result
    assert_backup(dest, source / "snapshot" / two, parent_name=one)


def test_another_disk_at_the_folder(logged_sshd, make_fs, subvolume, bind_mounts):
    """Another btrfs disk now holds the folder: the receive refuses the stream planned on the old
    disk's backups, the survey shows an empty folder, and the run sends in full to the new disk."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=36)
    other = make_fs("other")  # its top: btrfs receive finds an incremental's parent only below a mount of it
    bind_mounts(other, dest)
    (source / "more.txt").write_text("more\n")
    run = ok(*args)
    two = run.result["snapshot"]["name"]
    transfers = destination(run.result, url)["transfers"]
    assert [(t["snapshot"], t["mode"], t["status"]) for t in transfers] == [
        (two, "incremental", "replanned"), (one, "full", "done"), (two, "incremental", "done")], transfers
    assert sorted(subvolumes(other)) == [one, two]
    assert_backup(other, source / "snapshot" / two, parent_name=one)
    assert_same_tree(source / "snapshot" / two, other / two)
