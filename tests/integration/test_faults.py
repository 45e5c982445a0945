"""Faults on real btrfs and real ssh: break a run the way users meet it, then run again.

Each test makes a chain (one backup), adds enough data that the next transfer takes a while,
breaks that transfer in the middle (see faults.py: the receiver is frozen once bytes flow,
so the break always lands mid-stream), checks what the broken run left, and then runs
normally again. The run after a fault must remove any partial subvolume, send again, continue the
incremental chain, keep every complete backup, leave no lock, and the backups must restore
to the source's exact bytes (a sha256 of every file).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from cli_helpers import (
    LOCK_FILE,
    assert_backup,
    assert_no_partial,
    assert_restores,
    destination,
    folder_state,
    leave_partial_receive,
    live_locks,
    ok,
    read_locks,
    run_cli,
    sent,
    snapshot_names,
    ssh_args,
    subvolumes,
    wait_next_second,
)
from faults import (
    MiB,
    BlackHole,
    fill_up,
    immutable,
    is_ssh_running,
    let_go,
    midstream,
    sshd_session_of,
    start_cli,
    wait_gone,
    wait_signal_pending,
)
from remote_commands import AS_ASKED, logging_forced_command, survey_waits_for_a_receive
from support.btrfs_loop import pipeline, run
from support.sshd import Sshd, free_port
from support.trees import write_file, write_mixed_tree

FS_SIZE = "1G"  # each filesystem of the shared fixtures (conftest)
SOURCE_TREE = dict(n_small=60, small_size=2048, seed=1)  # the source's data (conftest's src)

#: Enough that the stream is well under way when the receiver is frozen (at 8 MiB) and broken.
BIG = 32 * MiB


def grow(src, seed):
    """Add a big file, so that the next (incremental) transfer carries BIG bytes."""
    write_file(src / ("big-%d.bin" % seed), BIG, seed=seed)


def complete_backups(folder):
    """{name: uuid} of the complete backups in a folder (to prove none was lost)."""
    return {n: s.uuid for n, s in subvolumes(folder).items() if s.complete_backup}


def first_backup(src, dest, *args):
    """The first run (full, small); then BIG more bytes at the source. Returns its name."""
    name = ok(*args, src, dest).result["snapshot"]["name"]
    grow(src, seed=2)
    return name


def assert_recovers(src, dest, dest_id, one, two, kept, restore_fs, args=(), partial=None):
    """The run after a fault: cleans up, resends `two` on top of `one`, continues the chain
    with a new snapshot, keeps every complete backup (`kept`: name -> uuid), leaves no lock,
    and both backups restore to the source's bytes."""
    snaps = src / "snapshot"
    done = ok(*args, src, dest_id).result
    three = done["snapshot"]["name"]
    outcome = destination(done, dest_id)
    if partial is not None:
        assert outcome["partials_deleted"] == [str(partial)], outcome
    assert sent(done, dest_id) == [(two, "incremental", one), (three, "incremental", two)], outcome
    assert_backup(dest, snaps / two, parent_name=one)
    assert_backup(dest, snaps / three, parent_name=two)
    after = complete_backups(dest)
    assert {n: after.get(n) for n in kept} == kept, "a complete backup was lost or replaced"
    assert_no_partial(dest)
    assert live_locks(snaps) == {}
    for name in (two, three):
        assert_restores(dest / name, snaps / name, restore_fs)
    return done


def assert_locked_for(snaps, two, one, dest_id):
    """The lock file says: `two` is unfinished at `dest_id`, on top of `one`."""
    assert live_locks(snaps) == {two: {"locks": [dest_id]}, one: {"parent_locks": [dest_id]}}


# -- the transfer is cut -------------------------------------------------------------------------


def endpoint(where, dest, sshd):
    """(destination id, extra CLI args, the sshd the receive runs under or None)."""
    if where == "local":
        return str(dest), [], None
    return sshd.url(dest), ssh_args(sshd), sshd


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_receiving_side_dies(src, dst, sshd, restore_fs, where):
    """`btrfs receive` is killed mid-stream (OOM killer, a crash) at a local or ssh destination."""
    dest, snaps = dst / "backups", src / "snapshot"
    dest_id, args, remote = endpoint(where, dest, sshd)
    one = first_backup(src, dest_id, *args)
    kept = complete_backups(dest)

    with start_cli(*args, src, dest_id) as cli:
        receiver = midstream(cli, remote=remote)
        os.kill(receiver.pid, signal.SIGKILL)
        failed = cli.finish()
        assert cli.strays() == []

    assert failed.code == 1, failed.explain()
    two = failed.result["snapshot"]["name"]
    outcome = destination(failed.result, dest_id)
    assert outcome["status"] == "failed"
    assert "btrfs receive" in outcome["error"] and "sending %s to %s failed" % (two, dest_id) in failed.stderr, outcome
    # The partial was removed at once, and the lock records the unfinished transfer.
    assert outcome["partials_deleted"] == [str(dest / two)], outcome
    assert sorted(subvolumes(dest)) == [one]
    assert_locked_for(snaps, two, one, dest_id)

    assert_recovers(src, dest, dest_id, one, two, kept, restore_fs, args)


@pytest.mark.parametrize("how", ["ssh client killed", "server session killed", "network goes silent"])
def test_network_drops_mid_stream(src, dst, sshd, restore_fs, how):
    """The connection to an ssh destination breaks during a large send: the ssh process on
    this side dies, the remote sshd's session dies (the link is reset), or the remote side
    stops answering without closing anything (a silent link: only keepalives notice)."""
    dest, snaps = dst / "backups", src / "snapshot"
    url, args = sshd.url(dest), ssh_args(sshd)
    one = first_backup(src, url, *args)
    if how == "network goes silent":
        # The defaults (15 s x 4) would take a minute to notice; the mechanism is the same.
        args = args + ["--ssh-opt", "ServerAliveInterval=1", "--ssh-opt", "ServerAliveCountMax=2"]
    kept = complete_backups(dest)

    with start_cli(*args, src, url) as cli:
        receiver = midstream(cli, remote=sshd)
        session = sshd_session_of(sshd, receiver)
        if how == "ssh client killed":
            os.kill(cli.child("ssh client", is_ssh_running("btrfs receive")).pid, signal.SIGKILL)
            let_go(receiver)
        elif how == "server session killed":
            os.kill(session.pid, signal.SIGKILL)
            let_go(receiver)
        else:
            os.kill(session.pid, signal.SIGSTOP)
        try:
            failed = cli.finish()
        finally:
            if how == "network goes silent":
                os.kill(session.pid, signal.SIGKILL)
                let_go(receiver)
        assert cli.strays() == [] and cli.ssh_masters() == []
    wait_gone([receiver.pid])  # the remote receive ends once its session is gone
    # A silent link is given up after ServerAliveInterval x ServerAliveCountMax, not hung on.
    assert cli.elapsed < 30, cli.elapsed

    assert failed.code == 1, failed.explain()
    two = failed.result["snapshot"]["name"]
    outcome = destination(failed.result, url)
    assert outcome["status"] == "failed", outcome
    assert "sending %s to %s failed" % (two, url) in outcome["error"], outcome
    if how != "ssh client killed":
        assert "the ssh connection failed or was lost" in outcome["error"], outcome
    # The partial was removed at once over a new connection; the lock stays until it is resent.
    assert outcome["partials_deleted"] == [str(dest / two)], outcome
    assert sorted(subvolumes(dest)) == [one]
    assert_locked_for(snaps, two, one, url)

    assert_recovers(src, dest, url, one, two, kept, restore_fs, args)


def test_network_drops_while_the_survey_is_pending(src, dst, logged_sshd, restore_fs, tmp_path):
    """A run planned on what the job's last run left at an ssh host sends before the host's survey
    answers (run/folder_forecast.py). Here the survey is held at the host while the connection
    breaks mid-stream, so it fails too. A survey that got no answer says nothing about the folder:
    the transfer fails as it does after a survey asked first (not planned again and resent in the
    same run), the lock remembers it, and the next run resends."""
    server, commands = logged_sshd
    dest, snaps = dst / "backups", src / "snapshot"
    url, args = server.url(dest), ssh_args(server)
    one = first_backup(src, url, *args)  # the job's last run there: the next one plans on its record
    kept = complete_backups(dest)
    held = survey_waits_for_a_receive(server, commands.log, tmp_path, until="end", tenths=150)

    with start_cli(*args, src, url) as cli:
        receiver = midstream(cli, remote=server)
        assert not held.exists(), "the survey answered before the stream was cut"
        os.kill(sshd_session_of(server, receiver).pid, signal.SIGKILL)
        let_go(receiver)
        failed = cli.finish()
        assert cli.strays() == [] and cli.ssh_masters() == []
    wait_gone([receiver.pid])

    assert failed.code == 1, failed.explain()
    assert "the survey beside the stream got no answer" in failed.stderr, failed.explain()
    two = failed.result["snapshot"]["name"]
    outcome = destination(failed.result, url)
    assert outcome["status"] == "failed", outcome
    assert [t["status"] for t in outcome["transfers"]] == ["failed"], outcome
    assert "the ssh connection failed or was lost" in outcome["error"], outcome
    assert outcome["partials_deleted"] == [str(dest / two)], outcome
    assert sorted(subvolumes(dest)) == [one]
    assert_locked_for(snaps, two, one, url)

    logging_forced_command(server, commands.log, AS_ASKED)  # surveys answer at once
    assert_recovers(src, dest, url, one, two, kept, restore_fs, args)


def test_network_drops_during_a_pull(src, dst, sshd, restore_fs):
    """Pull mode: `ssh host btrfs send` dies mid-stream. The lock file on the remote source
    names the transfer, the local partial is gone at once, and the next run resends."""
    dest, snaps = dst / "pulled", src / "snapshot"
    args = ssh_args(sshd) + [sshd.url(src)]
    one = ok(*args, dest).result["snapshot"]["name"]
    grow(src, seed=2)
    kept = complete_backups(dest)

    with start_cli(*args, dest) as cli:
        receiver = midstream(cli)
        os.kill(cli.child("ssh client", is_ssh_running("btrfs send")).pid, signal.SIGKILL)
        let_go(receiver)
        failed = cli.finish()
        assert cli.strays() == [] and cli.ssh_masters() == []

    assert failed.code == 1, failed.explain()
    two = failed.result["snapshot"]["name"]
    outcome = destination(failed.result, dest)
    # The source compresses what it sends (a pull crosses ssh): its stage is named so.
    assert "btrfs send | zstd on 127.0.0.2 failed" in outcome["error"], outcome
    assert outcome["partials_deleted"] == [str(dest / two)], outcome
    assert_locked_for(snaps, two, one, str(dest))  # written on the source host

    done = ok(*args, dest).result
    three = done["snapshot"]["name"]
    assert sent(done, dest) == [(two, "incremental", one), (three, "incremental", two)]
    assert_backup(dest, snaps / three, parent_name=two)
    assert {n: complete_backups(dest).get(n) for n in kept} == kept
    assert_no_partial(dest)
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)


# -- the backup process itself is stopped ----------------------------------------------------


@pytest.mark.parametrize("where", ["local", "ssh"])
@pytest.mark.parametrize("who", ["the CLI", "its process group"])
def test_sigterm_mid_transfer(src, dst, sshd, restore_fs, where, who):
    """`systemctl stop` (SIGTERM to the whole group, systemd's default KillMode) or `kill PID`:
    exit 143, the unfinished transfer stays locked, no process is left, and the next run
    removes the partial and sends again."""
    dest, snaps = dst / "backups", src / "snapshot"
    dest_id, args, remote = endpoint(where, dest, sshd)
    one = first_backup(src, dest_id, *args)
    kept = complete_backups(dest)

    with start_cli(*args, src, dest_id) as cli:
        receiver = midstream(cli, remote=remote)
        if who == "the CLI":
            cli.signal(signal.SIGTERM)
        else:
            cli.signal_group(signal.SIGTERM)
        if remote is None:
            # Stopped, the receive cannot act on SIGTERM: let it go once the signal is there.
            wait_signal_pending(receiver, signal.SIGTERM)
            let_go(receiver)
            stopped = cli.finish()
        else:
            stopped = cli.finish()
            let_go(receiver)  # its connection is gone: it reads the end of its input
        assert cli.strays() == [] and cli.ssh_masters() == []

    assert stopped.code == 143, stopped.explain()
    assert "terminated" in stopped.stderr and LOCK_FILE in stopped.stderr, stopped.stderr
    # The lock file on disk names the unfinished transfer.
    two = [n for n in read_locks(snaps) if n != one][0]
    assert_locked_for(snaps, two, one, dest_id)
    if remote is not None:
        wait_gone([receiver.pid])
    partial = dest / two
    assert two not in complete_backups(dest)

    assert_recovers(src, dest, dest_id, one, two, kept, restore_fs, args,
                    partial=partial if partial.exists() else None)


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_sigkill_of_the_whole_run(src, dst, sshd, restore_fs, where):
    """SIGKILL to the run and its pipeline (systemd's stop timeout, the OOM killer of a cgroup,
    a crash): nothing runs any cleanup. The lock file must still be whole and name the
    transfer, and the next run must remove the partial it left."""
    dest, snaps = dst / "backups", src / "snapshot"
    dest_id, args, remote = endpoint(where, dest, sshd)
    one = first_backup(src, dest_id, *args)
    kept = complete_backups(dest)

    with start_cli(*args, src, dest_id) as cli:
        receiver = midstream(cli, remote=remote)
        cli.signal_group(signal.SIGKILL)
        killed = cli.finish()
        let_go(receiver)
        wait_gone([receiver.pid])

    assert killed.code == -signal.SIGKILL
    locks = read_locks(snaps)  # parseable JSON, btrfs-backup 0.3's shape
    two = [n for n in locks if n != one][0]
    assert_locked_for(snaps, two, one, dest_id)
    partial = subvolumes(dest)[two]
    assert not partial.complete_backup, partial

    assert_recovers(src, dest, dest_id, one, two, kept, restore_fs, args, partial=partial.path)


def test_sigkill_of_the_cli_alone_lets_the_transfer_finish(src, dst, restore_fs):
    """`kill -9 PID` of the CLI only: its `btrfs send | btrfs receive` carry on and complete
    the backup while the lock still calls it unfinished. The next run must keep that complete
    backup (not delete or resend it) and clear the lock."""
    dest, snaps = dst / "backups", src / "snapshot"
    one = first_backup(src, dest)

    with start_cli(src, dest) as cli:
        receiver = midstream(cli)
        pipeline = [p.pid for p in cli.children()]
        cli.signal(signal.SIGKILL)
        cli.finish()
        let_go(receiver)
        wait_gone(pipeline)

    two = [n for n in read_locks(snaps) if n != one][0]
    assert_locked_for(snaps, two, one, str(dest))
    backup = assert_backup(dest, snaps / two, parent_name=one)

    done = ok(src, dest).result
    three = done["snapshot"]["name"]
    outcome = destination(done, dest)
    assert outcome["partials_deleted"] == [] and sorted(outcome["locks_cleared"]) == [one, two]
    assert sent(done, dest) == [(three, "incremental", two)]
    assert subvolumes(dest)[two].uuid == backup.uuid  # the same subvolume, kept
    assert_backup(dest, snaps / three, parent_name=two)
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)


# -- the destination fills up ------------------------------------------------------------------


def test_destination_fills_up(src, dst, restore_fs):
    """ENOSPC at the destination in the middle of a receive; the user then frees space."""
    dest, snaps = dst / "backups", src / "snapshot"
    one = first_backup(src, dest)
    kept = complete_backups(dest)
    ballast = fill_up(dst, leave_free=BIG // 3)

    # -n 1 would delete `one` after a successful transfer; after a failed one it must not.
    failed = run_cli("-n", "1", src, dest)

    assert failed.code == 1, failed.explain()
    two = failed.result["snapshot"]["name"]
    outcome = destination(failed.result, dest)
    assert outcome["status"] == "failed"
    assert "No space left on device" in outcome["error"], outcome
    assert outcome["partials_deleted"] == [str(dest / two)], outcome
    assert sorted(subvolumes(dest)) == [one]
    assert_locked_for(snaps, two, one, str(dest))

    ballast.unlink()
    run(["btrfs", "filesystem", "sync", dst])
    assert_recovers(src, dest, str(dest), one, two, kept, restore_fs)


# -- the destination cannot be reached -------------------------------------------------------
# (A host that refuses the connection: test_backup_ssh.py::
#  test_an_unreachable_destination_fails_fast_and_the_local_one_still_gets_its_backup.)


@pytest.mark.parametrize("require_destination", [False, True])
def test_a_host_that_never_answers_is_given_up_after_the_default_connect_timeout(
        src, require_destination):
    """A host that accepts the TCP connection but never sends the SSH banner, with no ssh
    option given: ConnectTimeout=20 covers the banner and the host is asked once. The snapshot
    is taken all the same (an outage of the server does not stop the local restore points),
    unless --require-destination asks for a destination that can take it now."""
    before = folder_state(src)
    flags = ["--require-destination"] if require_destination else []
    with BlackHole(kind="silent") as hole:
        started = time.monotonic()
        done = run_cli(*flags, "--ssh-opt", "BatchMode=yes", src, hole.url("/srv/backups"),
                       timeout=120)
        elapsed = time.monotonic() - started
        attempts = len(hole.accepted)

    assert 15 < elapsed < 40, "the run took %.1fs" % elapsed
    assert attempts == 1, "the silent host was contacted %d times" % attempts
    assert done.code == 1, done.explain()
    assert "timed out" in done.stderr and hole.url("/srv/backups") in done.stderr, done.stderr
    if require_destination:
        assert "no snapshot taken" in done.stderr, done.stderr
        assert folder_state(src) == before and not (src / "snapshot").exists()
    else:
        assert "taking the snapshot anyway" in done.stderr, done.stderr
        taken = done.result["snapshot"]["name"]
        assert snapshot_names(src / "snapshot") == [taken]
        assert done.result["destinations"][0]["status"] == "failed"


def test_snapshots_taken_while_the_server_is_down_are_sent_when_it_is_back(src, dst, sshd):
    """Rules 1 and 4 through an outage: runs while the server refuses connections still
    take their snapshots, source retention deletes none while it cannot see the server, and
    the first run after the outage sends every missed snapshot, incrementally, in order."""
    remote = dst / "backups"
    remote.mkdir()
    url = sshd.url(remote)
    snaps = src / "snapshot"
    first = ok(*ssh_args(sshd), "-N", "2", src, url).result["snapshot"]["name"]
    # The same folder behind a port nobody listens on: the server is "down".
    down = "ssh://root@127.0.0.2:%d%s" % (free_port("127.0.0.2"), remote)
    missed = []
    for n in range(3):
        write_file(src / ("outage-%d.bin" % n), 4096, seed=n)
        wait_next_second()
        done = run_cli(*ssh_args(sshd), "-N", "2", src, down)
        assert done.code == 1, done.explain()
        assert "taking the snapshot anyway" in done.stderr, done.stderr
        assert destination(done.result, down)["status"] == "failed"
        missed.append(done.result["snapshot"]["name"])
    assert snapshot_names(snaps) == [first] + missed

    wait_next_second()
    back = ok(*ssh_args(sshd), "-N", "2", src, url).result
    latest = back["snapshot"]["name"]
    chain = [first] + missed + [latest]
    assert sent(back, url) == [(b, "incremental", a) for a, b in zip(chain, chain[1:])]
    assert_backup(remote, snaps / latest, parent_name=missed[-1])
    assert snapshot_names(snaps) == chain[-2:]


@pytest.mark.parametrize("kind", ["silent", "backlog full"])
def test_a_host_that_never_answers_does_not_stop_the_others_and_catches_up_later(
        src, dst, make_fs, restore_fs, kind):
    """A host that accepts and never speaks, or whose accept queue is full (the TCP handshake
    never completes), with a short ConnectTimeout: the run ends in about that time, the local
    destination gets its backup, and once the host is back it gets the whole chain."""
    local, remote_fs, snaps = dst / "backups", make_fs("remote"), src / "snapshot"
    remote = remote_fs / "backups"
    timeout = 4
    with BlackHole(host="127.0.0.5", kind=kind) as hole:
        url = hole.url(str(remote))
        started = time.monotonic()
        done = run_cli("--ssh-opt", "ConnectTimeout=%d" % timeout, "--ssh-opt", "BatchMode=yes",
                       src, url, local, timeout=60)
        elapsed = time.monotonic() - started
        port, attempts = hole.port, len(hole.accepted)

    # Asked once, not once for the check before the snapshot and again for the transfer.
    assert timeout <= elapsed < 2 * timeout, "the run took %.1fs" % elapsed
    assert attempts == (1 if kind == "silent" else 0), attempts
    assert done.code == 1, done.explain()
    one = done.result["snapshot"]["name"]
    assert destination(done.result, str(local))["status"] == "ok"
    failed = destination(done.result, url)
    assert failed["status"] == "failed" and "timed out" in failed["error"], failed
    assert failed["transfers"] == [] and live_locks(snaps) == {}
    assert_backup(local, snaps / one)

    # The host comes back (an sshd on the same address and port).
    grow(src, seed=3)
    with Sshd(host="127.0.0.5", port=port) as back:
        later = ok(*ssh_args(back), src, back.url(remote), local).result
    two = later["snapshot"]["name"]
    assert sent(later, back.url(remote)) == [(one, "full", None), (two, "incremental", one)]
    assert_backup(remote, snaps / two, parent_name=one)
    assert live_locks(snaps) == {}
    assert_restores(remote / two, snaps / two, restore_fs)


# -- the lock file and the snapshot folder ---------------------------------------------------


def unfinished_transfer(src, dest):
    """A source with backups `one` at `dest` and snapshot `two` whose transfer died: its partial
    is at `dest` and the lock file records it, as the engine writes it. Returns (one, two)."""
    snaps = src / "snapshot"
    one = first_backup(src, dest)
    two = ok("-T", src).result["snapshot"]["name"]
    leave_partial_receive(snaps / two, dest, nbytes=4 * MiB)
    (snaps / LOCK_FILE).write_text(json.dumps(
        {two: {"locks": [str(dest)]}, one: {"parent_locks": [str(dest)]}}, indent=2) + "\n")
    return one, two


@pytest.mark.parametrize("damage", ["cut in half", "empty"])
def test_a_truncated_lock_file_is_an_error_until_it_is_repaired(src, dst, restore_fs, damage):
    """A lock file cut short (a crash while a non-atomic writer such as btrfs-backup 0.3 wrote
    it): a clear error that names the file, and nothing is changed, because it may be the only
    record of the partial at the destination. Once repaired (the whole content written back),
    or deleted as the message says after deleting the partial by hand, runs go on."""
    dest, snaps = dst / "backups", src / "snapshot"
    one, two = unfinished_transfer(src, dest)
    kept = complete_backups(dest)
    lock = snaps / LOCK_FILE
    whole = lock.read_bytes()
    lock.write_bytes(whole[:len(whole) // 2] if damage == "cut in half" else b"")
    before = (folder_state(snaps), subvolumes(snaps), subvolumes(dest))

    done = run_cli(src, dest)

    assert done.code == 1, done.explain()
    assert str(lock) in done.stderr and "corrupt" in done.stderr, done.stderr
    assert (folder_state(snaps), subvolumes(snaps), subvolumes(dest)) == before

    if damage == "cut in half":
        lock.write_bytes(whole)
        partial = dest / two
    else:
        assert "delete it once no partial backup is left" in done.stderr, done.stderr
        run(["btrfs", "subvolume", "delete", dest / two])
        lock.unlink()
        partial = None
    assert_recovers(src, dest, str(dest), one, two, kept, restore_fs, partial=partial)


def test_a_snapshot_folder_that_is_not_writable(src, dst, restore_fs):
    """The snapshot folder cannot be written (chattr +i: not even root can): a clear error that
    names it, no snapshot, nothing sent; after chattr -i the chain goes on."""
    dest, snaps = dst / "backups", src / "snapshot"
    one = first_backup(src, dest)
    kept = complete_backups(dest)
    before = (folder_state(snaps), subvolumes(snaps), subvolumes(dest))

    with immutable(snaps):
        done = run_cli(src, dest)
        after = (folder_state(snaps), subvolumes(snaps), subvolumes(dest))

    assert done.code == 1, done.explain()
    [error] = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert str(snaps) + "/" in error and "Operation not permitted" in error, error
    assert after == before

    later = ok(src, dest).result
    two = later["snapshot"]["name"]
    assert sent(later, dest) == [(two, "incremental", one)]
    assert_backup(dest, snaps / two, parent_name=one)
    assert complete_backups(dest)[one] == kept[one]
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)


# -- two runs of one job at once ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["push", "pull"])
def test_two_runs_of_the_same_job_at_once(src, dst, sshd, restore_fs, mode):
    """A second run (a timer firing while a long run is still sending) exits with status 3,
    names the pid of the run in progress and changes nothing; the first run completes."""
    dest, snaps = dst / "backups", src / "snapshot"
    args = [src, dest] if mode == "push" else ssh_args(sshd) + [sshd.url(src), dest]
    one = first_backup(src, dest) if mode == "push" else None
    if mode == "pull":
        one = ok(*args).result["snapshot"]["name"]
        grow(src, seed=2)

    with start_cli(*args) as first:
        receiver = midstream(first)
        before = (folder_state(snaps), subvolumes(snaps), subvolumes(dest))
        second = run_cli(*args)
        # Another job with the same snapshot folder (here: another destination) waits too.
        other = run_cli(src, dst / "elsewhere") if mode == "push" else second
        after = (folder_state(snaps), subvolumes(snaps), subvolumes(dest))
        let_go(receiver)
        done = first.finish()

    for run_ in (second, other):
        assert run_.code == 3, run_.explain()
        assert "in progress" in run_.stderr and "pid %d" % first.pid in run_.stderr, run_.stderr
    assert after == before and not (dst / "elsewhere").exists()
    assert done.code == 0, done.explain()
    two = done.result["snapshot"]["name"]
    assert sent(done.result, str(dest)) == [(two, "incremental", one)]
    assert_backup(dest, snaps / two, parent_name=one)
    assert live_locks(snaps) == {}
    assert_restores(dest / two, snaps / two, restore_fs)


# -- backups or snapshots deleted by hand ----------------------------------------------------


def three_backups(src, dest):
    """Backups `one` and `two` at `dest` (both still at the source). Returns their names."""
    one = ok(src, dest).result["snapshot"]["name"]
    write_mixed_tree(src / "more", n_small=20, small_size=4096, seed=5)
    two = ok(src, dest).result["snapshot"]["name"]
    write_mixed_tree(src / "even-more", n_small=20, small_size=4096, seed=6)
    return one, two


@pytest.mark.parametrize("where, which", [
    ("destination", "the newest"),
    ("destination", "all in common"),
    ("source", "the newest"),
    ("source", "all in common"),
])
def test_a_common_snapshot_deleted_by_hand(src, dst, restore_fs, where, which):
    """Someone deletes backups at the destination or snapshots at the source. The next run
    continues incrementally from the newest snapshot the two sides still share; with none
    left, it sends in full and says why. No remaining backup is touched."""
    dest, snaps = dst / "backups", src / "snapshot"
    one, two = three_backups(src, dest)
    if where == "destination":
        if which == "all in common":
            # `one` is gone from the source (retention, say): its backup stays at the
            # destination, but it is no parent for anything now.
            run(["btrfs", "subvolume", "delete", snaps / one])
        run(["btrfs", "subvolume", "delete", dest / two])
    else:
        run(["btrfs", "subvolume", "delete"] + [snaps / n for n in (
            [two] if which == "the newest" else [one, two])])
        wait_next_second()  # a new snapshot in the same second would take the freed name again
    kept = complete_backups(dest)

    done = ok(src, dest).result
    three = done["snapshot"]["name"]

    warned = [w for w in done["warnings"] if "in full" in w]
    if which == "the newest":
        # The chain goes on from the newest snapshot both sides still have.
        if where == "destination":  # `two` is still at the source: it is sent again
            assert sent(done, dest) == [(two, "incremental", one), (three, "incremental", two)]
            assert_backup(dest, snaps / three, parent_name=two)
        else:
            assert sent(done, dest) == [(three, "incremental", one)]
            assert_backup(dest, snaps / three, parent_name=one)
        assert warned == [], done["warnings"]
    else:
        # Nothing in common: a full send, and the run says why.
        first = two if where == "destination" else three
        assert sent(done, dest)[0] == (first, "full", None)
        assert_backup(dest, snaps / first)
        assert len(warned) == 1 and str(dest) in warned[0] and first in warned[0], done["warnings"]
        if where == "destination":
            assert sent(done, dest)[1:] == [(three, "incremental", two)]
    assert {n: complete_backups(dest).get(n) for n in kept} == kept
    assert live_locks(snaps) == {}
    assert_restores(dest / three, snaps / three, restore_fs)


# -- a name at the destination that is not our backup ------------------------------------------


def plant(kind, path, src, scratch):
    """A subvolume at `path` that is not the backup of the snapshot with that name."""
    if kind == "writable":
        run(["btrfs", "subvolume", "create", path])
        (path / "mine.txt").write_text("somebody's own data\n")
    elif kind == "read-only, not received":
        run(["btrfs", "subvolume", "create", path])
        (path / "mine.txt").write_text("somebody's own data\n")
        run(["btrfs", "property", "set", "-ts", path, "ro", "true"])
    else:  # received from another subvolume, renamed (within its folder) to our name
        other = scratch / "other"
        run(["btrfs", "subvolume", "create", other])
        (other / "mine.txt").write_text("another machine's backup\n")
        run(["btrfs", "subvolume", "snapshot", "-r", other, scratch / "other-snap"])
        pipeline(["btrfs", "send", "-q", scratch / "other-snap"], ["btrfs", "receive", path.parent])
        (path.parent / "other-snap").rename(path)
    return Path(path)


@pytest.mark.parametrize("kind", ["writable", "read-only, not received", "received from elsewhere"])
def test_a_foreign_subvolume_with_our_snapshot_name(src, dst, restore_fs, kind):
    """A subvolume already carries the name of a snapshot to be sent, and it is not our backup.
    It is never overwritten, deleted or counted (nor used as a parent): the run reports it and
    stops that destination's chain there. Once it is renamed, the chain catches up."""
    dest, snaps = dst / "backups", src / "snapshot"
    one = ok(src, dest).result["snapshot"]["name"]
    two = ok("-T", src).result["snapshot"]["name"]
    foreign = plant(kind, dest / two, src, src.parent)
    seen = subvolumes(dest)[two]
    kept = complete_backups(dest)

    done = run_cli(src, dest)

    assert done.code == 1, done.explain()
    three = done.result["snapshot"]["name"]
    outcome = destination(done.result, dest)
    assert outcome["status"] == "failed" and outcome["transfers"] == [], outcome
    assert len(outcome["conflicts"]) == 1 and str(foreign) in outcome["conflicts"][0], outcome
    assert "left alone" in outcome["conflicts"][0]
    assert str(foreign) in done.stderr
    assert subvolumes(dest)[two] == seen and (foreign / "mine.txt").exists()
    assert complete_backups(dest) == kept
    assert live_locks(snaps) == {}

    # The user moves it out of the way (renaming within the folder works even read-only).
    foreign.rename(dest / "not-a-backup")
    later = ok(src, dest).result
    four = later["snapshot"]["name"]
    assert sent(later, dest) == [(two, "incremental", one), (three, "incremental", two),
                                 (four, "incremental", three)]
    assert_backup(dest, snaps / four, parent_name=three)
    assert subvolumes(dest)["not-a-backup"].uuid == seen.uuid
    assert live_locks(snaps) == {}
    assert_restores(dest / four, snaps / four, restore_fs)


def test_retention_never_counts_or_deletes_a_foreign_subvolume(src, dst):
    """A complete received subvolume that carries one of our snapshot names but came from
    another subvolume is no backup of ours: `-n 1` neither counts it nor deletes it, and each
    run reports it. (`-n 1` does not send that older snapshot, so no conflict stops the run.)"""
    dest = dst / "backups"
    previous = ok(src, dest).result["snapshot"]["name"]
    two = ok("-T", src).result["snapshot"]["name"]
    foreign = plant("received from elsewhere", dest / two, src, src.parent)
    seen = subvolumes(dest)[two]

    for _ in range(2):
        done = ok("-n", "1", src, dest).result
        newest = done["snapshot"]["name"]
        assert sent(done, dest) == [(newest, "incremental", previous)]
        decisions = [d for s in done["retention"] if s["where"] == str(dest)
                     for d in s["kept"] + s["deleted"]]
        assert two not in [d["name"] for d in decisions], decisions
        assert any(str(foreign) in w and "left alone" in w for w in done["warnings"]), done
        assert sorted(subvolumes(dest)) == sorted([two, newest])
        assert subvolumes(dest)[two] == seen
        previous = newest
