"""Rule 12 over real ssh through `serve --append-only`: a source that names backups itself cannot
steer the server's retention. The server refuses (and deletes) future and out-of-order names as
they arrive, and `btrfs-backup prune` orders, ages and buckets backups by when the server
received them, so every real backup the policy keeps without an attack is kept with one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import live_locks, ok, run_cli, run_raw, ssh_args, subvolumes, take_snapshot
from support.btrfs_loop import run
from support.sshd import Sshd
from test_serve_ssh import confine_key, require_sshd, server_folders

POLICY = ["-n", "5", "--preserve-backups", "7d 4w"]
FUTURE = ["20991231-00000%d" % i for i in range(2, 7)]
ANCIENT = "20000101-000000"


@pytest.fixture
def server(require_btrfs, make_fs):
    """A backup server whose only key (the source's) runs `serve --append-only --root <fs>/web1`."""
    require_sshd()
    fs = server_folders(make_fs)
    with Sshd(host="127.0.0.7") as sshd:
        confine_key(sshd, fs / "web1", "--append-only")
        yield sshd, fs


def stamp(delta_seconds=0.0):
    """A backup name for now plus `delta_seconds` on this machine's clock (server and source here)."""
    return (datetime.datetime.now() + datetime.timedelta(seconds=delta_seconds)).strftime("%Y%m%d-%H%M%S")


def real_backups(sshd, fs, make_fs, subvolume, count=3):
    """`count` backups made by normal runs through serve: (source, backup folder, their names)."""
    source = subvolume(make_fs("src") / "data")
    url = sshd.url(fs / "web1" / "data")
    made = []
    for number in range(count):
        (source / ("file-%d.txt" % number)).write_text("real data %d\n" % number * 100)
        made.append(ok(*ssh_args(sshd), source, url).result["snapshot"]["name"])
    return source, fs / "web1" / "data", made


class Forger:
    """The source host gone bad: tiny subvolumes named as it likes, sent with its own key."""

    def __init__(self, sshd, make_fs):
        self.sshd = sshd
        self.workshop = make_fs("forger", size="256M")

    def stream(self, name, content="forged\n"):
        path = self.workshop / name
        if path.exists():
            run(["btrfs", "subvolume", "delete", path])
        run(["btrfs", "subvolume", "create", path])
        (path / "data.txt").write_text(content)
        run(["btrfs", "property", "set", "-ts", path, "ro", "true"])
        return subprocess.run(["btrfs", "send", "-q", str(path)], stdout=subprocess.PIPE, check=True).stdout

    def send(self, folder, name, content="forged\n"):
        """`btrfs receive FOLDER` through serve with a stream of its own: the finished ssh command."""
        return self.sshd.run("btrfs receive %s" % shlex.quote(str(folder)), check=False,
                             input=self.stream(name, content), text=False)


def fingerprint(folder, names=None):
    """{name: (uuid, received uuid, sha256 of every file)} of the complete backups in `folder`."""
    found = {}
    for name, sub in subvolumes(folder).items():
        if not sub.complete_backup or (names is not None and name not in names):
            continue
        digest = hashlib.sha256()
        for path in sorted(p for p in Path(sub.path).rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(sub.path)).encode() + b"\0" + path.read_bytes())
        found[name] = (sub.uuid, sub.received_uuid, digest.hexdigest())
    return found


def prune(folder, *flags):
    """`btrfs-backup prune --json` on the server: (the folder's result, stderr)."""
    done = run_raw("prune", "--json", *flags, folder)
    assert done.returncode == 0, done.stderr
    result, = json.loads(done.stdout)["folders"]
    return result, done.stderr


def kept_names(result):
    return sorted(k["name"] for k in result["kept"])


def test_forged_names_through_serve_cost_no_real_backup(server, make_fs, subvolume):
    """The attack of issue 17: five future names and an ancient one, sent with the source's own
    key, then the server's prune (-n 5, '7d 4w'). Every name is refused as it arrives, and prune
    keeps exactly what it kept before the attack."""
    sshd, fs = server
    _source, folder, real = real_backups(sshd, fs, make_fs, subvolume)
    before = fingerprint(folder)
    expected, _err = prune(folder, "--check", *POLICY)
    forger = Forger(sshd, make_fs)
    refusals = {}
    for name in FUTURE + [ANCIENT]:
        done = forger.send(folder, name)
        refusals[name] = done.stderr.decode()
        assert done.returncode == 126, (name, done)
    assert all("lies in the future (server time" in refusals[n] for n in FUTURE), refusals
    assert "is not newer than %s" % real[-1] in refusals[ANCIENT], refusals
    assert all("deleted it" in text for text in refusals.values()), refusals
    assert sorted(subvolumes(folder)) == sorted(real), "no forged subvolume is left, complete or not"

    after, _err = prune(folder, *POLICY)
    assert kept_names(after) == kept_names(expected) == sorted(real)
    assert fingerprint(folder) == before


@pytest.mark.parametrize("variant", ["far-past", "equal-to-a-pruned-one", "burst-in-one-second",
                                     "two-in-one-stream"])
def test_variants_of_the_attack(server, make_fs, subvolume, variant):
    """Variants: refused when they cannot be real; a burst of plausible names is accepted (it is
    indistinguishable from real backups) and then only --min-age stands between it and a
    count-only policy, which the threat model says."""
    sshd, fs = server
    _source, folder, real = real_backups(sshd, fs, make_fs, subvolume, count=3)
    forger = Forger(sshd, make_fs)
    if variant == "far-past":
        done = forger.send(folder, "19700102-000000")
        assert done.returncode == 126 and b"is not newer than" in done.stderr, done
    elif variant == "equal-to-a-pruned-one":
        pruned, _err = prune(folder, "-n", "2")
        assert [d["name"] for d in pruned["deleted"]] == real[:1]
        before = fingerprint(folder)
        done = forger.send(folder, real[0], content="other content\n")
        assert done.returncode == 126 and b"is not newer than %s" % real[-1].encode() in done.stderr, done
        assert fingerprint(folder) == before and real[0] not in subvolumes(folder)
    elif variant == "two-in-one-stream":
        streams = forger.stream(stamp(1)) + forger.stream(stamp(2))
        done = sshd.run("btrfs receive %s" % shlex.quote(str(folder)), check=False, input=streams, text=False)
        assert done.returncode == 126 and b"one receive brings one backup" in done.stderr, done
        assert sorted(subvolumes(folder)) == sorted(real)
    else:
        burst = [stamp(i) for i in range(1, 6)]
        for name in burst:
            done = forger.send(folder, name)
            assert done.returncode == 0, (name, done)
        before = fingerprint(folder, real)
        guarded, _err = prune(folder, *POLICY, "--min-age", "1h")
        assert set(real) <= set(kept_names(guarded)) and fingerprint(folder, real) == before
        unguarded, _err = prune(folder, "--check", *POLICY)
        # The documented limit: plausible new names displace real ones from a count-only place.
        assert set(burst) <= set(kept_names(unguarded))


@pytest.mark.parametrize("ahead, accepted", [(5 * 60, True), (3 * 3600, False)])
def test_a_source_clock_ahead(server, make_fs, subvolume, ahead, accepted):
    """A source whose clock is a few minutes ahead backs up as usual; hours ahead, each backup is
    refused and deleted, and the source's run fails for that destination, naming the clock."""
    sshd, fs = server
    source, folder, real = real_backups(sshd, fs, make_fs, subvolume, count=1)
    skewed = take_snapshot(source, source / "snapshot", stamp(ahead)).name
    url = sshd.url(folder)
    done = run_cli(*ssh_args(sshd), "-S", source, url)
    if accepted:
        assert done.code == 0, done.explain()
        assert sorted(subvolumes(folder)) == sorted(real + [skewed])
        return
    assert done.code == 1, done.explain()
    error = done.result["destinations"][0]["error"]
    assert "lies in the future" in error and "clock is wrong" in error, error
    assert sorted(subvolumes(folder)) == real, "nothing of the refused backup is left"
    again = run_cli(*ssh_args(sshd), "-S", source, url)
    assert again.code == 1 and "lies in the future" in again.result["destinations"][0]["error"]
    # The locks of the one transfer it keeps trying (and its parent), not more per run.
    assert set(live_locks(source / "snapshot")) <= {skewed, real[-1]}
    print("\nclock %ds ahead: %s" % (ahead, error))


def receive_by_hand(workshop, name, folder, content="forged\n"):
    """A tiny subvolume called `name` received into `folder` without serve (as a server before
    its check, or an administrator, could)."""
    path = workshop / name
    run(["btrfs", "subvolume", "create", path])
    (path / "data.txt").write_text(content)
    run(["btrfs", "property", "set", "-ts", path, "ro", "true"])
    Path(folder).mkdir(parents=True, exist_ok=True)
    subprocess.run("btrfs send -q %s | btrfs receive %s" % (shlex.quote(str(path)), shlex.quote(str(folder))),
                   shell=True, check=True, stderr=subprocess.DEVNULL)


def test_prune_ranks_lying_names_below_real_backups(make_fs, subvolume):
    """Backups with future names that reached the folder without serve's check (a server before
    this check, or received by hand): prune reports them and deletes them before any real one."""
    folder = make_fs("server") / "web1" / "data"
    folder.mkdir(parents=True)
    source = subvolume(make_fs("src") / "data")
    real = []
    for number in range(3):
        (source / "f.txt").write_text("real %d\n" % number)
        real.append(ok(source, folder).result["snapshot"]["name"])
    before = fingerprint(folder)
    workshop = make_fs("forger", size="256M")
    for name in FUTURE + [ANCIENT]:
        receive_by_hand(workshop, name, folder)
    result, stderr = prune(folder, *POLICY)
    assert sorted(u["name"] for u in result["untrusted_names"]) == FUTURE
    # Below every real backup: the one place of the newest 5 that no real backup needs goes to
    # the newest received of them. The ancient name arrived last: by received time it is the
    # newest, and takes no real one's place either.
    assert sorted(d["name"] for d in result["deleted"]) == FUTURE[:-1]
    assert kept_names(result) == sorted(real + [ANCIENT, FUTURE[-1]])
    assert fingerprint(folder, real) == before
    assert "its name claims a later time" in stderr


def test_prune_refuses_a_folder_on_another_machine():
    done = run_raw("prune", "-n", "5", "ssh://backup@127.0.0.1:22/srv/backups/web1/data")
    assert done.returncode == 2 and "only the server knows" in done.stderr, done


def test_server_freshness_is_judged_by_received_time(make_fs, tmp_path_factory, tmp_path):
    """`status --server-root` and btrfs_backup_info(server_root) on a server: an ancient name
    received now is fresh, a job whose last real backup arrived too long ago is stale even with a
    forged future name beside it, and the reasons name the host and job."""
    from ansible_helpers import Ansible, install_collection  # noqa: PLC0415 - only this test needs Ansible
    root = make_fs("server")
    workshop = make_fs("forger", size="256M")
    receive_by_hand(workshop, stamp(-60), root / "web2" / "data", "real\n")
    time.sleep(4)
    receive_by_hand(workshop, ANCIENT, root / "web1" / "data")
    receive_by_hand(workshop, FUTURE[0], root / "web2" / "data")
    done = run_raw("status", "--server-root", root, "--max-age", "3s", "--json")
    assert done.returncode == 1, done
    view = json.loads(done.stdout)
    jobs = {(j["host"], j["job"]): j for j in view["jobs"]}
    assert (jobs["web1", "data"]["status"], jobs["web1", "data"]["newest_backup"]) == ("OK", ANCIENT)
    assert jobs["web1", "data"]["newest_backup_age"] < 3
    stale = jobs["web2", "data"]
    assert (stale["status"], stale["untrusted_names"], stale["backups"]) == ("CRITICAL", [FUTURE[0]], 2)
    assert stale["newest_backup"] != FUTURE[0] and stale["newest_backup_age"] >= 4
    assert any(r.startswith("web2/data: newest backup") and "(max 3s)" in r for r in view["reasons"]), view
    line = run_raw("status", "--server-root", root, "--max-age", "3s")
    assert line.returncode == 2 and line.stdout.startswith("BTRFS BACKUP CRITICAL - ") and "web2/data" in line.stdout

    ansible = Ansible(install_collection(tmp_path_factory.mktemp("collections")), tmp_path)
    info = ansible.task("btrfs_backup_info", {"server_root": str(root), "max_age": "3s",
                                              "config_dir": str(tmp_path / "no-jobs")}, check=True)
    assert info.code == 0, info.explain()
    assert (info.result["fresh"], info.result["status"]) == (False, "CRITICAL")
    assert any("web2/data" in r for r in info.result["reasons"]), info.result["reasons"]
    fresh = ansible.task("btrfs_backup_info", {"server_root": str(root), "max_age": "1d",
                                               "config_dir": str(tmp_path / "no-jobs")}, check=True)
    assert fresh.code == 0 and (fresh.result["status"], fresh.result["fresh"]) == ("WARNING", False), fresh.explain()
    assert {(j["host"], j["status"]) for j in fresh.result["server"]["jobs"]} == {("web1", "OK"), ("web2", "WARNING")}
    assert fresh.result["reasons"] == ["web2/data: 1 backup(s) named later than received (%s): not counted" % FUTURE[0]]


def test_server_metrics_are_received_times(make_fs, tmp_path):
    """`status --server-root --source-host --metrics-file`: node_exporter metrics of one source
    host's jobs by when the server received each backup: an ancient name received now is fresh, a
    future name is counted as untrusted and not as newest, a configured job without a folder yet
    has no backup; the file is replaced whole and promtool takes it."""
    root = make_fs("server")
    workshop = make_fs("forger", size="256M")
    receive_by_hand(workshop, stamp(-60), root / "web2" / "data", "real\n")
    receive_by_hand(workshop, ANCIENT, root / "web2" / "home")
    receive_by_hand(workshop, FUTURE[0], root / "web2" / "data")
    receive_by_hand(workshop, stamp(-30), root / "web3" / "data", "another host\n")
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    metrics = textfiles / "btrfs_backup_server_web2.prom"
    metrics.write_text("old\n")
    started = time.time()
    done = run_raw("status", "--server-root", root, "--source-host", "web2", "--job-max-age", "data=1d 12h",
                   "--job-max-age", "home=2h", "--job-max-age", "new=1h", "--metrics-file", metrics)
    assert done.returncode == 0 and done.stdout == "", done
    assert sorted(p.name for p in textfiles.iterdir()) == [metrics.name], "a temporary file was left"
    text = metrics.read_text()
    values = {(name, job): float(value) for name, job, value in re.findall(
        r'^(btrfs_backup_server_\w+)\{backup_job="(\w+)",source_host="web2"\} (\S+)$', text, re.M)}
    assert "web3" not in text, "another host's jobs are its own unit's"
    received_home = values["btrfs_backup_server_newest_backup_received_timestamp_seconds", "home"]
    assert started - 60 < received_home <= time.time(), "the ancient name is judged by its arrival"
    received_data = values["btrfs_backup_server_newest_backup_received_timestamp_seconds", "data"]
    assert received_data < received_home, "the future name does not count as the newest"
    assert values["btrfs_backup_server_untrusted_names", "data"] == 1
    assert values["btrfs_backup_server_backups", "data"] == 2
    assert values["btrfs_backup_server_max_age_seconds", "data"] == 129600
    assert values["btrfs_backup_server_backups", "new"] == 0
    assert ("btrfs_backup_server_newest_backup_received_timestamp_seconds", "new") not in values
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
