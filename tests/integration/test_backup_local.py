"""The btrfs-backup command line against real loop-backed btrfs, local destinations only.

Each test runs `bin/btrfs-backup --json` as a user would and checks what a user would check:
the data restores bit for bit, the chain stays incremental (the --json transfer record AND
the parent_uuid that btrfs itself reports at the destination), nothing partial is kept, and
errors are clear and change nothing.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import re

import pytest

from cli_helpers import (
    LAST_RUN_RECORD,
    LOCK_FILE,
    TIMESTAMP_RE,
    assert_backup,
    assert_no_partial,
    assert_restores,
    destination,
    failing_receive_env,
    folder_state,
    job_state_folder,
    kept_reasons,
    leave_partial_receive,
    live_locks,
    ok,
    retention,
    run_cli,
    run_raw,
    sent,
    snapshot_names,
    subvolumes,
    take_snapshot,
    write_locks_03,
)
from support.btrfs_loop import run
from support.trees import assert_same_tree, modify_tree


def change(src, seed):
    """A small change to the source data between runs (never inside the snapshot folder)."""
    modify_tree(src / "small", 32 * 1024, seed=seed, add_files=1, remove_files=1)


# -- the basic cycle -------------------------------------------------------------------------


def test_first_run_is_full_and_the_next_incremental(src, dst, restore_fs):
    dest, snaps = dst / "backups", src / "snapshot"

    first = ok(src, dest).result
    one = first["snapshot"]["name"]
    assert re.fullmatch(TIMESTAMP_RE, one)
    assert sent(first, dest) == [(one, "full", None)]

    change(src, seed=2)
    second = ok(src, dest).result
    two = second["snapshot"]["name"]
    assert sent(second, dest) == [(two, "incremental", one)]
    # Only the change travelled.
    bytes_sent = [destination(r, dest)["transfers"][0]["bytes"] for r in (first, second)]
    assert bytes_sent[1] < bytes_sent[0] / 4, bytes_sent

    assert snapshot_names(snaps) == [one, two]
    assert_backup(dest, snaps / one)
    assert_backup(dest, snaps / two, parent_name=one)
    assert_no_partial(dest)
    assert live_locks(snaps) == {}
    for name in (one, two):
        assert_restores(dest / name, snaps / name, restore_fs)


def test_two_runs_in_the_same_second_both_succeed(src, dst):
    # The second run starts right after the first, usually within the same second.
    dest = dst / "backups"
    names = [ok(src, dest).result["snapshot"]["name"] for _ in range(2)]
    assert names[0] != names[1]
    assert all(re.fullmatch(TIMESTAMP_RE, n) for n in names), names
    assert snapshot_names(src / "snapshot") == sorted(names) == names
    assert_backup(dest, src / "snapshot" / names[1], parent_name=names[0])


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_snapshot_folder_relative_or_absolute(src, dst, restore_fs, kind):
    # Relative folders live inside the source; an absolute one anywhere on the same filesystem.
    folder = src / "snaps" / "daily" if kind == "relative" else src.parent / "snapshots-of-data"
    arg = "snaps/daily" if kind == "relative" else str(folder)
    dest = dst / "backups"

    one = ok("-f", arg, src, dest).result["snapshot"]
    change(src, seed=3)
    two = ok("-f", arg, src, dest).result

    assert one["path"] == str(folder / one["name"])
    assert snapshot_names(folder) == [one["name"], two["snapshot"]["name"]]
    assert not (src / "snapshot").exists()
    assert sent(two, dest) == [(two["snapshot"]["name"], "incremental", one["name"])]
    assert_backup(dest, folder / two["snapshot"]["name"], parent_name=one["name"])
    assert_restores(dest / two["snapshot"]["name"], folder / two["snapshot"]["name"], restore_fs)


def test_two_prefixes_share_a_destination_without_mixing(src, dst):
    # 'hourly-' and 'daily-' snapshots of one source, sharing its snapshot folder and a destination.
    dest, snaps = dst / "backups", src / "snapshot"
    h1 = ok("-p", "hourly-", src, dest).result["snapshot"]["name"]
    d1 = ok("-p", "daily-", src, dest).result
    change(src, seed=4)
    h2 = ok("-p", "hourly-", "-N", "1", "-n", "1", src, dest).result

    assert h1.startswith("hourly-") and re.fullmatch("hourly-" + TIMESTAMP_RE, h1)
    d1_name = d1["snapshot"]["name"]
    # The daily chain starts with a full send: an hourly backup is no parent for it.
    assert sent(d1, dest) == [(d1_name, "full", None)]
    # The newest hourly builds on the older hourly, not on the (newer) daily snapshot.
    h2_name = h2["snapshot"]["name"]
    assert sent(h2, dest) == [(h2_name, "incremental", h1)]
    # Retention of 'hourly-' deleted the old hourly on both sides and never touched 'daily-'.
    assert sorted(subvolumes(snaps)) == sorted([d1_name, h2_name])
    assert sorted(subvolumes(dest)) == sorted([d1_name, h2_name])
    assert set(retention(h2, "source")["deleted"]) == {h1}
    assert set(retention(h2, str(dest))["deleted"]) == {h1}
    assert d1_name not in retention(h2, "source")["kept"]


# -- several destinations ------------------------------------------------------------------


def test_a_failing_destination_does_not_stop_the_others(src, make_fs, tmp_path):
    good, good2 = make_fs("good") / "backups", make_fs("good2")
    read_only = make_fs("ro", mount_options=["ro"])  # a btrfs that cannot take a receive
    unplugged = tmp_path / "unplugged-disk" / "backups"  # its parent folder is missing

    done = run_cli(src, good, read_only, unplugged, good2)

    assert done.code == 1, done.explain()
    name = done.result["snapshot"]["name"]
    for dest in (good, good2):
        assert destination(done.result, dest)["status"] == "ok"
        assert sent(done.result, dest) == [(name, "full", None)]
        assert_backup(dest, src / "snapshot" / name)
    ro_result = destination(done.result, read_only)
    assert ro_result["status"] == "failed"
    assert "Read-only file system" in ro_result["error"], ro_result
    assert_no_partial(read_only)
    missing = destination(done.result, unplugged)
    assert missing["status"] == "failed"
    assert str(unplugged) in missing["error"] and "does not exist" in missing["error"], missing
    assert not unplugged.parent.exists()
    # Both failures are reported, by destination, on stderr and in the JSON errors.
    for dest in (read_only, unplugged):
        assert any(e.startswith(str(dest)) for e in done.result["errors"]), done.result["errors"]
        assert str(dest) in done.stderr
    # The snapshot that did not reach the read-only destination stays locked for it.
    assert live_locks(src / "snapshot") == {name: {"locks": [str(read_only)]}}


def test_a_destination_that_missed_runs_catches_up_incrementally(src, dst, make_fs, restore_fs):
    often, rarely, snaps = dst / "often", make_fs("rarely") / "backups", src / "snapshot"
    names = [ok(src, often, rarely).result["snapshot"]["name"]]
    for seed in range(5):  # five runs that 'rarely' misses
        change(src, seed=10 + seed)
        names.append(ok(src, often).result["snapshot"]["name"])

    change(src, seed=20)
    catch_up = ok(src, often, rarely).result
    names.append(catch_up["snapshot"]["name"])

    # The five missed snapshots and this run's, each incremental on the one before.
    assert sent(catch_up, rarely) == [(n, "incremental", p) for p, n in zip(names, names[1:])]
    assert sent(catch_up, often) == [(names[-1], "incremental", names[-2])]
    for parent, name in zip(names, names[1:]):
        assert_backup(rarely, snaps / name, parent_name=parent)
    assert_restores(rarely / names[3], snaps / names[3], restore_fs)
    assert_restores(rarely / names[-1], snaps / names[-1], restore_fs)


def test_a_destination_holding_a_snapshot_is_not_sent_it_again(src, dst):
    dest = dst / "backups"
    name = ok(src, dest).result["snapshot"]["name"]
    before = subvolumes(dest)

    again = ok("-S", src, dest).result

    assert again["snapshot"] is None
    assert destination(again, dest)["transfers"] == []
    assert again["changed"] is False
    assert subvolumes(dest) == before and snapshot_names(src / "snapshot") == [name]


# -- -S, -T, -I --------------------------------------------------------------------------------


def test_no_transfer_then_no_snapshot(src, dst, restore_fs):
    dest = dst / "backups"
    taken = ok("-T", src, dest).result
    name = taken["snapshot"]["name"]
    assert taken["destinations"] == [] and not dest.exists()  # -T: the destination is not touched

    moved = ok("-S", src, dest).result
    assert moved["snapshot"] is None and snapshot_names(src / "snapshot") == [name]
    assert sent(moved, dest) == [(name, "full", None)]
    assert_restores(dest / name, src / "snapshot" / name, restore_fs)


def test_no_incremental_sends_full_even_when_a_parent_exists(src, dst, restore_fs):
    dest = dst / "backups"
    one = ok(src, dest).result["snapshot"]["name"]
    change(src, seed=5)
    second = ok("-I", src, dest).result
    two = second["snapshot"]["name"]

    assert sent(second, dest) == [(two, "full", None)]
    assert_backup(dest, src / "snapshot" / two)  # received without a parent
    assert_restores(dest / two, src / "snapshot" / two, restore_fs)
    assert one in subvolumes(dest)


# -- retention -------------------------------------------------------------------------------


def test_count_retention_on_both_sides_says_why(src, dst):
    dest, snaps = dst / "backups", src / "snapshot"
    names, last = [], None
    for seed in range(4):
        change(src, seed=30 + seed)
        last = ok("-N", "2", "-n", "3", src, dest).result
        names.append(last["snapshot"]["name"])

    assert snapshot_names(snaps) == names[-2:]
    assert snapshot_names(dest) == names[-3:]
    at_source, at_dest = retention(last, "source"), retention(last, str(dest))
    assert at_source["deleted"] == {names[1]: "not kept by retention policy (newest 2)"}
    assert at_dest["deleted"] == {names[0]: "not kept by retention policy (newest 3)"}
    for name in names[-2:]:
        assert "one of the newest 2" in at_source["kept"][name]
    for name in names[-3:]:
        assert "one of the newest 3" in at_dest["kept"][name]
    # What is left still forms a chain: the newest backup was received on top of the one before.
    assert_backup(dest, snaps / names[-1], parent_name=names[-2])


def _unplug(mountpoint):
    """Like pulling a USB disk: its mount point stays behind as an empty folder."""
    run(["umount", mountpoint])


def _plug_in(btrfs_pool, mountpoint):
    run(["mount", "-o", "loop", btrfs_pool.image_of(mountpoint), mountpoint])


@pytest.mark.parametrize("how", ["receive fails", "disk unplugged"])
def test_retention_keeps_the_newest_snapshot_a_missing_destination_holds(
        src, dst, make_fs, btrfs_pool, tmp_path, how):
    # 'flaky' misses two runs while -N 1 asks to keep only one snapshot; the snapshot it
    # holds must survive, so that it can continue incrementally when it is back.
    often, flaky_fs, snaps = dst / "often", make_fs("flaky"), src / "snapshot"
    flaky = flaky_fs / "backups"
    one = ok("-N", "1", src, often, flaky).result["snapshot"]["name"]

    for seed in (40, 41):
        change(src, seed=seed)
        if how == "receive fails":
            missed = run_cli("-N", "1", src, often, flaky, env=failing_receive_env(tmp_path, only=flaky))
        else:
            _unplug(flaky_fs)
            try:
                missed = run_cli("-N", "1", src, often, flaky)
            finally:
                _plug_in(btrfs_pool, flaky_fs)
        assert missed.code == 1, missed.explain()
        assert destination(missed.result, flaky)["status"] == "failed"
        assert destination(missed.result, often)["status"] == "ok"
        assert one in snapshot_names(snaps), missed.explain()
        # ... and the run says why: a retention reason, or a warning that retention waited.
        why = kept_reasons(missed.result, "source", one) + missed.result["warnings"]
        assert any(str(flaky) in text for text in why), missed.explain()

    change(src, seed=42)
    back = ok("-N", "1", src, often, flaky).result
    transfers = sent(back, flaky)
    assert transfers[0][1:] == ("incremental", one), transfers
    newest = back["snapshot"]["name"]
    assert transfers[-1][0] == newest
    assert_backup(flaky, snaps / newest, parent_name=transfers[-1][2])
    # Once the destination has caught up, -N 1 applies again.
    assert snapshot_names(snaps) == [newest]
    assert live_locks(snaps) == {}


PAST = ["20230301-000000", "20230901-000000", "20240115-000000", "20240116-000000", "20240301-120000"]


@pytest.mark.parametrize("policy, kept", [
    # First snapshot of every year / every month; everything else older than the newest goes.
    ("*y", {"20230301-000000": "yearly period 2023", "20240115-000000": "yearly period 2024"}),
    ("*m", {"20230301-000000": "monthly period 2023-03", "20230901-000000": "monthly period 2023-09",
            "20240115-000000": "monthly period 2024-01", "20240301-120000": "monthly period 2024-03"}),
    # Only the current year counts: every past snapshot goes.
    ("1y", {}),
])
def test_preserve_snapshots_keeps_the_first_of_each_period(src, policy, kept):
    snaps = src / "snapshot"
    for name in PAST:
        take_snapshot(src, snaps, name)

    done = ok("-N", "1", "--preserve-snapshots", policy, src).result

    new = done["snapshot"]["name"]
    assert snapshot_names(snaps) == sorted(kept) + [new]
    decisions = retention(done, "source")
    assert set(decisions["deleted"]) == set(PAST) - set(kept)
    for name, why in kept.items():
        assert any(why in r for r in decisions["kept"][name]), decisions["kept"][name]
    assert "one of the newest 1" in decisions["kept"][new]


def test_preserve_snapshots_counts_periods_back_from_now(src):
    # '2d': the first snapshot of today and of yesterday survive, older days go.
    now = datetime.datetime.now()
    today = now.replace(hour=0, minute=0, second=1)
    if now - today < datetime.timedelta(seconds=5):
        pytest.skip("too close to midnight")
    yesterday = today - datetime.timedelta(days=1)
    made = {
        "keep-yesterday": yesterday,
        "drop-yesterday-noon": yesterday.replace(hour=12),
        "keep-today": today,
        "drop-3-days-ago": today - datetime.timedelta(days=3),
    }
    names = {label: when.strftime("%Y%m%d-%H%M%S") for label, when in made.items()}
    for name in names.values():
        take_snapshot(src, src / "snapshot", name)

    done = ok("-N", "1", "--preserve-snapshots", "2d", src).result

    left = snapshot_names(src / "snapshot")
    assert left == sorted([names["keep-yesterday"], names["keep-today"], done["snapshot"]["name"]])
    assert set(retention(done, "source")["deleted"]) == {
        names["drop-yesterday-noon"], names["drop-3-days-ago"]}


def _deleted_but_not_cleaned(fs):
    """`btrfs subvolume list -d`: deleted subvolumes whose space is not reclaimed yet."""
    return run(["btrfs", "subvolume", "list", "-d", fs]).stdout.strip()


def test_convert_rw_and_sync_with_retention(src, dst):
    dest, snaps = dst / "backups", src / "snapshot"
    one = ok(src, dest).result["snapshot"]["name"]
    change(src, seed=6)

    done = run_cli("-w", "-s", "-N", "1", "-n", "1", "-v", "debug", src, dest)

    assert done.code == 0, done.explain()
    two = done.result["snapshot"]["name"]
    assert snapshot_names(snaps) == [two] and snapshot_names(dest) == [two]
    assert retention(done.result, "source")["deleted"].keys() == {one}
    assert retention(done.result, str(dest))["deleted"].keys() == {one}
    # -w made each doomed subvolume writable first; -s waited until their space was freed.
    for path in (snaps / one, dest / one):
        assert re.search(r"'property', 'set'.*'%s', 'ro', 'false'" % re.escape(str(path)), done.stderr), \
            done.stderr
    assert "'subvolume', 'sync'" in done.stderr
    assert _deleted_but_not_cleaned(src.parent) == "" and _deleted_but_not_cleaned(dst) == ""


# -- locks and failed transfers -------------------------------------------------------------


def test_a_partial_receive_and_its_lock_are_cleaned_up_by_the_next_run(src, dst, restore_fs):
    dest, snaps = dst / "backups", src / "snapshot"
    one = ok(src, dest).result["snapshot"]["name"]
    change(src, seed=7)
    two = ok("-T", src).result["snapshot"]["name"]
    # A transfer of 'two' that died mid-stream, as btrfs-backup 0.3 would have recorded it.
    partial = leave_partial_receive(snaps / two, dest)
    write_locks_03(snaps, {two: {"locks": [str(dest)]}, one: {"parent_locks": [str(dest)]}})

    change(src, seed=8)
    done = ok(src, dest).result
    three = done["snapshot"]["name"]

    assert destination(done, dest)["partials_deleted"] == [str(partial.path)]
    assert sent(done, dest) == [(two, "incremental", one), (three, "incremental", two)]
    assert_backup(dest, snaps / two, parent_name=one)
    assert_backup(dest, snaps / three, parent_name=two)
    assert_no_partial(dest)
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)


def _failed_transfer(src, good, flaky, tmp_path):
    """One run where the receive into `flaky` is cut off: returns (run, snapshot name)."""
    done = run_cli(src, good, flaky, env=failing_receive_env(tmp_path, only=flaky))
    assert done.code == 1, done.explain()
    return done, done.result["snapshot"]["name"]


def test_a_failed_receive_leaves_no_partial_and_keeps_its_lock(src, dst, make_fs, tmp_path, restore_fs):
    good, flaky, snaps = dst / "good", make_fs("flaky") / "backups", src / "snapshot"
    one = ok(src, good, flaky).result["snapshot"]["name"]
    change(src, seed=9)

    failed, two = _failed_transfer(src, good, flaky, tmp_path)

    result = destination(failed.result, flaky)
    assert result["status"] == "failed"
    assert "btrfs receive failed" in result["error"], result
    assert result["transfers"][0]["status"] == "failed"
    assert "sending %s to %s failed" % (two, flaky) in failed.stderr
    assert sorted(subvolumes(flaky)) == [one]  # the partial was removed at once
    assert destination(failed.result, good)["status"] == "ok"
    assert live_locks(snaps) == {two: {"locks": [str(flaky)]}, one: {"parent_locks": [str(flaky)]}}
    assert failed.result["locks"] == {two: {"locks": [str(flaky)], "parent_locks": []},
                                      one: {"locks": [], "parent_locks": [str(flaky)]}}

    again = ok(src, good, flaky).result
    three = again["snapshot"]["name"]
    assert sent(again, flaky) == [(two, "incremental", one), (three, "incremental", two)]
    assert_backup(flaky, snaps / two, parent_name=one)
    assert_backup(flaky, snaps / three, parent_name=two)
    assert live_locks(snaps) == {}
    assert_restores(flaky / two, snaps / two, restore_fs)


def test_locked_dests_retries_a_destination_not_named(src, dst, make_fs, tmp_path):
    good, flaky, snaps = dst / "good", make_fs("flaky") / "backups", src / "snapshot"
    _, name = _failed_transfer(src, good, flaky, tmp_path)

    retry = ok("--locked-dests", "-S", src, good).result

    assert [d["id"] for d in retry["destinations"]] == [str(good), str(flaky)]
    assert sent(retry, flaky) == [(name, "full", None)]
    assert_backup(flaky, snaps / name)
    assert live_locks(snaps) == {}


def test_remove_locks_drops_them_and_does_nothing_else(src, dst, make_fs, tmp_path):
    good, flaky, snaps = dst / "good", make_fs("flaky") / "backups", src / "snapshot"
    _, name = _failed_transfer(src, good, flaky, tmp_path)
    assert live_locks(snaps) == {name: {"locks": [str(flaky)]}}

    # btrfs-backup 0.3's recipe for clearing every lock without doing anything else.
    done = ok("--remove-locks", "-S", "-T", "--locked-dests", src).result

    assert done["locks_removed"] == [{"snapshot": name, "destination": str(flaky)}]
    assert live_locks(snaps) == {}
    assert snapshot_names(snaps) == [name] and subvolumes(flaky) == {}


@pytest.mark.parametrize("content", [
    b"{ this is not json",
    b'{"20250101-000000": {"locks": "not-a-list"}}',
    b"\x8c\x00\xff binary garbage",
], ids=["not-json", "wrong-shape", "not-text"])
def test_a_corrupt_lock_file_is_a_clear_error_and_changes_nothing(src, dst, content):
    dest, snaps = dst / "backups", src / "snapshot"
    ok(src, dest)
    (snaps / LOCK_FILE).write_bytes(content)
    before = (folder_state(snaps), subvolumes(snaps), subvolumes(dest))

    done = run_cli("-N", "1", "-n", "1", src, dest)

    assert done.code != 0, done.explain()
    assert str(snaps / LOCK_FILE) in done.stderr and "corrupt" in done.stderr, done.stderr
    assert (folder_state(snaps), subvolumes(snaps), subvolumes(dest)) == before
    assert (snaps / LOCK_FILE).read_bytes() == content


def test_only_one_run_at_a_time(src, dst):
    dest, snaps = dst / "backups", src / "snapshot"
    ok(src, dest)
    before = (subvolumes(snaps), subvolumes(dest))

    with open(job_state_folder() / "lock", "r+") as held:
        # What a run in progress does: hold the flock and write its pid.
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate()
        held.write("%d\n" % os.getpid())
        held.flush()
        done = run_cli(src, dest)

    assert done.code == 3, done.explain()
    assert "in progress" in done.stderr and "pid %d" % os.getpid() in done.stderr, done.stderr
    assert (subvolumes(snaps), subvolumes(dest)) == before


# -- shell:// --------------------------------------------------------------------------------


def test_shell_destination_stream_restores_with_receive_f(src, tmp_path, restore_fs):
    stream = tmp_path / "backup.btrfs"
    done = ok(src, "shell://cat > %s" % stream).result
    name = done["snapshot"]["name"]
    assert sent(done, "shell://cat > %s" % stream) == [(name, "full", None)]

    run(["btrfs", "receive", "-f", stream, restore_fs])

    assert_same_tree(src / "snapshot" / name, restore_fs / name)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    "source not on btrfs",
    "source is a plain directory",
    "source missing",
    "destination not on btrfs",
    "bad prefix",
    "negative -N",
])
def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(src, dst, tmp_path, case):
    plain = src.parent / "plain-dir"
    plain.mkdir()
    not_btrfs = tmp_path / "not-btrfs"
    not_btrfs.mkdir()
    dest = dst / "backups"
    args, expected = {
        "source not on btrfs": ([not_btrfs, dest], [str(not_btrfs), "not on a btrfs filesystem"]),
        "source is a plain directory": ([plain, dest], [str(plain), "not a btrfs subvolume"]),
        "source missing": ([src.parent / "nope", dest], [str(src.parent / "nope"), "does not exist"]),
        "destination not on btrfs": ([src, not_btrfs / "backups"],
                                     [str(not_btrfs / "backups"), "not on a btrfs filesystem",
                                      "is the backup disk mounted?"]),
        "bad prefix": (["-p", "../x", src, dest], ["'../x'", "prefix"]),
        "negative -N": (["-N", "-1", src, dest], ["-N", "negative"]),
    }[case]
    watched = [src.parent, src, plain, not_btrfs, dst]
    before = [sorted(os.listdir(p)) for p in watched]

    done = run_cli(*args)

    assert done.code not in (0, None), done.explain()
    for text in expected:
        assert text in done.stderr, (text, done.stderr)
    assert [sorted(os.listdir(p)) for p in watched] == before, "something was created"


# -- output ----------------------------------------------------------------------------------


def test_quiet_prints_nothing_on_success(src, dst):
    done = run_raw("-q", src, dst / "backups")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert len(snapshot_names(dst / "backups")) == 1


def test_debug_shows_the_commands(src, dst):
    done = run_cli("-v", "debug", src, dst / "backups")
    assert done.code == 0, done.explain()
    debug = [line for line in done.stderr.splitlines() if "DEBUG" in line]
    for words in (["'subvolume', 'snapshot', '-r'"], ["'btrfs', 'send'"], ["'btrfs', 'receive'"]):
        assert any(all(w in line for w in words) for line in debug), (words, done.stderr)


# -- argument files --------------------------------------------------------------------------


def test_argument_files_drive_a_real_backup(src, dst, tmp_path, restore_fs):
    conf = tmp_path / "conf"
    (conf / "common").mkdir(parents=True)
    (conf / "common" / "retention.conf").write_text(
        "# shared by every job\n"
        "--num-snapshots 3\n"
        "\n"
        "    --num-backups    5\n")
    (conf / "nightly.conf").write_text(
        "# the nightly job: include the shared settings (relative to this file)\n"
        "@common/retention.conf\n"
        "\t--snapshot-prefix nightly-\n"
        "  -f snaps\n"
        "# source, then destination\n"
        "%s\n"
        "    %s\n" % (src, dst / "backups"))

    done = ok("@%s" % (conf / "nightly.conf"), cwd=tmp_path).result

    name = done["snapshot"]["name"]
    assert re.fullmatch("nightly-" + TIMESTAMP_RE, name)
    assert done["snapshot"]["path"] == str(src / "snaps" / name)
    # The retention settings came from the nested include.
    policies = {section["where"]: section["policy"] for section in done["retention"]}
    assert policies == {"source": "newest 3", str(dst / "backups"): "newest 5"}
    assert_backup(dst / "backups", src / "snaps" / name)
    assert_restores(dst / "backups" / name, src / "snaps" / name, restore_fs)
