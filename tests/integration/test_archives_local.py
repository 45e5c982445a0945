"""Archive destinations on local borg and restic repositories, run for real: full then incremental,
a restore equal to the snapshot, one send feeding a btrfs folder and an archive, a killed send that
leaves no complete-looking archive, a wrong passphrase and a locked repository that change nothing,
retention that keeps every needed parent, and a passphrase that appears in no log or result."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import CLI, ok, run_cli, run_subcommand, snapshot_names, subvolumes
from support.btrfs_loop import snapshot
from support.trees import assert_same_tree

SECRET = "correct-horse-battery-7f3a9c"
SOURCE_TREE = dict(n_small=20, small_size=2048, large_files=[1 << 20], seed=3)


def _require(tool):
    if shutil.which(tool) is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{tool} is not installed")


class Store:
    """A repository made for one test with the tool itself, and how a user lists it."""

    def __init__(self, tool, folder: Path):
        _require(tool)
        self.tool = tool
        self.key = folder / "repo.key"
        self.key.write_text(SECRET + "\n")
        self.key.chmod(0o600)
        self.path = folder / f"{tool}-repo"
        self.location = f"{tool}:{self.path}"
        if tool == "borg":
            self._tool("borg", "init", "--encryption", "repokey", str(self.path))
        else:
            self._tool("restic", "init", "--repo", str(self.path))

    def env(self):
        return dict(os.environ, BORG_PASSCOMMAND=f"cat {self.key}", RESTIC_PASSWORD_FILE=str(self.key))

    def _tool(self, *argv, check=True):
        return subprocess.run(argv, env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=check)

    def labels(self) -> list[dict]:
        """Every archive's label words as a dict, oldest first (what a user sees with the tool)."""
        if self.tool == "borg":
            out = self._tool("borg", "list", "--format", "{comment}{NL}", str(self.path)).stdout
            words = [line.split() for line in out.splitlines() if line.strip()]
        else:
            out = self._tool("restic", "--repo", str(self.path), "snapshots", "--json").stdout
            words = [entry.get("tags") or [] for entry in sorted(json.loads(out) or [], key=lambda e: e["time"])]
        labelled = [dict(w.split("=", 1) for w in ws if "=" in w) for ws in words]
        return [label for label in labelled if label]  # not archives of something else

    def delete_newest(self) -> None:
        """Delete the newest archive with the tool itself, behind the job's back."""
        if self.tool == "borg":
            names = self._tool("borg", "list", "--short", str(self.path)).stdout.split()
            self._tool("borg", "delete", f"{self.path}::{names[-1]}")
        else:
            out = self._tool("restic", "--repo", str(self.path), "snapshots", "--json").stdout
            newest = sorted(json.loads(out), key=lambda e: e["time"])[-1]["id"]
            self._tool("restic", "--repo", str(self.path), "forget", "--prune", newest)

    def store_other_archive(self, folder: Path) -> None:
        """Store an archive of something else (not this job's) with the tool itself: the repository
        changes, this job's archives do not."""
        other = folder / "other.txt"
        other.write_text("not a snapshot\n")
        if self.tool == "borg":
            self._tool("borg", "create", f"{self.path}::other-thing", str(other))
        else:
            self._tool("restic", "--repo", str(self.path), "backup", str(other))

    def args(self, *extra):
        return ["--archive-key-file", str(self.key), *extra]


@pytest.fixture(params=["borg", "restic"])
def store(request, tmp_path):
    return Store(request.param, tmp_path)


@pytest.fixture
def borg(tmp_path):
    return Store("borg", tmp_path)


@pytest.fixture
def restic(tmp_path):
    return Store("restic", tmp_path)


def _change(src: Path, day: int, size: int = 200_000):
    """A day's change of the source's data (never its snapshot folder)."""
    (src / f"day-{day}.bin").write_bytes(os.urandom(size))
    (src / "notes.txt").write_text(f"day {day}\n")


def _no_secret_anywhere(*texts, folders=()):
    for text in texts:
        assert SECRET not in text
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_full_then_incremental_and_the_restore_equals_the_snapshot(store, src, restore_fs, job_state_dir):
    first = ok(*store.args("-v", "debug"), src, store.location)
    wait = first.result["destinations"][0]["transfers"]
    assert [t["mode"] for t in wait] == ["full"]
    _change(src, 1)
    second = ok(*store.args("-v", "debug"), src, store.location)
    assert [(t["mode"], t["parent"]) for t in second.result["destinations"][0]["transfers"]] == \
        [("incremental", wait[0]["snapshot"])]
    labels = store.labels()
    names = snapshot_names(src / "snapshot")
    uuids = [subvolumes(src / "snapshot")[n].uuid for n in names]
    assert [(l["snapshot"], l["uuid"], l["parent"]) for l in labels] == \
        [(names[0], uuids[0], "none"), (names[1], uuids[1], uuids[0])]

    restored = run_subcommand("restore", *store.args("--snapshot", names[1]), store.location, restore_fs / "back")
    assert restored.code == 0, restored.explain()
    assert restored.result["archives"] and len(restored.result["archives"]) == 2
    assert_same_tree(src / "snapshot" / names[1], restore_fs / "back")
    assert not [p for p in restore_fs.iterdir() if p.name.startswith(".btrfs-backup-restore-")]
    verified = run_subcommand("verify", *store.args(), src, store.location)
    assert verified.code == 0 and verified.result["ok"] and verified.result["stream_parsed"], verified.explain()
    _no_secret_anywhere(first.stderr, json.dumps(first.result), second.stderr, json.dumps(second.result),
                        restored.stderr, verified.stderr, json.dumps(verified.result), folders=[job_state_dir])


def test_a_repository_nothing_wrote_to_since_is_not_listed_and_the_chain_is_exact(store, src, job_state_dir):
    # Its own files (borg's transaction, restic's snapshot files) say nothing was written to it
    # since the job's last run: that run's record is what it holds, and the repository is opened
    # only by the store's own write.
    ok(*store.args(), src, store.location)
    _change(src, 1)
    second = ok(*store.args("-v", "debug"), src, store.location)
    assert "without opening it to list it" in second.stderr, second.explain()
    assert "--verdict" not in second.stderr
    listed = [line for line in second.stderr.splitlines() if " list " in line or " snapshots " in line]
    assert not [line for line in listed if store.tool in line and ("--json" in line or "--format" in line)], listed
    names = snapshot_names(src / "snapshot")
    uuids = [subvolumes(src / "snapshot")[n].uuid for n in names]
    assert [(t["snapshot"], t["parent"], t["status"]) for t in second.result["destinations"][0]["transfers"]] == \
        [(names[1], names[0], "done")]
    assert [(l["uuid"], l["parent"]) for l in store.labels()] == [(uuids[0], "none"), (uuids[1], uuids[0])]


def _snapshot_taken_before(src: Path) -> Path:
    """A read-only snapshot in the job's snapshot folder, taken before the job runs with -S."""
    (src / "snapshot").mkdir()
    return snapshot(src, src / "snapshot" / "20240101-000000")


def test_a_repository_that_holds_no_archive_is_not_opened_to_be_listed(store, src):
    # Its own files (borg's index maps the manifest alone, restic has no snapshot file) say it
    # holds nothing: a run that takes no snapshot sends in full at once, the store opened only by
    # its own write, neither listed first nor beside the stream.
    taken = _snapshot_taken_before(src)
    done = ok(*store.args("-v", "debug", "-S"), src, store.location)
    assert "the repository's own files say it holds no archive" in done.stderr, done.explain()
    assert "--verdict" not in done.stderr
    listed = [line for line in done.stderr.splitlines() if " list " in line or " snapshots " in line]
    assert not [line for line in listed if store.tool in line and ("--json" in line or "--format" in line)], listed
    assert [(t["snapshot"], t["mode"], t["status"]) for t in done.result["destinations"][0]["transfers"]] == \
        [(taken.name, "full", "done")]
    assert [(l["uuid"], l["parent"]) for l in store.labels()] == [(subvolumes(src / "snapshot")[taken.name].uuid,
                                                                   "none")]
    # Now it holds one: the next run's files say so, and it is listed (beside the stream).
    _change(src, 1)
    second = ok(*store.args("-v", "debug"), src, store.location)
    assert "holds no archive" not in second.stderr
    assert [t["mode"] for t in second.result["destinations"][0]["transfers"]] == ["incremental"]


def test_a_wrong_passphrase_for_a_repository_not_listed_first_says_so(store, src, tmp_path):
    _snapshot_taken_before(src)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-passphrase\n")
    failed = run_cli("--archive-key-file", wrong, "-S", src, store.location)
    assert failed.code != 0, failed.explain()
    (error,) = [line for line in failed.stderr.splitlines() if "ERROR" in line]
    assert "sending 20240101-000000" in error and "is archive_key_file the repository's passphrase?" in error, \
        failed.explain()
    assert store.labels() == []
    assert "not-the-passphrase" not in failed.stderr + json.dumps(failed.result)


def _at_host(tmp_path: Path, host: str):
    """(program, env): the CLI as a run at another host starts it, in a UTS namespace of its own
    named `host` (borg and restic record that name), with a job state folder of its own."""
    program = tmp_path / f"at-{host}"
    program.write_text("#!/bin/sh\nexec unshare --uts sh -c 'hostname \"$0\" && exec \"$@\"' %s %s \"$@\"\n"
                       % (shlex.quote(host), shlex.quote(str(CLI))))
    program.chmod(0o755)
    state = tmp_path / f"{host}-state"
    state.mkdir()
    return program, {"BTRFS_BACKUP_STATE_DIR": str(state)}


def test_a_job_of_the_same_name_at_another_host_is_another_job(store, src, make_fs, subvolume, restore_fs, tmp_path):
    # The same role job at two hosts, one shared repository: each host plans on and prunes only the
    # archives it stored; the other host's are never its own (they once were, and were deleted).
    other = subvolume(make_fs("other", size="256M") / "data")
    hosts = {"web1": (src,) + _at_host(tmp_path, "web1"), "web2": (other,) + _at_host(tmp_path, "web2")}
    for day in range(3):
        _change(src, day)
        _change(other, day + 10)
        for host, (source, program, env) in hosts.items():
            done = run_cli(*store.args("--job-name", "home", "-n", "1", "--archive-full-every", "2"), source,
                           store.location, program=program, env=env)
            assert done.code == 0, done.explain()
            assert "none of a snapshot still at the source" not in done.stderr, done.explain()
            if day:  # the chain goes on: an incremental from this host's own last archive
                assert [t["mode"] for t in done.result["destinations"][0]["transfers"]] == \
                    ["incremental" if day == 1 else "full"], done.explain()
    # Each host kept its newest and, where it is an incremental, its parent; none of the other's went.
    newest = {host: snapshot_names(source / "snapshot")[-1] for host, (source, _p, _e) in hosts.items()}
    # Day 3 is a full stream at each host (every 2nd), so the older chain went with -n 1.
    assert sorted(l["uuid"] for l in store.labels()) == \
        sorted(subvolumes(source / "snapshot")[newest[host]].uuid for host, (source, _p, _e) in hosts.items())
    # A restore at a host reads its own archives; at a third, it asks which host's.
    program, env = hosts["web2"][1:]
    back = run_subcommand("restore", *store.args("--job-name", "home"), store.location, restore_fs / "web2",
                          program=program, env=env)
    assert back.code == 0 and back.result["snapshot"] == newest["web2"], back.explain()
    assert_same_tree(other / "snapshot" / newest["web2"], restore_fs / "web2")
    vault = _at_host(tmp_path, "vault")
    asked = run_subcommand("restore", *store.args("--job-name", "home"), store.location, restore_fs / "x",
                           program=vault[0], env=vault[1])
    assert asked.code != 0 and "several hosts (web1, web2): give --archive-host" in asked.stderr, asked.explain()
    chosen = run_subcommand("restore", *store.args("--job-name", "home", "--archive-host", "web1"),
                            store.location, restore_fs / "web1", program=vault[0], env=vault[1])
    assert chosen.code == 0 and chosen.result["snapshot"] == newest["web1"], chosen.explain()
    assert_same_tree(src / "snapshot" / newest["web1"], restore_fs / "web1")


def test_a_run_sends_on_the_last_runs_forecast_while_the_store_is_listed(store, src, job_state_dir, tmp_path):
    ok(*store.args(), src, store.location)
    store.store_other_archive(tmp_path)  # written to since: listed, and the listing agrees
    _change(src, 1)
    second = ok(*store.args("-v", "debug"), src, store.location)
    # The stream waited for the run's word (the listing beside it agreed with the forecast).
    assert "--verdict" in second.stderr, second.explain()
    names = snapshot_names(src / "snapshot")
    uuids = [subvolumes(src / "snapshot")[n].uuid for n in names]
    assert [(t["snapshot"], t["parent"], t["status"]) for t in second.result["destinations"][0]["transfers"]] == \
        [(names[1], names[0], "done")]
    assert [(l["uuid"], l["parent"]) for l in store.labels()] == [(uuids[0], "none"), (uuids[1], uuids[0])]
    _no_secret_anywhere(second.stderr, folders=[job_state_dir])


def test_a_forecast_the_listing_contradicts_is_stopped_and_planned_again(store, src):
    # Rule 1: the run planned on what its last run left (parent: the newest archive), but that
    # archive was deleted since: the stream is stopped, nothing of it stays, and the run sends again
    # from the parent the store really holds.
    ok(*store.args(), src, store.location)
    _change(src, 1)
    ok(*store.args(), src, store.location)
    store.delete_newest()
    _change(src, 2)
    third = ok(*store.args("-v", "debug"), src, store.location)
    names = snapshot_names(src / "snapshot")
    uuids = [subvolumes(src / "snapshot")[n].uuid for n in names]
    transfers = [(t["snapshot"], t["parent"], t["status"]) for t in third.result["destinations"][0]["transfers"]]
    assert transfers == [(names[2], names[1], "replanned"), (names[1], names[0], "done"), (names[2], names[1], "done")], \
        third.explain()
    assert "holds other archives than the last run left" in third.stderr
    assert [(l["snapshot"], l["uuid"], l["parent"]) for l in store.labels()] == \
        [(names[0], uuids[0], "none"), (names[1], uuids[1], uuids[0]), (names[2], uuids[2], uuids[1])]
    assert third.result["locks"] == {} and not third.result["errors"]


def test_one_send_feeds_a_btrfs_folder_and_an_archive(borg, src, dst, tmp_path):
    planned = ok(*borg.args("--check"), src, dst, borg.location)
    assert [(t["mode"], t["status"]) for d in planned.result["destinations"] for t in d["transfers"]] == \
        [("full", "planned"), ("full", "planned")]
    assert borg.labels() == [] and not (src / "snapshot").exists()
    done = ok(*borg.args(), src, dst, borg.location)
    name = snapshot_names(src / "snapshot")[0]
    for dest in done.result["destinations"]:
        assert dest["transfers"][0]["status"] == "done" and dest["transfers"][0].get("shared_with"), dest
    assert subvolumes(dst)[name].received_uuid == subvolumes(src / "snapshot")[name].uuid
    assert [l["snapshot"] for l in borg.labels()] == [name]
    # Rule 9: an archive store that fails (here: a wrong passphrase) costs the btrfs folder nothing.
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-passphrase\n")
    failed = run_cli("--archive-key-file", wrong, src, dst, borg.location)
    assert failed.code != 0, failed.explain()
    newest = snapshot_names(src / "snapshot")[-1]
    assert newest != name and subvolumes(dst)[newest].received_uuid == subvolumes(src / "snapshot")[newest].uuid
    assert [l["snapshot"] for l in borg.labels()] == [name]


def _cutting_send_env(workdir: Path, nbytes: int, then: str) -> dict:
    """A `btrfs` whose send writes `nbytes` of its stream, then `then` (a shell command: the send
    killed, or held open while the test kills the whole run)."""
    real = shutil.which("btrfs")
    bindir = workdir / "cut-send-bin"
    bindir.mkdir()
    wrapper = bindir / "btrfs"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = send ]; then\n'
        f'    {real} "$@" | head -c {nbytes}\n'
        f"    {then}\n"
        "fi\n"
        f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_a_send_killed_mid_stream_leaves_no_archive_and_the_next_run_recovers(store, src, tmp_path):
    cut = run_cli(*store.args(), src, store.location, env=_cutting_send_env(tmp_path, 300_000, "kill -KILL $$"))
    assert cut.code != 0 and cut.result["failed"], cut.explain()
    assert "btrfs send failed (killed by signal 9)" in cut.result["destinations"][0]["error"], cut.explain()
    assert store.labels() == []  # nothing that looks like a backup
    again = ok(*store.args(), src, store.location)
    names = snapshot_names(src / "snapshot")
    assert [t["snapshot"] for t in again.result["destinations"][0]["transfers"]] == names[:1] + names[1:]
    assert [l["snapshot"] for l in store.labels()] == [t["snapshot"] for t in again.result["destinations"][0]["transfers"]]


def test_a_run_killed_mid_stream_leaves_nothing_that_counts(restic, src, tmp_path):
    # The whole run dies at once (as a stopped unit's cgroup does): restic saves nothing, and
    # what the lock file says was unfinished is deleted by the next run before it sends again.
    env = dict(os.environ, **_cutting_send_env(tmp_path, 300_000, "sleep 60"))
    run = subprocess.Popen([str(CLI), *restic.args(), str(src), restic.location], env=env, start_new_session=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert restic.labels() == []
    done = ok(*restic.args("-n", "1"), src, restic.location)  # retention's forget too: the stale lock is gone
    names = snapshot_names(src / "snapshot")
    assert [t["snapshot"] for t in done.result["destinations"][0]["transfers"]] == names[-1:]
    assert [l["snapshot"] for l in restic.labels()] == names[-1:]
    # restic's own lock of the killed process stays until `restic unlock` (or our next retention) removes it.
    restic._tool("restic", "--repo", str(restic.path), "unlock")
    check = restic._tool("restic", "--repo", str(restic.path), "check", check=False)
    assert check.returncode == 0, check.stderr


def test_a_wrong_passphrase_is_a_clear_error_that_changes_nothing(store, src, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-passphrase\n")
    run = run_cli("--archive-key-file", wrong, src, store.location)
    assert run.code != 0 and "is archive_key_file the repository's passphrase?" in run.stderr, run.explain()
    assert "no snapshot taken" in run.stderr
    assert not (src / "snapshot").exists() and store.labels() == []
    assert "not-the-passphrase" not in run.stderr + json.dumps(run.result)


def _hold_lock(store):
    """A process of the tool that holds the repository's exclusive lock until stopped."""
    if store.tool == "borg":
        holder = subprocess.Popen(["borg", "with-lock", str(store.path), "sleep", "60"], env=store.env(),
                                  stdin=subprocess.DEVNULL)
        held = store.path / "lock.exclusive"
    else:  # restic prune holds an exclusive lock; stopped, it keeps holding it
        holder = subprocess.Popen(["restic", "--repo", str(store.path), "prune"], env=store.env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        held = store.path / "locks"
    deadline = time.time() + 20
    while time.time() < deadline and not (held.exists() and (
            store.tool == "borg" or any("-tmp-" not in p.name for p in held.iterdir()))):
        time.sleep(0.002)  # restic writes its lock as a -tmp- file first, then renames it
    if store.tool == "restic":
        holder.send_signal(signal.SIGSTOP)
    return holder


def test_a_locked_repository_is_a_clear_error_that_changes_nothing(store, src):
    holder = _hold_lock(store)
    try:
        run = run_cli(*store.args(), src, store.location)
    finally:
        if store.tool == "borg":
            holder.terminate()
        holder.send_signal(signal.SIGCONT)  # restic's prune ends by itself, with its lock
        holder.wait()
    assert run.code != 0 and "the repository is locked" in run.stderr, run.explain()
    assert not (src / "snapshot").exists() and store.labels() == []


def test_retention_keeps_every_parent_a_kept_incremental_needs(borg, src):
    store = borg
    args = store.args("--archive-full-every", "2", "-n", "1")
    for day in range(4):
        _change(src, day, 50_000)
        done = ok(*args, src, store.location)
        # A full stream by the policy is no broken chain, and is not reported as one.
        assert "none of a snapshot still at the source" not in done.stderr, done.explain()
    # Runs made a(full) b(<-a) c(full) d(<-c): keeping the newest keeps d and its parent c.
    labels = store.labels()
    assert [l["parent"] == "none" for l in labels] == [True, False]
    assert labels[1]["parent"] == labels[0]["uuid"]
    section = [r for r in done.result["retention"] if r["where"] == store.location][0]
    kept = {k["name"]: k["reasons"] for k in section["kept"]}
    assert any("parent of the kept incremental archive" in " ".join(r) for r in kept.values()), done.result["retention"]


@pytest.mark.parametrize("args, message", [
    (["SRC", "zfs://pool/x"], "unknown scheme"),
    (["SRC", "borg:/nonexistent/borg"], "needs the repository's passphrase: give --archive-key-file"),
    (["--archive-key-file", "/nonexistent/key", "SRC", "restic:/nonexistent/r"], "archive_key_file /nonexistent/key: no such file"),
    (["--archive-key-file", "KEY", "SRC", "restic:relative"], "absolute path or its own repository string"),
    (["--archive-key-file", "KEY", "--archive-full-every", "0", "SRC", "borg:/b"], "archive_full_every"),
])
def test_bad_archive_input_is_a_clear_error_that_changes_nothing(src, tmp_path, args, message):
    key = tmp_path / "k"
    key.write_text(SECRET)
    run = run_cli(*[{"SRC": str(src), "KEY": str(key)}.get(a, a) for a in args])
    assert run.code != 0 and message in run.stderr, run.explain()
    assert not (src / "snapshot").exists()
