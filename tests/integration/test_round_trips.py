"""Remote commands per run at an ssh destination: a run with something to send asks it at most 2
times (all it must know, the receive that also answers what arrived), a run with nothing to send once;
over plain ssh, through `serve` and in a relay (also into a `serve`). The first run to a folder that
does not exist yet asks one more (its parent's listing); the receive's own command creates it, also
through a `serve` that says it takes that form (an older one gets a mkdir of its own). A pulled
source is asked 3 times for a run with something to send (also its first, and one that deletes an
old snapshot there): its snapshot rides in the send's command; 4 with an after_snapshot hook, which
runs between them; once for a run with nothing to send. A relay's source, whose stream may be staged
(resumable), is asked 3 times too: its gated send's command takes the snapshot, estimates the
stream with a `--no-data` pass and waits for the verdict before the real send (host/gated_send.py).
A snapshot that fails there, an estimate that fails there, a send cut there and a run stopped
(SIGTERM) while it estimates leave nothing here and the next run catches up.
At a plain ssh host that received the last stream in its shell, the receive starts before the
survey answers, and where the job's last run there left its record the stream goes at once too
(test_planned_on_forecast.py); what the host cannot take is refused or planned again (also at a key
now given to serve, which declines it without counting a refusal). Counted by a forced command that logs each
command the client sends before running it, so the test sees what the server saw; sshd's log shows
that each run opened one connection."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cli_helpers import (CLI, assert_backup, assert_no_partial, destination, live_locks, ok, read_locks, run_cli, sent,
                         snapshot_names, ssh_args, subvolumes, wait_next_second)
from cli_helpers import show as show_subvolume
from faults import start_cli
from remote_commands import AS_ASKED, logging_forced_command, survey_waits_for_a_receive
from support.trees import assert_same_tree, write_mixed_tree

SOMETHING_TO_SEND = 2
NOTHING_TO_SEND = 1
#: A pulled source: all it must know, the send (whose command writes the lock file, then takes the
#: snapshot and marks its facts on stderr), the lock file settled after the verified arrival (with
#: retention's deletion). With an after_snapshot hook the snapshot is a command of its own.
PULLED_SOURCE = 3
PULLED_SOURCE_WITH_AFTER_HOOK = 4
#: A relay's source with resumable transfers (the default): all it must know; the gated send, whose
#: command writes the lock file, takes the snapshot, estimates the stream's size with a `--no-data`
#: pass and waits for the verdict (staged or not is decided on it before the first byte) before the
#: real send (host/gated_send.py); the settled lock file.
RELAYED_SOURCE = 3
#: The same with `--resumable always`: the verdict is `stop`, the staged transfer sends the snapshot
#: in a command of its own (its staging recorded, sent, its record removed) and the settled lock file.
RELAYED_SOURCE_STAGED = 6


def assert_commands(commands, at_most, what):
    assert len(commands) <= at_most, f"{what}: {len(commands)} remote commands:\n" + "\n".join(commands)


def three_runs(args, dest_id, commands, source):
    """A full run, an incremental run and a run with nothing to send (-S, as btrfs-backup 0.3's):
    the remote commands of each; each run opened one connection and ran them all through it."""
    taken = []
    for flags, mode in (([], "full"), ([], "incremental"), (["-S"], None)):
        if mode == "incremental":
            (source / "more.txt").write_text("more\n")
        result = ok(*flags, *args).result
        taken.append(commands.take())
        assert [t[1] for t in sent(result, dest_id)] == ([mode] if mode else []), result
        assert commands.connections == 1, f"{commands.connections} ssh connections in one run"
    return taken


def replanned_first(result, dest_id) -> list:
    """(snapshot, mode) of each transfer to `dest_id` after the first, which was planned on what the
    job's last run left there and planned again once the host's survey said otherwise."""
    transfers = destination(result, dest_id)["transfers"]
    assert transfers and transfers[0]["status"] == "replanned", transfers
    return [(t["snapshot"], t["mode"]) for t in transfers[1:]]


def show(**runs):
    print("\n".join(f"{what}: {len(commands)}\n  " + "\n  ".join(commands) for what, commands in runs.items()))


def small_source(make_fs, subvolume, seed):
    """A source subvolume on a filesystem of its own, with a few small files: the commands are
    counted, not the data."""
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=4, small_size=1024, large_files=[], seed=seed)
    return source


def pushed_once(server, make_fs, subvolume, seed):
    """A small source pushed once to a new folder at `server`: (source, dest, url, the run's
    arguments, the first snapshot's name)."""
    source = small_source(make_fs, subvolume, seed=seed)
    dest = make_fs("dst") / "backups"
    url = server.url(dest)
    args = ssh_args(server) + [source, url]
    return source, dest, url, args, ok(*args).result["snapshot"]["name"]


def test_push_over_ssh(logged_sshd, make_fs, subvolume):
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=1)
    dest = make_fs("dst") / "backups"
    url = server.url(dest)
    full, incremental, nothing = three_runs(ssh_args(server) + [source, url], url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    # The first run also lists the folder's parent (rule 8 and the parent's own checks); the
    # receive's own command creates the folder (`mkdir -p -- F && zstd -d | btrfs receive F`).
    assert_commands(full, SOMETHING_TO_SEND + 1, "full send to a new folder")
    assert [c for c in full if c.startswith("mkdir")] == [c for c in full if "btrfs receive" in c], full
    assert any(c.startswith("mkdir -p -- %s && " % shlex.quote(str(dest))) for c in full), full
    assert_commands(incremental, SOMETHING_TO_SEND, "incremental send")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to send")


def test_the_runs_ssh_master_is_told_to_exit_over_its_socket(logged_sshd, make_fs, subvolume, tmp_path):
    """A run ends its shared connection's master through the master's control socket (ssh's
    connection-sharing protocol), not with an `ssh -O exit` process: none is started, the master
    is gone, and so is the run's private control folder."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=11)
    url = server.url(make_fs("dst") / "backups")
    shims, log = tmp_path / "logged-bin", tmp_path / "ssh.log"
    shims.mkdir()
    (shims / "ssh").write_text("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %s\nexec %s \"$@\"\n"
                               % (shlex.quote(str(log)), shutil.which("ssh")))
    (shims / "ssh").chmod(0o755)
    env = {"PATH": "%s:%s" % (shims, os.environ["PATH"])}
    ok(*ssh_args(server), source, url, env=env)  # a full send
    commands.take()
    assert commands.connections == 1
    ok(*ssh_args(server), source, url, env=env)  # nothing to send
    commands.take()
    assert commands.connections == 1
    calls = log.read_text().splitlines()
    masters = [c for c in calls if " -N " in c]
    assert len(masters) == 2 and not [c for c in calls if "-O exit" in c], calls
    folders = {re.search(r"ControlPath=(\S+)/%C", c).group(1) for c in masters}
    assert len(folders) == 2 and not any(os.path.exists(f) for f in folders), folders
    running = subprocess.run(["ps", "-eo", "args"], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert not [line for line in running.splitlines() if any(f in line for f in folders)], running


def test_ssh_G_is_asked_once_per_ssh_program(logged_sshd, make_fs, subvolume, tmp_path, job_state_dir):
    """Where no ssh config file sets Ciphers, a run learns from `ssh -G` what the ssh program's
    own cipher list is, once: the next run offers the same order without asking, and an ssh
    program that changed is asked again. The user's own Ciphers need no question at all."""
    module_utils = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
    if module_utils not in sys.path:
        sys.path.insert(0, module_utils)
    from engine.host.endpoints.ssh_ciphers import config_sets_ciphers  # pylint: disable=import-error
    if config_sets_ciphers() is not False:
        pytest.skip("this machine's ssh config sets Ciphers (or cannot be read): every run asks ssh -G")
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=13)
    url = server.url(make_fs("dst") / "backups")
    shims, log = tmp_path / "logged-bin", tmp_path / "ssh.log"
    shims.mkdir()
    shim = shims / "ssh"
    shim.write_text("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %s\nexec %s \"$@\"\n" % (shlex.quote(str(log)), shutil.which("ssh")))
    shim.chmod(0o755)
    env = {"PATH": "%s:%s" % (shims, os.environ["PATH"])}

    def run_and_calls(*extra):
        log.write_text("")
        ok(*ssh_args(server), *extra, source, url, env=env)
        commands.take()
        calls = log.read_text().splitlines()
        masters = [c for c in calls if " -N " in c]
        assert len(masters) == 1, calls
        return [c for c in calls if " -G " in c], re.findall(r"Ciphers=(\S+)", masters[0])

    asked, first_ciphers = run_and_calls()
    assert len(asked) == 1
    assert (job_state_dir / "ssh-programs.json").exists()
    asked, ciphers = run_and_calls()
    assert asked == [] and ciphers == first_ciphers
    with open(shim, "a", encoding="utf-8") as handle:
        handle.write("# another version of the program\n")
    asked, ciphers = run_and_calls()
    assert len(asked) == 1 and ciphers == first_ciphers
    asked, ciphers = run_and_calls("--ssh-opt", "Ciphers=aes256-ctr")
    assert asked == [] and ciphers == ["aes256-ctr"]


def test_the_users_own_connection_sharing_is_left_to_them(logged_sshd, make_fs, subvolume):
    """`--ssh-opt` with the user's ControlMaster, ControlPath and ControlPersist: the run opens no
    master of its own and ends none, so the user's master outlives the run and the next run
    reuses it: one connection for both."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=12)
    url = server.url(make_fs("dst") / "backups")
    sockets = Path(tempfile.mkdtemp(prefix="cm-"))  # short: a socket's path has at most 107 bytes
    mine = ["--ssh-opt", "ControlMaster auto", "--ssh-opt", "ControlPath=%s/%%C" % sockets,
            "--ssh-opt", "ControlPersist=60"]
    try:
        ok(*ssh_args(server), *mine, source, url)
        commands.take()
        assert commands.connections == 1 and len(os.listdir(sockets)) == 1  # the user's master stays
        ok(*ssh_args(server), *mine, source, url)
        commands.take()
        assert commands.connections == 0, "the second run went through the user's master"
        assert len(os.listdir(sockets)) == 1
    finally:
        for name in os.listdir(sockets):
            subprocess.run(["ssh", "-o", "ControlPath=%s" % (sockets / name), "-O", "exit", "x"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(sockets, ignore_errors=True)


def test_a_receive_started_before_a_send_that_fails_here_receives_nothing(logged_sshd, make_fs, subvolume):
    """The receive of a send to a plain ssh host starts before the stream (its channel opens while
    the run samples the data and saves the lock file). When the lock file cannot be saved (rule 3:
    no byte before it is durable), that receive gets an empty stream: nothing arrives, not even a
    partial receive; the run's error is the lock file's, and the next run sends the snapshot."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=7)
    lock_file = source / "snapshot" / ".outstanding_transfers"
    assert lock_file.exists()
    (source / "more.txt").write_text("more\n")
    commands.take()
    subprocess.run(["chattr", "+i", str(lock_file)], check=True)  # its replacement is refused (EPERM)
    try:
        failed = run_cli(*args)
    finally:
        subprocess.run(["chattr", "-i", str(lock_file)], check=True)
    taken = commands.take()
    assert failed.code == 1, failed.explain()
    assert "cannot write %s" % lock_file in failed.explain(), failed.explain()
    assert [c for c in taken if "btrfs receive" in c], f"no receive was started early: {taken}"
    assert sorted(p.name for p in dest.iterdir()) == [one]
    assert_no_partial(dest)
    two = failed.result["snapshot"]["name"]
    ok(*args)
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    assert live_locks(source / "snapshot") == {}


def test_the_receive_starts_before_the_survey_answers(logged_sshd, make_fs, subvolume, tmp_path):
    """A run whose one destination is a plain ssh host that received the last stream in its shell
    starts the receive of its new snapshot before that host's survey answers: the receive's
    channel opens during the survey's round trip. Here the survey waits until the receive has
    started, which it does only when the run starts it first; the backup is the incremental one."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=11)
    said = survey_waits_for_a_receive(server, commands.log, tmp_path, until="start", tenths=50)
    (source / "more.txt").write_text("more\n")
    commands.take()
    result = ok(*args).result
    taken = commands.take()
    assert said.read_text() == "yes\n", taken
    assert_commands(taken, SOMETHING_TO_SEND, "incremental send with its receive started first")
    two = result["snapshot"]["name"]
    assert [t[1] for t in sent(result, url)] == ["incremental"], result
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    assert_same_tree(source / "snapshot" / two, dest / two)


def test_a_receive_started_before_a_survey_that_refuses_makes_nothing(logged_sshd, make_fs, subvolume, tmp_path):
    """The receive started before the survey is the last run's guess, and the run planned on what
    that run left there, so it took its snapshot and sent at once. When the survey then says the
    destination cannot take the snapshot (its folder and that folder's parent are gone), the
    receive has refused the stream (its folder is not on the filesystem it was) and the snapshot
    is deleted again (rule 7): nothing is kept, nothing created there, and the error says why.
    With the folder back, the next run sends."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=12)
    top = make_fs("dst") / "site"
    dest = top / "backups"
    top.mkdir()
    url = server.url(dest)
    args = ssh_args(server) + [source, url]
    one = ok(*args).result["snapshot"]["name"]
    subprocess.run(["btrfs", "subvolume", "delete", str(dest / one)], check=True, capture_output=True)
    shutil.rmtree(top)
    commands.take()
    failed = run_cli(*args)
    taken = commands.take()
    assert failed.code == 1, failed.explain()
    assert f"no snapshot kept, as no destination can take it: {failed.result['destinations'][0]['transfers'][0]['snapshot']}" \
        in failed.explain(), failed.explain()
    assert "does not exist, nor does its parent folder" in failed.result["destinations"][0]["error"], failed.explain()
    assert failed.result["snapshot"] is None and live_locks(source / "snapshot") == {}, failed.explain()
    assert [c for c in taken if "btrfs receive" in c], f"no receive was started before the survey: {taken}"
    assert not top.exists()
    assert snapshot_names(source / "snapshot") == [one]
    top.mkdir()
    two = ok(*args).result["snapshot"]["name"]
    assert sorted(p.name for p in dest.iterdir()) == [one, two]
    assert_backup(dest, source / "snapshot" / two, parent_name=one)


def test_a_receive_started_before_the_survey_into_a_folder_now_missing(logged_sshd, make_fs, subvolume):
    """The last run's folder is gone but its parent is there: the receive started before the
    survey fails on its own, the run creates the folder in its first send's receive command, and
    the chain arrives again whole; nothing partial anywhere."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=13)
    subprocess.run(["btrfs", "subvolume", "delete", str(dest / one)], check=True, capture_output=True)
    dest.rmdir()
    commands.take()
    result = ok(*args).result
    taken = commands.take()
    two = result["snapshot"]["name"]
    # Planned on what the last run left, refused by the receive (no folder), planned again.
    assert replanned_first(result, url) == [(one, "full"), (two, "incremental")], result
    assert any(c.startswith("mkdir -p -- ") for c in taken), taken
    assert sorted(p.name for p in dest.iterdir()) == [one, two]
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    assert_same_tree(source / "snapshot" / two, dest / two)
    assert live_locks(source / "snapshot") == {}


def test_no_receive_is_started_before_the_survey_of_a_host_that_cannot_be_reached(logged_sshd, make_fs, subvolume):
    """The run's shared connection to the host fails: the receive is not started (it would try to
    connect by itself, and a silent host would hold the run for its timeout); the run goes on as
    for any unreachable host: its snapshot waits for the host to be back."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=17)
    server.stop()
    failed = run_cli("-v", "debug", *args)
    assert failed.code == 1, failed.explain()
    assert "no destination can take a backup now" in failed.stderr, failed.explain()
    assert "btrfs receive" not in failed.stderr, failed.stderr
    assert len(snapshot_names(source / "snapshot")) == 2 and sorted(p.name for p in dest.iterdir()) == [one]


def test_a_catch_up_run_takes_the_receive_started_for_its_new_snapshot(logged_sshd, make_fs, subvolume):
    """A run that first sends an older snapshot (the last run could not reach the host) still
    gives the receive it started before the survey to its own new snapshot's send; both arrive
    as incrementals of the chain."""
    server, commands = logged_sshd
    source, dest, url, args, one = pushed_once(server, make_fs, subvolume, seed=14)
    (source / "more.txt").write_text("more\n")
    commands.take()
    two = ok(*args, "-T").result["snapshot"]["name"]  # taken, not sent
    assert not [c for c in commands.take() if "btrfs receive" in c], "a run that sends nothing started a receive"
    (source / "again.txt").write_text("again\n")
    result = ok(*args).result
    taken = commands.take()
    three = result["snapshot"]["name"]
    assert [t[:2] for t in sent(result, url)] == [(two, "incremental"), (three, "incremental")], result
    assert_commands(taken, SOMETHING_TO_SEND + 1, "catch-up run of two snapshots")
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    assert_backup(dest, source / "snapshot" / three, parent_name=two)
    assert_same_tree(source / "snapshot" / three, dest / three)


def test_a_host_whose_key_now_runs_serve(logged_sshd, make_fs, subvolume, tmp_path):
    """A host that received the last stream in its shell, whose key then was given to `serve`:
    the next run still starts a plain host's receive before its survey. serve declines that form
    at once (taken, it would hold the root's lock that the survey waits for), and counts no
    refusal; the survey says it is serve, and the snapshot arrives through serve's own form,
    incrementally. The run after that starts no such receive."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=15)
    root = make_fs("dst") / "web1"
    root.mkdir()
    dest = root / "home"
    url = server.url(dest)
    args = ssh_args(server) + [source, url]
    one = ok(*args).result["snapshot"]["name"]
    metrics = tmp_path / "serve-refusals.prom"
    logging_forced_command(server, commands.log, f"{shlex.quote(str(CLI))} serve --root {shlex.quote(str(root))} "
                                                 f"--metrics-file {shlex.quote(str(metrics))}")
    (source / "more.txt").write_text("more\n")
    commands.take()
    result = ok(*args).result
    taken = commands.take()
    two = result["snapshot"]["name"]
    assert [c for c in taken if "btrfs-backup-arrived" in c], f"no plain host's receive was started: {taken}"
    assert replanned_first(result, url) == [(two, "incremental")], result
    assert_backup(dest, source / "snapshot" / two, parent_name=one)
    assert_same_tree(source / "snapshot" / two, dest / two)
    assert sorted(p.name for p in dest.iterdir()) == [one, two]
    counted = [line for line in metrics.read_text().splitlines() if line and not line.startswith("#")]
    assert counted and all(line.endswith(" 0") for line in counted), counted
    (source / "again.txt").write_text("again\n")
    ok(*args)
    assert not [c for c in commands.take() if "btrfs-backup-arrived" in c]  # the record now says serve


def test_push_through_serve(logged_serve, make_fs, subvolume):
    server, commands, root = logged_serve
    source = small_source(make_fs, subvolume, seed=2)
    (root / "data").mkdir()
    url = server.url(root / "data")
    full, incremental, nothing = three_runs(ssh_args(server) + [source, url], url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    assert_commands(full, SOMETHING_TO_SEND, "full send")
    assert_commands(incremental, SOMETHING_TO_SEND, "incremental send")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to send")


def test_pull_from_ssh(logged_sshd, make_fs, subvolume):
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=3)
    dest = make_fs("dst")
    full, incremental, nothing = three_runs(ssh_args(server) + [server.url(source), dest], str(dest), commands,
                                            source)
    show(full=full, incremental=incremental, nothing=nothing)
    # Its lock file is written in the send's own command, before the send starts (rule 3), and
    # settled in one command after the arrival was verified. On the first run the survey also
    # answers for the source itself, and the snapshot's command creates the snapshot folder.
    assert_commands(full, PULLED_SOURCE, "first pull")
    assert_commands(incremental, PULLED_SOURCE, "incremental pull")
    send = [c for c in incremental if "btrfs send" in c]
    before_send = send[0].split("btrfs send")[0]
    assert len(send) == 1 and ".outstanding_transfers" in before_send, incremental
    assert before_send.index(".outstanding_transfers") < before_send.index("btrfs subvolume snapshot -r"), send
    assert not [c for c in full + incremental if c.startswith("mkdir")], "the send's command makes the folder"
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to pull")
    first, second = snapshot_names(source / "snapshot")
    assert_backup(dest, source / "snapshot" / first)
    assert_backup(dest, source / "snapshot" / second, parent_name=first)  # the chain: parent uuid
    assert_same_tree(source / "snapshot" / second, dest / second)
    assert_no_partial(dest)
    assert live_locks(source / "snapshot") == {}


def test_pull_with_retention_at_the_source(logged_sshd, make_fs, subvolume):
    """An hourly pull that also deletes an old snapshot at the source (-N): the settled lock file
    goes in the deletion's command (`WRITE && btrfs subvolume delete`), so the run still asks 3 times.
    Retention here (-n) knows each new backup as the snapshot's (by the UUID its send said)."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=7)
    dest = make_fs("dst")
    args = ssh_args(server) + ["-N", "2", "-n", "2", server.url(source), dest]
    for run in range(4):
        (source / ("more-%d.txt" % run)).write_text("more\n")
        result = ok(*args).result
        assert result["warnings"] == [], result["warnings"]
        taken = commands.take()
        show(**{"run %d" % run: taken})
        deletes = [c for c in taken if "btrfs subvolume delete" in c]
        if run >= 2:
            assert_commands(taken, PULLED_SOURCE, "incremental pull with retention at the source")
            assert len(deletes) == 1 and ".outstanding_transfers" in deletes[0].split("btrfs subvolume delete")[0]
    assert len(snapshot_names(source / "snapshot")) == 2
    assert snapshot_names(dest) == snapshot_names(source / "snapshot")
    assert live_locks(source / "snapshot") == {}


def test_pull_with_an_after_snapshot_hook(logged_sshd, make_fs, subvolume, tmp_path):
    """The after_snapshot hook runs between the snapshot and the send, told the snapshot: the
    snapshot is a command of its own, as before (4); the hook sees it taken, its uuid known."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=8)
    dest = make_fs("dst")
    told = tmp_path / "told"
    hook = f"sh -c 'test -d \"$BTRFS_BACKUP_SNAPSHOT\" && echo \"$BTRFS_BACKUP_SNAPSHOT\" >> {told}'"
    args = ssh_args(server) + ["--after-snapshot", hook, server.url(source), dest]
    ok(*args)
    commands.take()
    (source / "more.txt").write_text("more\n")
    result = ok(*args).result
    taken = commands.take()
    show(incremental_with_hook=taken)
    assert len(taken) == PULLED_SOURCE_WITH_AFTER_HOOK, "\n".join(taken)
    assert "btrfs subvolume snapshot" in taken[1] and "btrfs send" not in taken[1], taken
    first, second = snapshot_names(source / "snapshot")
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert told.read_text().split() == [str(source / "snapshot" / first), str(source / "snapshot" / second)]
    assert result["snapshot"]["uuid"] == show_subvolume(source / "snapshot" / second).uuid


def pulled_twice_then(server, commands, make_fs, subvolume, seed, body):
    """A source pulled once (a full backup here), 20 KiB changed, and the server's btrfs then
    wrapped by `body` (with_btrfs_wrapper): (source, dest, the pull's arguments)."""
    source = small_source(make_fs, subvolume, seed=seed)
    dest = make_fs("dst")
    args = ssh_args(server) + [server.url(source), dest]
    ok(*args)
    write_mixed_tree(source / "changed", n_small=2, small_size=10240, large_files=[], seed=seed + 100)
    with_btrfs_wrapper(server, commands, body)
    commands.take()
    return source, dest, args


def relayed_once_then(server, sshd, commands, make_fs, subvolume, seed, body):
    """A source at `server` relayed once to `sshd` (a full backup there), 20 KiB changed, and
    the source's btrfs then wrapped by `body` (with_btrfs_wrapper): (source, dest, its url, the
    relay's arguments)."""
    source = small_source(make_fs, subvolume, seed=seed)
    dest = make_fs("dst") / "relayed"
    dest.mkdir()
    url = sshd.url(dest)
    args = ssh_args(server, sshd) + [server.url(source), url]
    ok(*args)
    write_mixed_tree(source / "changed", n_small=2, small_size=10240, large_files=[], seed=seed + 100)
    with_btrfs_wrapper(server, commands, body)
    commands.take()
    return source, dest, url, args


SNAPSHOT_FAILS = ('if [ "$1 $2" = "subvolume snapshot" ]; then '
                  'echo "ERROR: cannot snapshot \'$4\': No space left on device" >&2; exit 1; fi\n')
SEND_IS_CUT = 'if [ "$1" = send ]; then "$REAL" "$@" | head -c 300; exit 1; fi\n'


def test_a_snapshot_that_fails_at_a_pulled_source(logged_sshd, make_fs, subvolume):
    """The same clear error as a snapshot taken apart; nothing received, no lock left naming a
    snapshot that does not exist (settled in the same run, its last command); the next run works."""
    server, commands = logged_sshd
    source, dest, args = pulled_twice_then(server, commands, make_fs, subvolume, 9, SNAPSHOT_FAILS)
    before = sorted(subvolumes(dest))
    done = run_cli(*args)
    taken = commands.take()
    show(failed_snapshot=taken)
    assert done.code != 0, done.explain()
    error = done.result["errors"][0]
    assert re.match(r"cannot snapshot %s to %s/snapshot/[0-9-]+: ERROR: cannot snapshot '%s': No space left on device$"
                    % (source, source, source), error), done.explain()
    assert done.result["snapshot"] is None, done.result["snapshot"]
    assert sorted(subvolumes(dest)) == before and len(snapshot_names(source / "snapshot")) == 1
    assert live_locks(source / "snapshot") == {}, "a lock names the snapshot that was not taken"
    assert len(taken) == PULLED_SOURCE and ".outstanding_transfers" in taken[-1], "\n".join(taken)
    assert done.result["locks"] == {}  # the run's record (what `status` reads) counts no lock
    logging_forced_command(server, commands.log, AS_ASKED)
    result = ok(*args).result
    first, second = snapshot_names(source / "snapshot")
    assert [t[1:] for t in sent(result, str(dest))] == [("incremental", first)]
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert_same_tree(source / "snapshot" / second, dest / second)


def test_a_snapshot_that_fails_at_a_relayed_source(logged_sshd, sshd, make_fs, subvolume):
    """A relay's snapshot taken in the command of its gated send fails as one taken apart: the
    same clear error, nothing sent, no snapshot and no lock left at the source; the next run
    sends the change incrementally."""
    server, commands = logged_sshd
    source, dest, url, args = relayed_once_then(server, sshd, commands, make_fs, subvolume, 16, SNAPSHOT_FAILS)
    before = sorted(subvolumes(dest))
    done = run_cli(*args)
    taken = commands.take()
    assert done.code != 0, done.explain()
    assert re.match(r"cannot snapshot %s to %s/snapshot/[0-9-]+: ERROR: cannot snapshot '%s': No space left on device$"
                    % (source, source, source), done.result["errors"][0]), done.explain()
    assert done.result["snapshot"] is None, done.result["snapshot"]
    gated = [c for c in taken if "--no-data" in c and "btrfs subvolume snapshot -r" in c]
    assert len(gated) == 1, taken
    assert not [c for c in taken if "btrfs send" in c and c not in gated], "a send after a failed snapshot"
    assert sorted(subvolumes(dest)) == before and len(snapshot_names(source / "snapshot")) == 1
    assert live_locks(source / "snapshot") == {}
    logging_forced_command(server, commands.log, AS_ASKED)
    result = ok(*args).result
    first, second = snapshot_names(source / "snapshot")
    assert [t[1:] for t in sent(result, url)] == [("incremental", first)]
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert_same_tree(source / "snapshot" / second, dest / second)


#: At the relay's source: the `--no-data` pass fails; or the real send, after the gate, is cut.
NO_DATA_FAILS = 'if [ "$1 $2" = "send --no-data" ]; then echo "ERROR: no estimate today" >&2; exit 1; fi\n'
REAL_SEND_IS_CUT = ('if [ "$1" = send ] && [ "$2" != --no-data ]; then "$REAL" "$@" | head -c 300; '
                    'exit 1; fi\n')


def test_a_relayed_source_whose_size_estimate_fails(logged_sshd, sshd, make_fs, subvolume):
    """The gated command ends before its gate, its snapshot taken: the snapshot is sent without an
    estimate in a command of its own, incrementally, and arrives whole; no lock is left."""
    server, commands = logged_sshd
    source, dest, url, args = relayed_once_then(server, sshd, commands, make_fs, subvolume, 17, NO_DATA_FAILS)
    result = ok(*args).result
    taken = commands.take()
    first, second = snapshot_names(source / "snapshot")
    assert [t[1:] for t in sent(result, url)] == [("incremental", first)]
    assert len(taken) == RELAYED_SOURCE + 1, taken  # the send, apart from the gated command that ended
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert_same_tree(source / "snapshot" / second, dest / second)
    assert live_locks(source / "snapshot") == {}


def test_a_relayed_send_cut_after_its_gate(logged_sshd, sshd, make_fs, subvolume):
    """The stream that went on from the gate is cut at the source: nothing partial is kept at the
    destination, the snapshot stays at the source (locked), and the next run sends it."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=18)
    write_mixed_tree(source / "large", n_small=0, small_size=0, large_files=[2 << 20], seed=118)
    dest = make_fs("dst") / "relayed"
    dest.mkdir()
    url = sshd.url(dest)
    args = ssh_args(server, sshd) + ["--compress", "no", server.url(source), url]
    with_btrfs_wrapper(server, commands, REAL_SEND_IS_CUT)
    done = run_cli(*args)
    assert done.code != 0, done.explain()
    assert subvolumes(dest) == {}, subvolumes(dest)
    (name,) = snapshot_names(source / "snapshot")
    assert live_locks(source / "snapshot") != {}
    logging_forced_command(server, commands.log, AS_ASKED)
    result = ok(*args).result
    assert [t[1:] for t in sent(result, url)][0] == ("full", None)
    assert_backup(dest, source / "snapshot" / name)
    assert_same_tree(source / "snapshot" / name, dest / name)
    assert live_locks(source / "snapshot") == {}


NO_DATA_STALLS = 'if [ "$1 $2" = "send --no-data" ]; then sleep 10; fi\n'  # ends by itself soon after


def test_a_relay_stopped_while_its_source_estimates(logged_sshd, sshd, make_fs, subvolume):
    """SIGTERM while the gated command's `--no-data` pass runs: the run ends at once and leaves no
    process; its snapshot, taken at the source, stays locked; the next run sends it and its own."""
    server, commands = logged_sshd
    source, dest, url, args = relayed_once_then(server, sshd, commands, make_fs, subvolume, 19, NO_DATA_STALLS)
    wait_next_second()
    with start_cli(*args) as cli:
        cli.child("the gated send", lambda p: any('read -r verdict' in a for a in p.argv))
        deadline = time.monotonic() + 30
        while len(snapshot_names(source / "snapshot")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        cli.signal(signal.SIGTERM)
        stopped = cli.finish(timeout=30)
        assert stopped.code == 143 and cli.elapsed < 8, (cli.elapsed, stopped.explain())  # not after the stall
        assert "terminated" in stopped.stderr, stopped.stderr
        assert cli.strays() == [] and cli.ssh_masters() == [], cli.strays()
    first, second = snapshot_names(source / "snapshot")
    assert live_locks(source / "snapshot") == {second: {"locks": [url]}, first: {"parent_locks": [url]}}, \
        read_locks(source / "snapshot")
    assert sorted(subvolumes(dest)) == [first]
    logging_forced_command(server, commands.log, AS_ASKED)
    result = ok(*args).result
    names = snapshot_names(source / "snapshot")
    assert [t[1:] for t in sent(result, url)][0] == ("incremental", first), sent(result, url)
    for parent, name in zip(names, names[1:]):  # the chain stayed incremental
        assert_backup(dest, source / "snapshot" / name, parent_name=parent)
    assert_same_tree(source / "snapshot" / names[-1], dest / names[-1])
    assert live_locks(source / "snapshot") == {}


def test_a_send_cut_at_a_pulled_source(logged_sshd, make_fs, subvolume):
    """The snapshot stays at the source (locked), nothing partial is kept here, and the next run
    sends it incrementally, then its own."""
    server, commands = logged_sshd
    source, dest, args = pulled_twice_then(server, commands, make_fs, subvolume, 10, SEND_IS_CUT)
    done = run_cli(*args)
    assert done.code != 0, done.explain()
    first, cut = snapshot_names(source / "snapshot")
    assert done.result["snapshot"]["uuid"] == show_subvolume(source / "snapshot" / cut).uuid
    assert_no_partial(dest)
    assert sorted(subvolumes(dest)) == [first]
    assert live_locks(source / "snapshot") == {first: {"parent_locks": [str(dest)]}, cut: {"locks": [str(dest)]}}
    logging_forced_command(server, commands.log, AS_ASKED)
    (source / "more.txt").write_text("more\n")
    result = ok(*args).result
    newest = snapshot_names(source / "snapshot")[-1]
    assert [t[1:] for t in sent(result, str(dest))] == [("incremental", first), ("incremental", cut)]
    assert_backup(dest, source / "snapshot" / cut, parent_name=first)
    assert_backup(dest, source / "snapshot" / newest, parent_name=cut)
    assert_same_tree(source / "snapshot" / newest, dest / newest)
    assert live_locks(source / "snapshot") == {}


def test_snapshot_facts_that_cannot_be_read_are_asked_apart(logged_sshd, make_fs, subvolume):
    """Rule 2 without the snapshot's marked facts (its `subvolume show` fails at the source): the
    send goes on, the source is listed apart for the snapshot's UUID, and the backup is checked
    against it (one command more)."""
    server, commands = logged_sshd
    source, dest, args = pulled_twice_then(server, commands, make_fs, subvolume, 11, SHOW_FAILS)
    result = ok(*args).result
    taken = commands.take()
    assert len(taken) == PULLED_SOURCE + 1 and "btrfs subvolume list" in taken[2], "\n".join(taken)
    first, second = snapshot_names(source / "snapshot")
    assert result["snapshot"]["uuid"] == show_subvolume(source / "snapshot" / second).uuid
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert live_locks(source / "snapshot") == {}


def test_snapshot_facts_that_cannot_be_read_at_all_keep_no_backup(logged_sshd, make_fs, subvolume):
    """Neither the marked facts nor a listing apart answer after the snapshot: what arrived cannot be
    checked, so it is not kept (never unverified); the next run sends it again."""
    server, commands = logged_sshd
    flag = server.workdir / "snapshot-taken"
    body = (SHOW_FAILS + f'if [ "$1 $2" = "subvolume snapshot" ]; then touch {flag}; fi\n'
            f'if [ "$1 $2" = "subvolume list" ] && [ -e {flag} ]; then echo "ERROR: not now" >&2; exit 1; fi\n')
    source, dest, args = pulled_twice_then(server, commands, make_fs, subvolume, 12, body)
    done = run_cli(*args)
    assert done.code != 0 and "could not be read: its backup cannot be verified" in done.stderr, done.explain()
    first, second = snapshot_names(source / "snapshot")
    assert sorted(subvolumes(dest)) == [first], "an unverified backup was kept"
    assert live_locks(source / "snapshot")[second] == {"locks": [str(dest)]}
    logging_forced_command(server, commands.log, AS_ASKED)
    result = ok(*args).result
    assert [t[:2] for t in sent(result, str(dest))][0] == (second, "incremental")
    assert_backup(dest, source / "snapshot" / second, parent_name=first)


def test_a_lock_of_a_snapshot_never_taken_is_cleared(logged_sshd, make_fs, subvolume):
    """A run killed between the lock file's write and the snapshot in the send's command leaves a
    lock naming a snapshot that does not exist: the next run clears it and goes on incrementally;
    its record counts no lock (what `status` shows)."""
    server, commands = logged_sshd
    source, dest, args = pulled_twice_then(server, commands, make_fs, subvolume, 13, "")
    first = snapshot_names(source / "snapshot")[0]
    never = "20250101-000000"
    (source / "snapshot" / ".outstanding_transfers").write_text(
        '{"%s": {"locks": ["%s"]}, "%s": {"parent_locks": ["%s"]}}' % (never, dest, first, dest))
    result = ok(*args).result
    second = snapshot_names(source / "snapshot")[-1]
    assert sorted(destination(result, str(dest))["locks_cleared"]) == sorted([first, never])
    assert [t[1:] for t in sent(result, str(dest))] == [("incremental", first)]
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert live_locks(source / "snapshot") == {} and result["locks"] == {}


def test_one_pulled_stream_to_two_destinations(logged_sshd, make_fs, subvolume):
    """One send (its snapshot in its command) fanned out to two folders here: each backup checked
    against the snapshot's marked UUID; still 3 commands at the source."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=15)
    dests = [make_fs("dst"), make_fs("dst")]
    args = ssh_args(server) + [server.url(source)] + dests
    ok(*args)
    (source / "more.txt").write_text("more\n")
    commands.take()
    result = ok(*args).result
    assert_commands(commands.take(), PULLED_SOURCE, "incremental pull to two destinations")
    first, second = snapshot_names(source / "snapshot")
    for dest in dests:
        assert [t[1:] for t in sent(result, str(dest))] == [("incremental", first)]
        assert_backup(dest, source / "snapshot" / second, parent_name=first)
        assert_same_tree(source / "snapshot" / second, dest / second)


def test_a_pulled_snapshot_no_send_takes(logged_sshd, make_fs, subvolume):
    """A run whose snapshot no send takes along (a job without destinations) still takes it, in a
    command of its own after the destinations' phase, with its uuid known."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=16)
    for run in range(2):
        result = ok(*ssh_args(server), server.url(source)).result
        assert result["snapshot"]["uuid"] == show_subvolume(source / "snapshot" / result["snapshot"]["name"]).uuid
        assert len(commands.take()) == 2  # all it must know, the snapshot
    assert len(snapshot_names(source / "snapshot")) == 2 and live_locks(source / "snapshot") == {}


def test_a_pull_in_check_mode(logged_sshd, make_fs, subvolume):
    """Check mode plans the snapshot and its send in the same words; it asks the source once and
    changes nothing there."""
    server, commands = logged_sshd
    source, dest, args = pulled_twice_then(server, commands, make_fs, subvolume, 14, "")
    first = snapshot_names(source / "snapshot")[0]
    plan = ok("--check", *args).result["plan"]
    assert len(commands.take()) == NOTHING_TO_SEND
    assert [re.sub(r"[0-9]{8}-[0-9]{6}", "NEW", line) for line in plan] == [
        f"create snapshot {source}/snapshot/NEW of {source}", f"send NEW to {dest} (incremental from NEW)"], plan
    assert snapshot_names(source / "snapshot") == [first] and live_locks(source / "snapshot") == {}


def test_relay_from_one_host_to_another(logged_sshd, sshd, make_fs, subvolume):
    """A pulled source sent on to another host: the destination host's count is a push's."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=4)
    dest = make_fs("dst") / "relayed"
    dest.mkdir()
    url = server.url(dest)
    full, incremental, nothing = three_runs(ssh_args(sshd, server) + [sshd.url(source), url], url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    assert_commands(full, SOMETHING_TO_SEND, "full relay")
    assert_commands(incremental, SOMETHING_TO_SEND, "incremental relay")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to relay")


@pytest.mark.parametrize("resumable, at_most", [
    ("auto", RELAYED_SOURCE), ("never", PULLED_SOURCE), ("always", RELAYED_SOURCE_STAGED)])
def test_relay_at_its_source(logged_sshd, sshd, make_fs, subvolume, resumable, at_most):
    """A relay's source host. With the default `--resumable auto` a stream of 1 GiB or more to an
    ssh host is staged, so its size is estimated before the first byte by a `--no-data` pass; its
    command also takes the snapshot before it and waits at a gate after it, then sends the stream
    when the verdict is not to stage it: a pull's count. Without staging, the snapshot rides in the
    send's command. Always staged: the gate's verdict is `stop`, the staged transfer sends it."""
    server, commands = logged_sshd
    source = small_source(make_fs, subvolume, seed=5)
    dest = make_fs("dst") / "relayed"
    dest.mkdir()
    url = sshd.url(dest)
    args = ssh_args(server, sshd) + ["--resumable", resumable, server.url(source), url]
    full, incremental, nothing = three_runs(args, url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    assert_commands(full, at_most, "first relay, at its source")
    assert_commands(incremental, at_most, "incremental relay, at its source")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to relay, at its source")
    snapshots = [c for c in incremental if "btrfs subvolume snapshot -r" in c]
    assert len(snapshots) == 1 and "btrfs send" in snapshots[0], incremental
    assert ("--no-data" in snapshots[0]) == (resumable != "never"), snapshots
    assert ('read -r verdict && [ "$verdict" = go ]' in snapshots[0]) == (resumable != "never"), snapshots
    sends = [c for c in incremental if re.search(r"btrfs send (?!--no-data)", c)]
    if resumable == "always":  # the gated command ended at its gate: the staged transfer's send is its own
        assert len(sends) == 2 and sends[0] == snapshots[0], sends
    else:
        assert sends == snapshots, sends
    first, second = snapshot_names(source / "snapshot")
    assert_backup(dest, source / "snapshot" / first)
    assert_backup(dest, source / "snapshot" / second, parent_name=first)
    assert_same_tree(source / "snapshot" / second, dest / second)
    assert live_locks(source / "snapshot") == {}


#: A btrfs in front of the real one at the ssh host: `subvolume show` fails (the receive's answer
#: cannot be read), or `receive` leaves what it received writable (exit status 0 all the same).
SHOW_FAILS = 'if [ "$1 $2" = "subvolume show" ]; then echo "ERROR: not now" >&2; exit 1; fi\n'
RECEIVE_LEAVES_WRITABLE = ('if [ "$1" = receive ]; then for last; do :; done; "$REAL" "$@" || exit; '
                           'for sub in "$last"/*; do "$REAL" property set -f -ts "$sub" ro false; done; exit 0; fi\n')


def with_btrfs_wrapper(server, commands, body):
    """The server's key runs each command with `body` as its btrfs (then the real one)."""
    folder = server.workdir / "wrapped-bin"
    folder.mkdir(exist_ok=True)
    wrapper = folder / "btrfs"
    wrapper.write_text(f"#!/bin/sh\nREAL={shlex.quote(shutil.which('btrfs'))}\n{body}exec \"$REAL\" \"$@\"\n")
    wrapper.chmod(0o755)
    logging_forced_command(server, commands.log, f'env PATH={shlex.quote(str(folder))}:"$PATH" ' + AS_ASKED)


def test_an_answer_that_cannot_be_read_gets_the_check_apart(logged_sshd, make_fs, subvolume):
    """Rule 2 without the receive's answer: the arrival is checked by a command of its own."""
    server, commands = logged_sshd
    with_btrfs_wrapper(server, commands, SHOW_FAILS)
    source = small_source(make_fs, subvolume, seed=5)
    dest = make_fs("dst") / "backups"
    dest.mkdir()
    ok(*ssh_args(server), "-f", source / "snapshot", source, server.url(dest))
    taken = commands.take()
    assert len(taken) == SOMETHING_TO_SEND + 1, "\n".join(taken)
    assert "btrfs subvolume show" in taken[1] and "btrfs subvolume list" in taken[2], taken
    assert_backup(dest, source / "snapshot" / snapshot_names(source / "snapshot")[0])


def test_a_writable_arrival_named_in_the_answer_is_no_backup(logged_sshd, make_fs, subvolume):
    """Rule 2 through the receive's own answer: what arrived writable fails the send and goes."""
    server, commands = logged_sshd
    with_btrfs_wrapper(server, commands, RECEIVE_LEAVES_WRITABLE)
    source = small_source(make_fs, subvolume, seed=6)
    dest = make_fs("dst") / "backups"
    dest.mkdir()
    done = run_cli(*ssh_args(server), "-f", source / "snapshot", source, server.url(dest))
    assert done.code != 0 and "did not verify (read-only: False" in done.stderr, done.explain()
    assert_no_partial(dest)
    assert not list(dest.iterdir()), "the writable arrival was left"


def assert_both_backups(source, dest):
    """The full and the incremental backup arrived complete (read-only, received_uuid = the
    snapshot's uuid, the incremental on top of the full) with the snapshots' data."""
    snapshots = snapshot_names(source / "snapshot")
    assert len(snapshots) == 2, snapshots
    assert_backup(dest, source / "snapshot" / snapshots[0])
    assert_backup(dest, source / "snapshot" / snapshots[1], parent_name=snapshots[0])
    for name in snapshots:
        assert_same_tree(source / "snapshot" / name, dest / name)
    assert_no_partial(dest)


def test_push_through_serve_to_a_new_folder(logged_serve, make_fs, subvolume):
    """A serve that says it takes `mkdir -p -- F && ... btrfs receive F` creates the folder in the
    receive's own command: as many commands as a plain host."""
    server, commands, root = logged_serve
    source = small_source(make_fs, subvolume, seed=5)
    url = server.url(root / "data")
    full, incremental, nothing = three_runs(ssh_args(server) + [source, url], url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    assert_commands(full, SOMETHING_TO_SEND + 1, "full send through serve to a new folder")
    assert [c for c in full if c.startswith("mkdir")] == [c for c in full if "btrfs receive" in c], full
    assert any(c.startswith("mkdir -p -- %s && " % shlex.quote(str(root / "data"))) for c in full), full
    assert_commands(incremental, SOMETHING_TO_SEND, "incremental send")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to send")
    assert_both_backups(source, root / "data")


#: In front of serve, what a serve from before the receive that makes its folder does differently:
#: it names no feature after btrfs's version, and it refuses any `&&` (as it refuses every shell
#: operator but the compressed receive's pipe), before running anything.
OLDER_SERVE = """\
case "$SSH_ORIGINAL_COMMAND" in
  *'&&'*) echo "btrfs-backup serve: refused: shell operator '&&' is not allowed" >&2; exit 126 ;;
  *'btrfs --version'*)
    status=$(mktemp)
    { {serve}; echo $? > "$status"; } | sed '/^btrfs-backup-serve-accepts /d'
    read -r code < "$status"; rm -f "$status"; exit "$code" ;;
  *) exec {serve} ;;
esac
"""


def test_push_through_an_older_serve_to_a_new_folder(logged_serve, make_fs, subvolume):
    """A serve that does not say it takes the receive that makes its folder gets a mkdir of its
    own, as before: one command more, and the backups land (nothing was refused)."""
    server, commands, root = logged_serve
    older = server.workdir / "older-serve"
    older.write_text(OLDER_SERVE.replace("{serve}", f"{shlex.quote(str(CLI))} serve --root {shlex.quote(str(root))}"))
    logging_forced_command(server, commands.log, f"/bin/sh {shlex.quote(str(older))}")
    source = small_source(make_fs, subvolume, seed=8)
    url = server.url(root / "data")
    full, incremental, nothing = three_runs(ssh_args(server) + [source, url], url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    assert len(full) == SOMETHING_TO_SEND + 2, "\n".join(full)
    assert not any("&&" in c for c in full + incremental + nothing), full
    assert "mkdir -- %s" % shlex.quote(str(root / "data")) in [c.strip() for c in full], full
    assert_commands(incremental, SOMETHING_TO_SEND, "incremental send")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to send")
    assert_both_backups(source, root / "data")


def test_relay_into_serve(logged_serve, sshd, make_fs, subvolume):
    """A pulled source sent on to a backup server's serve (serve offers no pull itself: a source
    key cannot send, a restore key sends only complete backups back): the server's count is a push's."""
    server, commands, root = logged_serve
    source = small_source(make_fs, subvolume, seed=6)
    (root / "relayed").mkdir()
    url = server.url(root / "relayed")
    full, incremental, nothing = three_runs(ssh_args(sshd, server) + [sshd.url(source), url], url, commands, source)
    show(full=full, incremental=incremental, nothing=nothing)
    assert_commands(full, SOMETHING_TO_SEND, "full relay into serve")
    assert_commands(incremental, SOMETHING_TO_SEND, "incremental relay into serve")
    assert_commands(nothing, NOTHING_TO_SEND, "nothing to relay into serve")
