"""Archive destinations on remote stores through the CLI: borg over ssh behind an append-only
forced command, restic over REST (rclone, append-only) and over S3 (moto). Full then incremental
runs, a send cut mid-stream and the run after it, restore, a wrong passphrase and a locked
repository, retention that keeps parents, append-only retention, secrets."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from cli_helpers import job_state_folders, run_cli, run_raw, run_subcommand, wait_next_second
from faults import wait_for
from support.archive_stores import (PASSPHRASE, REST_PASSWORD, S3_SECRET_KEY, borg_env, restic_env, run,
                                    write_env_file)
from support.trees import assert_same_tree, modify_tree

SECRETS = (PASSPHRASE, S3_SECRET_KEY, REST_PASSWORD)


class Store:
    """One archive store as a test drives it: its destination string, the CLI flags that reach it,
    and its archives' labels as the store's own command lists them."""

    def __init__(self, destination: str, flags: List[str], env: Dict[str, str], kind: str, repository: str):
        self.destination = destination
        self.flags = flags
        self.env = env
        self.kind = kind
        self.repository = repository
        # Whether the repository holds a lock, as the server's owner sees it (fast: no key derivation).
        self.locked: Callable[[], bool] = lambda: False

    def labels(self) -> List[Dict[str, str]]:
        """Each archive's label words (key=value), oldest first, read with the store's own client."""
        if self.kind == "borg":
            listed = run(["borg", "list", "--format", "{comment}{NL}", self.repository], self.env)
            assert listed.returncode == 0, listed.stderr
            comments = listed.stdout.decode().splitlines()
        else:
            listed = run(["restic", "-r", self.repository, "snapshots", "--json"], self.env)
            assert listed.returncode == 0, listed.stderr
            comments = [" ".join(s.get("tags") or []) for s in json.loads(listed.stdout)]
        return [dict(w.split("=", 1) for w in c.split() if "=" in w) for c in comments]


@pytest.fixture
def key_args(archive_key_file):
    return ["--archive-key-file", str(archive_key_file)]


def _borg_store(borg_ssh_server, archive_key_file, client_dirs, name) -> Store:
    borg_ssh_server.repository(name)
    # Only the repository's own key: the sshd's unrestricted key would bypass the forced command.
    flags = ["--ssh-opt", f"IdentityFile={borg_ssh_server.identity_file(name)}"]
    for option in borg_ssh_server.sshd.ssh_options():
        if not option.startswith("IdentityFile="):
            flags += ["--ssh-opt", option]
    env = borg_env(client_dirs / "borg-base", archive_key_file, borg_ssh_server.client_environment(name))
    store = Store(borg_ssh_server.destination(name), flags, env, "borg", borg_ssh_server.url(name))
    store.locked = (borg_ssh_server.repositories[name] / "lock.exclusive").exists
    return store


def _restic_store(repository, archive_key_file, client_dirs, extra_env, tmp_path, destination=None) -> Store:
    """A new restic repository: `repository` as restic's own commands reach it, `destination` (the
    same without credentials, when they differ) as the job gives it, `extra_env` in its env file."""
    env = restic_env(client_dirs / "restic-cache", archive_key_file, extra_env)
    made = run(["restic", "-r", repository, "init"], env)
    assert made.returncode == 0, made.stderr
    flags = ["--archive-env-file", str(write_env_file(tmp_path / "store.env", extra_env))] if extra_env else []
    return Store("restic:" + (destination or repository), flags, env, "restic", repository)


def _rest_store(server, name, archive_key_file, client_dirs, tmp_path) -> Store:
    """A repository on the REST server, its credentials in the job's env file."""
    store = _restic_store(server.repository(name), archive_key_file, client_dirs, server.environment(), tmp_path,
                          destination=server.plain_repository(name))
    locks = server.data_dir / name / "locks"
    store.locked = lambda: locks.is_dir() and any(locks.iterdir())
    return store


@pytest.fixture(params=["borg-ssh", "restic-rest", "restic-s3"])
def store(request, archive_key_file, archive_client_dirs, tmp_path):
    if request.param == "borg-ssh":
        return _borg_store(request.getfixturevalue("borg_ssh_server"), archive_key_file, archive_client_dirs,
                           tmp_path.name)
    if request.param == "restic-rest":
        return _rest_store(request.getfixturevalue("rest_server"), tmp_path.name, archive_key_file,
                           archive_client_dirs, tmp_path)
    server = request.getfixturevalue("s3_server")
    bucket = "b-" + tmp_path.name.lower().replace("_", "-")[-40:]
    store = _restic_store(server.repository(bucket), archive_key_file, archive_client_dirs, server.environment(),
                          tmp_path)
    listing = server.repository(bucket)[len("s3:"):] + "?list-type=2&prefix=locks/"
    store.locked = lambda: b"<Key>locks/" in urllib.request.urlopen(listing, timeout=10).read()  # moto: unsigned
    return store


def cut_send_env(workdir: Path, nbytes: int = 50_000) -> Dict[str, str]:
    """A PATH whose `btrfs send` is killed (SIGKILL) after `nbytes` of its stream; every other
    btrfs command is the real one."""
    real = shlex.quote(shutil.which("btrfs"))
    bindir = workdir / "cut-send-bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "btrfs"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Test stand-in: 'btrfs send' dies after %d bytes of its stream.\n"
        'if [ "$1" = send ]; then\n'
        '    %s "$@" | head -c %d\n'
        "    kill -KILL $$\n"
        "fi\n"
        'exec %s "$@"\n' % (nbytes, real, nbytes, real))
    wrapper.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}


def _everything_written(outputs, metrics_dir: Path) -> str:
    """Every run's stdout and stderr, the job states and the metrics: where a secret must not be."""
    texts = list(outputs)
    for folder in job_state_folders() + [metrics_dir]:
        texts += [p.read_text(errors="replace") for p in Path(folder).rglob("*") if p.is_file()]
    return "\n".join(texts)


def test_full_then_a_cut_send_then_incremental_and_a_restore(store, src, restore_fs, key_args, tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    flags = key_args + store.flags + ["--job-name", "home", "--metrics-dir", str(metrics)]
    outputs = []

    def backup(env=None):
        done = run_cli(*flags, src, store.destination, env=env)
        outputs.extend([json.dumps(done.result), done.stderr])
        return done

    first = backup()
    assert first.code == 0, first.explain()
    assert [t["mode"] for t in first.result["destinations"][0]["transfers"]] == ["full"]

    # A send killed mid-stream: the run fails and the store holds no archive of that snapshot.
    wait_next_second()
    modify_tree(src / "small", 200_000, seed=2, add_files=1, remove_files=1)
    cut = backup(env=cut_send_env(tmp_path))
    assert cut.code != 0 and cut.result["failed"], cut.explain()
    (full,) = store.labels()
    assert (full["snapshot"], full["uuid"], full["parent"]) == (
        first.result["snapshot"]["name"], first.result["snapshot"]["uuid"], "none"), cut.explain()

    # The next run sends what is missing, incrementally, each archive labelled with its parent.
    wait_next_second()
    modify_tree(src / "small", 200_000, seed=3, add_files=1, remove_files=1)
    recovered = backup()
    assert recovered.code == 0, recovered.explain()
    transfers = recovered.result["destinations"][0]["transfers"]
    assert [t["snapshot"] for t in transfers] == [cut.result["snapshot"]["name"], recovered.result["snapshot"]["name"]]
    assert {t["mode"] for t in transfers} == {"incremental"}
    labels = store.labels()
    assert [label["parent"] for label in labels] == ["none", labels[0]["uuid"], labels[1]["uuid"]]
    newest = recovered.result["snapshot"]
    assert labels[-1]["uuid"] == newest["uuid"]

    # status and the metrics name the newest archive and the chain a restore of it replays.
    shown = run_raw("status", *flags, src, store.destination)
    assert f"{newest['name']} (chain of 3 archives)" in shown.stdout, shown.stdout + shown.stderr
    assert f'btrfs_backup_archive_chain_archives{{backup_job="home",destination="{store.destination}"}} 3' \
        in (metrics / "btrfs_backup_home.prom").read_text()

    # A restore replays the chain and gives back the newest snapshot, file by file.
    target = restore_fs / "home"
    restored = run_subcommand("restore", *key_args, *store.flags, "--job-name", "home", store.destination, target)
    outputs += [json.dumps(restored.result), restored.stderr]
    assert restored.code == 0, restored.explain()
    assert_same_tree(newest["path"], target)

    # Secrets in no log, result, job state or metric.
    written = _everything_written(outputs, metrics)
    for secret in SECRETS:
        assert secret not in written


def test_append_only_borg_retention_hides_but_never_destroys(borg_ssh_server, archive_key_file, archive_client_dirs,
                                                             src, key_args, tmp_path):
    store = _borg_store(borg_ssh_server, archive_key_file, archive_client_dirs, "append-only-retention")
    flags = key_args + store.flags + ["--job-name", "home", "--archive-full-every", "1"]
    done = run_cli(*flags, src, store.destination)
    assert done.code == 0, done.explain()
    wait_next_second()
    segments = {p: p.stat().st_size for p in borg_ssh_server.segment_files("append-only-retention")}
    pruned = run_cli(*flags, "--num-backups", "1", src, store.destination)
    assert pruned.code == 0, pruned.explain()
    assert [d["name"] for d in pruned.result["retention"][0]["deleted"]] == [done.result["snapshot"]["name"]]
    # The client's delete through the append-only key: the older archives leave the listing ...
    assert len(store.labels()) == 1
    # ... but every byte the server held is still there (the server's owner can roll back).
    after = {p: p.stat().st_size for p in borg_ssh_server.segment_files("append-only-retention")}
    assert all(after.get(p) == size for p, size in segments.items())


def test_rest_credentials_go_in_the_env_file_and_a_url_with_them_is_refused(
        rest_server, archive_key_file, archive_client_dirs, src, key_args, tmp_path):
    store = _rest_store(rest_server, "credentials", archive_key_file, archive_client_dirs, tmp_path)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    done = run_cli(*key_args, *store.flags, "--job-name", "home", "--metrics-dir", str(metrics), src,
                   store.destination)
    assert done.code == 0, done.explain()
    assert len(store.labels()) == 1
    # The same repository with user:password@ in the destination string: refused, the password unshown.
    refused = run_cli(*key_args, "--job-name", "other", src, "restic:" + rest_server.repository("credentials"))
    assert refused.code != 0
    assert "a user and password in the repository string would show in logs" in refused.stderr
    written = _everything_written([json.dumps(done.result), done.stderr, json.dumps(refused.result),
                                   refused.stderr], metrics)
    assert REST_PASSWORD not in written
    assert len(store.labels()) == 1  # the refused run changed nothing


def test_a_wrong_passphrase_is_a_clear_error_that_changes_nothing(store, src, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-passphrase\n")
    refused = run_cli("--archive-key-file", wrong, *store.flags, src, store.destination)
    assert refused.code != 0 and "is archive_key_file the repository's passphrase?" in refused.stderr, \
        refused.explain()
    assert "no snapshot taken" in refused.stderr
    assert not (src / "snapshot").exists() and store.labels() == []
    assert "not-the-passphrase" not in refused.stderr + json.dumps(refused.result)


def _hold_lock(store: Store, borg_ssh_server) -> subprocess.Popen:
    """A process that holds the repository's exclusive lock until it is stopped: for borg, the
    server's owner (`borg with-lock` on the server's own path); for restic, a client's prune,
    stopped (SIGSTOP) once its lock is in the repository (tried again if it ended first)."""
    if store.kind == "borg":
        path = borg_ssh_server.repositories[Path(store.repository).name]
        env = dict(os.environ, BORG_BASE_DIR=str(borg_ssh_server.workdir / "server-borg"))
        holder = subprocess.Popen(["borg", "with-lock", str(path), "sleep", "120"], env=env,
                                  stdin=subprocess.DEVNULL)
        wait_for("borg's lock on the server", store.locked, timeout=20)
        return holder
    for _attempt in range(5):
        holder = subprocess.Popen(["restic", "-r", store.repository, "prune"], env=store.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("restic prune's lock", lambda: store.locked() or holder.poll() is not None, timeout=30)
        holder.send_signal(signal.SIGSTOP)
        if store.locked():
            return holder
        holder.kill()
        holder.wait()
        run(["restic", "-r", store.repository, "unlock"], store.env)
    raise AssertionError("restic prune never held its lock long enough to be stopped")


def test_a_locked_repository_is_a_clear_error_that_changes_nothing(store, src, key_args, request):
    borg_ssh_server = request.getfixturevalue("borg_ssh_server") if store.kind == "borg" else None
    holder = _hold_lock(store, borg_ssh_server)
    try:
        refused = run_cli(*key_args, *store.flags, src, store.destination)
    finally:
        holder.kill()  # a killed prune leaves its lock: the repository is this test's alone
        holder.wait()
    assert refused.code != 0 and "the repository is locked" in refused.stderr, refused.explain()
    assert "no snapshot taken" in refused.stderr
    assert not (src / "snapshot").exists()
    if store.kind == "borg":
        assert store.labels() == []
    else:  # its lock stays (a killed process's): the owner's unlock removes it
        run(["restic", "-r", store.repository, "unlock", "--remove-all"], store.env)
        assert store.labels() == []


@pytest.mark.parametrize("store", ["borg-ssh", "restic-s3"], indirect=True)
def test_retention_keeps_every_parent_a_kept_incremental_needs(store, src, key_args):
    # (The REST server is append-only: it refuses restic's forget, a case of its own.)
    flags = key_args + store.flags + ["--job-name", "home", "--archive-full-every", "2", "-n", "1"]
    for day in range(4):
        wait_next_second()
        modify_tree(src / "small", 50_000, seed=10 + day, add_files=1, remove_files=1)
        done = run_cli(*flags, src, store.destination)
        assert done.code == 0, done.explain()
    # Runs made a(full) b(<-a) c(full) d(<-c): keeping the newest keeps d and its parent c.
    labels = store.labels()
    assert [label["parent"] == "none" for label in labels] == [True, False], labels
    assert labels[1]["parent"] == labels[0]["uuid"]
    assert labels[1]["uuid"] == done.result["snapshot"]["uuid"]
    section = [r for r in done.result["retention"] if r["where"] == store.destination][0]
    kept = {k["name"]: k["reasons"] for k in section["kept"]}
    assert any("parent of the kept incremental archive" in " ".join(r) for r in kept.values()), done.result["retention"]
