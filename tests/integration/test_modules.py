"""The modules through real ansible-playbook and ansible, on real loop-backed btrfs and a real sshd on loopback.

Each module runs twice and must report `changed`, then not; check mode must change nothing and
report its plan; an interrupted transfer must leave a lock that the next run settles by sending again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat

import pytest

from ansible_helpers import (
    LOCK_FILE,
    Ansible,
    assert_is_backup_of,
    install_collection,
    key_values,
    module_result,
    read_locks,
    subvolume_facts,
    subvolume_names,
)
from support.archive_stores import PASSPHRASE, borg_env, restic_env, write_secret
from support.archive_stores import run as run_store
from support.btrfs_loop import pipeline, run
from support.sshd import Sshd
from support.trees import MiB, assert_same_tree, modify_tree, write_mixed_tree

SOURCE_TREE = dict(n_small=30, small_size=2048, large_files=[2 * MiB], seed=3)  # the source's data (conftest's src)

pytestmark = [
    # pytest-ansible, started in a checkout with galaxy.yml, sets up the collection finder with the
    # checkout (linked under collections/, git-ignored) when it loads; its later calls find it done.
    pytest.mark.filterwarnings("ignore:AnsibleCollectionFinder has already been configured:UserWarning"),
    # pytest-ansible marks its ad hoc host manager deprecated without naming a successor yet.
    pytest.mark.filterwarnings("ignore:Host management is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    return install_collection(tmp_path_factory.mktemp("collections"))


@pytest.fixture(scope="module")
def sshd(sshd):
    """This file's own sshd, on 127.0.0.5: other suites inject faults into the shared one.
    (It asks for the shared fixture only for its check that root and the ssh tools are there.)"""
    with Sshd(host="127.0.0.5") as server:
        yield server


@pytest.fixture
def ansible(collections_path, tmp_path):
    """ansible-playbook and ansible as processes: check mode, diff mode, module_defaults, task
    environment and `-a 'key=value ...'` strings, which pytest-ansible's ad hoc calls do not offer."""
    return Ansible(collections_path, tmp_path)


@pytest.fixture
def module(ansible_adhoc, ansible):
    """Run btrfs.backup.NAME with ARGS on localhost through pytest-ansible (in this process, the
    collection from the checkout); the result as an AnsibleRun."""
    hosts = ansible_adhoc(inventory=str(ansible.inventory), host_pattern="localhost")

    def run(name, args):
        return module_result(getattr(hosts["localhost"], "btrfs.backup." + name)(**args)["localhost"])

    return run


def snapshot_with(module, src, name):
    done = module("btrfs_snapshot", {"source": str(src), "name": name})
    assert done.code == 0, done.explain()
    return src / "snapshot" / name


# -- btrfs_snapshot --------------------------------------------------------------------------


def test_snapshot_present_then_absent_each_twice(ansible, module, src):
    args = {"source": str(src), "name": "before-upgrade"}
    planned = ansible.task("btrfs_snapshot", args, check=True)
    assert planned.code == 0, planned.explain()
    assert planned.result["changed"] and planned.result["snapshot"]["uuid"] is None
    assert planned.result["plan"][-1].startswith("create read-only snapshot ")
    assert not (src / "snapshot").exists()

    first, second = (module("btrfs_snapshot", args) for _round in range(2))
    assert first.code == 0 and second.code == 0, first.explain() + second.explain()
    assert first.result["changed"] and not second.result["changed"]
    path = src / "snapshot" / "before-upgrade"
    facts = subvolume_facts(path)
    assert facts.readonly and first.result["snapshot"]["uuid"] == facts.uuid
    assert second.result["snapshot"]["path"] == str(path)

    args["state"] = "absent"
    planned = ansible.task("btrfs_snapshot", args, check=True, diff=True)
    assert planned.result["changed"] and path.exists()
    assert planned.result["diff"] == {"before": {"path": str(path), "state": "present"},
                                      "after": {"path": str(path), "state": "absent"}}
    first, second = (module("btrfs_snapshot", args) for _round in range(2))
    assert first.result["changed"] and not second.result["changed"], first.explain() + second.explain()
    assert not path.exists()


def test_snapshot_without_a_name_follows_the_scheme(ansible, module, src):
    done = module("btrfs_snapshot", {"source": str(src), "snapshot_prefix": "data-"})
    assert done.code == 0 and done.result["changed"], done.explain()
    name = done.result["snapshot"]["name"]
    assert name.startswith("data-") and len(name) == len("data-YYYYMMDD-HHMMSS")
    assert subvolume_names(src / "snapshot") == [name]


def test_bad_parameters_fail_naming_the_parameter_and_change_nothing(ansible, module, src, dst):
    failed = module("btrfs_send_backup", {"source": str(src), "dest": [str(dst)], "num_snapshots": -2})
    assert failed.code != 0 and failed.result["failed"]
    assert failed.result["msg"].startswith("parameter num_snapshots:"), failed.explain()
    failed = module("btrfs_send_backup", {"source": str(src), "dest": [str(dst)],
                                          "preserve_backups": "7 days"})
    assert failed.result["msg"].startswith("parameter preserve_backups:"), failed.explain()
    assert not (src / "snapshot").exists() and os.listdir(dst) == []


# -- btrfs_send_backup -----------------------------------------------------------------------


def test_send_backup_to_local_and_ssh_then_nothing_to_do(ansible, module, src, dst, make_fs, sshd):
    remote_fs = make_fs("remote")
    one = snapshot_with(module, src, "20260101-000000")
    two = snapshot_with(module, src, "20260102-000000")
    local, remote = dst / "backups", remote_fs / "web1"
    args = {"source": str(src), "dest": [str(local), sshd.url(remote)], "snapshot": False}
    # The ssh options come from module_defaults for the whole group, as a playbook would set them.
    defaults = {"group/btrfs.backup.btrfs": {"ssh_options": sshd.ssh_options()}}
    task = {"name": "backup", "btrfs.backup.btrfs_send_backup": args}

    planned = ansible.play([task], check=True, module_defaults=defaults)
    assert planned.code == 0, planned.explain()
    plan = planned.result
    assert plan["changed"] and plan["check_mode"]
    for dest in plan["destinations"]:
        assert [(t["snapshot"], t["parent"], t["status"]) for t in dest["transfers"]] == [
            ("20260101-000000", None, "planned"), ("20260102-000000", "20260101-000000", "planned")]
    assert "send 20260102-000000 to %s (incremental from 20260101-000000)" % sshd.url(remote) in plan["plan"]
    assert not local.exists() and not remote.exists()

    first = ansible.play([task], module_defaults=defaults, diff=True)
    assert first.code == 0 and first.result["changed"], first.explain()
    assert first.result["diff"][0]["prepared"].splitlines()[-1] == (
        "+ 20260102-000000 at %s (incremental from 20260101-000000)" % sshd.url(remote))
    for folder in (local, remote):
        assert subvolume_names(folder) == ["20260101-000000", "20260102-000000"]
        assert_is_backup_of(folder / "20260101-000000", one)
        assert_is_backup_of(folder / "20260102-000000", two)
        assert subvolume_facts(folder / "20260102-000000").readonly

    second = ansible.play([task], module_defaults=defaults)
    assert second.code == 0 and not second.result["changed"], second.explain()
    assert all(d["transfers"] == [] for d in second.result["destinations"])
    assert read_locks(src / "snapshot") in (None, {})


def test_send_backup_pulls_from_an_ssh_source(ansible, module, make_fs, subvolume, sshd):
    remote_src = subvolume(make_fs("server") / "data")
    write_mixed_tree(remote_src, n_small=10, small_size=1024, large_files=[], seed=5)
    local = make_fs("pull") / "server-data"
    args = {"source": sshd.url(remote_src), "dest": [str(local)], "ssh_options": sshd.ssh_options(),
            "num_snapshots": 1}
    first = module("btrfs_send_backup", args)
    assert first.code == 0 and first.result["changed"], first.explain()
    name = first.result["snapshot"]["name"]
    assert_is_backup_of(local / name, remote_src / "snapshot" / name)
    args["snapshot"] = False
    second = module("btrfs_send_backup", args)
    assert second.code == 0 and not second.result["changed"], second.explain()


@pytest.mark.parametrize("tool", ["borg", "restic"])
def test_send_backup_to_an_archive_twice_plans_the_second_on_the_forecast(module, src, tmp_path, job_state_dir, tool):
    # The second run plans on what the first left (archive-forecast.json) and lists the repository
    # in a thread beside the stream, inside the module's process: the chain must come out exact.
    if shutil.which(tool) is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{tool} is not installed")
    key = write_secret(tmp_path / "repo.key", PASSPHRASE + "\n")
    repo = tmp_path / f"{tool}-repo"
    env = borg_env(tmp_path / "borg-base", key) if tool == "borg" else restic_env(tmp_path / "restic-cache", key)
    made = run_store([tool, "init", "--encryption", "repokey", str(repo)] if tool == "borg" else
                     ["restic", "--repo", str(repo), "init"], env)
    assert made.returncode == 0, made.stderr
    args = {"source": str(src), "dest": [f"{tool}:{repo}"], "archive_key_file": str(key)}
    first = module("btrfs_send_backup", args)
    assert first.code == 0 and first.result["changed"], first.explain()
    assert list(job_state_dir.rglob("archive-forecast.json")), "the first run recorded no forecast"
    modify_tree(src, 64 * 1024, seed=11)
    second = module("btrfs_send_backup", args)
    assert second.code == 0 and second.result["changed"], second.explain()
    names = subvolume_names(src / "snapshot")
    assert [(t["snapshot"], t["mode"], t["parent"], t["status"]) for t in second.result["destinations"][0]["transfers"]] == \
        [(names[1], "incremental", names[0], "done")], second.explain()
    if tool == "borg":
        listed = run_store(["borg", "list", "--format", "{comment}{NL}", str(repo)], env).stdout.decode()
        labels = [line.split() for line in listed.splitlines() if line.strip()]
    else:
        listed = run_store(["restic", "--repo", str(repo), "snapshots", "--json"], env).stdout.decode()
        labels = [entry["tags"] for entry in sorted(json.loads(listed), key=lambda e: e["time"])]
    uuids = [subvolume_facts(src / "snapshot" / name).uuid for name in names]
    assert [[w for w in words if w.startswith(("uuid=", "parent="))] for words in labels] == \
        [[f"uuid={uuids[0]}", "parent=none"], [f"uuid={uuids[1]}", f"parent={uuids[0]}"]]
    assert PASSPHRASE not in json.dumps(first.result) + json.dumps(second.result)


def test_send_backup_check_mode_with_retention_changes_nothing(ansible, module, src, dst):
    for name in ("20260101-000000", "20260102-000000", "20260103-000000"):
        snapshot_with(module, src, name)
    dest = dst / "backups"
    args = {"source": str(src), "dest": [str(dest)], "snapshot": False}
    assert module("btrfs_send_backup", args).result["changed"]
    snapshots_before, backups_before = subvolume_names(src / "snapshot"), subvolume_names(dest)

    args.update(snapshot=True, num_snapshots=1, num_backups=2)
    planned = ansible.task("btrfs_send_backup", args, check=True, diff=True)
    assert planned.code == 0 and planned.result["changed"], planned.explain()
    result = planned.result
    new = result["snapshot"]["name"]
    assert result["destinations"][0]["transfers"] == [
        {"snapshot": new, "parent": "20260103-000000", "mode": "incremental", "bytes": None,
         "seconds": None, "status": "planned"}]
    source_retention = {r["where"]: r for r in result["retention"]}["source"]
    assert [d["name"] for d in source_retention["deleted"]] == [
        "20260101-000000", "20260102-000000", "20260103-000000"]
    assert "delete %s at source (retention)" % (src / "snapshot" / "20260101-000000") in result["plan"]
    assert "- 20260101-000000 at source (not kept by retention policy (newest 1))" in result["diff"][0]["prepared"]
    assert subvolume_names(src / "snapshot") == snapshots_before
    assert subvolume_names(dest) == backups_before


# -- an interrupted transfer -------------------------------------------------------------------


CRASHING_BTRFS = """#!/bin/sh
# Test stand-in for btrfs: 'receive' gets only the first 256 KiB of the stream, then the module
# process that started it is killed, as by a crash or an OOM kill. Everything else is the real btrfs.
if [ "$1" = receive ]; then
    head -c 262144 | {real} "$@"
    kill -KILL "$PPID"
    exit 1
fi
exec {real} "$@"
"""


def test_an_interrupted_transfer_leaves_a_lock_that_the_next_run_settles(ansible, module, src, dst, make_fs, tmp_path):
    snapshot = snapshot_with(module, src, "20260101-000000")
    dest = dst / "backups"
    wrapper_dir = tmp_path / "crashing-bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "btrfs"
    wrapper.write_text(CRASHING_BTRFS.format(real=shutil.which("btrfs")))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    args = {"source": str(src), "dest": [str(dest)], "snapshot": False}

    crashed = ansible.task("btrfs_send_backup", args,
                           environment={"PATH": "%s:%s" % (wrapper_dir, os.environ["PATH"])})
    assert crashed.code != 0 and crashed.result["failed"], crashed.explain()
    assert read_locks(src / "snapshot") == {"20260101-000000": {"locks": [os.path.realpath(dest)]}}
    # What the crash left: a partial receive, writable and without received_uuid.
    partial = subvolume_facts(dest / "20260101-000000")
    assert not partial.readonly and partial.received_uuid is None

    retried = module("btrfs_send_backup", args)
    assert retried.code == 0 and retried.result["changed"], retried.explain()
    outcome = retried.result["destinations"][0]
    assert outcome["partials_deleted"] == [str(dest / "20260101-000000")]
    assert outcome["locks_cleared"] == ["20260101-000000"]
    assert [(t["snapshot"], t["mode"], t["status"]) for t in outcome["transfers"]] == [
        ("20260101-000000", "full", "done")]
    assert read_locks(src / "snapshot") == {}
    assert_is_backup_of(dest / "20260101-000000", snapshot)

    restore_fs = make_fs("restore")
    pipeline(["btrfs", "send", str(dest / "20260101-000000")], ["btrfs", "receive", str(restore_fs)])
    assert_same_tree(snapshot, restore_fs / "20260101-000000")

    again = module("btrfs_send_backup", args)
    assert again.code == 0 and not again.result["changed"], again.explain()


# -- btrfs_retention ---------------------------------------------------------------------------


def test_retention_deletes_with_reasons_once_and_check_mode_keeps_all(ansible, module, src):
    names = ["20260101-000000", "20260102-000000", "20260103-000000", "20260104-000000"]
    for name in names:
        snapshot_with(module, src, name)
    folder = src / "snapshot"
    (folder / LOCK_FILE).write_text(json.dumps({names[0]: {"locks": ["/elsewhere"]}}))
    args = {"path": str(folder), "count": 1}

    planned = ansible.task("btrfs_retention", args, check=True, diff=True)
    assert planned.code == 0 and planned.result["changed"], planned.explain()
    assert planned.result["diff"]["after"] == {"items": [names[0], names[3]]}
    assert subvolume_names(folder) == names

    first, second = (module("btrfs_retention", args) for _round in range(2))
    assert first.code == 0 and first.result["changed"] and not second.result["changed"], first.explain()
    assert [d["name"] for d in first.result["deleted"]] == names[1:3]
    kept = {k["name"]: k["reasons"] for k in first.result["kept"]}
    assert kept == {names[0]: ["transfer to /elsewhere is unfinished (locked)"],
                    names[3]: ["one of the newest 1"]}
    assert subvolume_names(folder) == [names[0], names[3]]


def test_retention_on_an_ssh_destination(ansible, module, make_fs, subvolume, sshd):
    folder = make_fs("nas") / "backups"
    folder.mkdir()
    base = subvolume(folder.parent / "base")
    for day in range(1, 4):
        run(["btrfs", "subvolume", "snapshot", "-r", str(base), str(folder / ("2026010%d-000000" % day))])
    args = {"path": sshd.url(folder), "count": 2, "ssh_options": sshd.ssh_options()}
    first, second = (module("btrfs_retention", args) for _round in range(2))
    assert first.code == 0 and first.result["changed"] and not second.result["changed"], first.explain()
    assert subvolume_names(folder) == ["20260102-000000", "20260103-000000"]


# -- btrfs_backup_locks ------------------------------------------------------------------------


def test_locks_add_query_remove_each_twice(ansible, module, src, dst):
    snapshot_with(module, src, "20260101-000000")
    folder = src / "snapshot"
    add = {"source": str(src), "state": "present", "snapshots": ["20260101-000000"], "destinations": [str(dst)]}

    planned = ansible.task("btrfs_backup_locks", add, check=True, diff=True)
    assert planned.code == 0 and planned.result["changed"], planned.explain()
    assert planned.result["diff"]["after"] == {"20260101-000000": {"locks": [str(dst)], "parent_locks": []}}
    assert read_locks(folder) is None

    first, second = (module("btrfs_backup_locks", add) for _round in range(2))
    assert first.result["changed"] and not second.result["changed"], first.explain()
    assert read_locks(folder) == {"20260101-000000": {"locks": [str(dst)]}}

    query = ansible.adhoc("btrfs_backup_locks", key_values({"source": str(src)}))
    assert query.code == 0 and not query.result["changed"], query.explain()
    assert query.result["locked_destinations"] == [str(dst)]
    assert query.result["entries"] == [{"snapshot": "20260101-000000", "destination": str(dst), "kind": "locks"}]

    remove = {"source": str(src), "state": "absent", "destinations": [str(dst)]}
    first, second = (module("btrfs_backup_locks", remove) for _round in range(2))
    assert first.result["changed"] and not second.result["changed"], first.explain()
    assert read_locks(folder) == {}


# -- ad hoc --------------------------------------------------------------------------------------


def test_ad_hoc_send_backup(ansible, src, dst):
    dest = dst / "backups"
    args = key_values({"source": src, "dest": dest, "num_snapshots": 2})
    first = ansible.adhoc("btrfs_send_backup", args)
    assert first.code == 0 and first.result["changed"], first.explain()
    name = first.result["snapshot"]["name"]
    assert_is_backup_of(dest / name, src / "snapshot" / name)

    modify_tree(src / "small", 64 * 1024, seed=9)
    second = ansible.adhoc("btrfs_send_backup", args)
    assert second.code == 0, second.explain()
    newer = second.result["snapshot"]["name"]
    assert [(t["snapshot"], t["parent"]) for t in second.result["destinations"][0]["transfers"]] == [(newer, name)]
    assert_same_tree(src / "snapshot" / newer, dest / newer)

    idle = ansible.adhoc("btrfs_send_backup", key_values({"source": src, "dest": dest, "snapshot": "false"}))
    assert idle.code == 0 and not idle.result["changed"], idle.explain()


# -- btrfs_restore ---------------------------------------------------------------------------


@pytest.mark.parametrize("writable", [False, True], ids=["read-only", "writable"])
def test_restore_from_ssh_twice_then_force_renames_aside(ansible, module, src, make_fs, sshd, writable):
    backups_fs, target_fs = make_fs("backups"), make_fs("restore")
    snapshot = snapshot_with(module, src, "20260101-000000")
    sent = module("btrfs_send_backup", {"source": str(src), "dest": [sshd.url(backups_fs / "b")],
                                        "snapshot": False, "ssh_options": sshd.ssh_options()})
    assert sent.code == 0, sent.explain()
    target = target_fs / "home"
    args = {"backups": sshd.url(backups_fs / "b"), "target": str(target), "writable": writable,
            "ssh_options": sshd.ssh_options()}

    planned = ansible.task("btrfs_restore", args, check=True)
    assert planned.code == 0 and planned.result["changed"], planned.explain()
    assert not target.exists() and os.listdir(target_fs) == []

    first = module("btrfs_restore", args)
    assert first.code == 0 and first.result["changed"], first.explain()
    assert first.result["snapshot"] == "20260101-000000"
    assert_same_tree(snapshot, target)
    assert subvolume_facts(target).readonly is (not writable)
    # Nothing of the staging folder is left beside the target.
    assert sorted(os.listdir(target_fs)) == ["home"]

    second = module("btrfs_restore", args)
    assert second.code == 0 and not second.result["changed"], second.explain()

    # Another mode at the same target is refused unless forced; force renames, deletes nothing.
    other = dict(args, writable=not writable)
    refused = module("btrfs_restore", other)
    assert refused.code != 0 and "already exists" in refused.explain()
    forced = module("btrfs_restore", dict(other, force=True))
    assert forced.code == 0 and forced.result["changed"], forced.explain()
    aside = forced.result["moved_aside"]
    assert os.path.basename(aside).startswith("home.before-restore-")
    assert_same_tree(snapshot, aside)
    assert_same_tree(snapshot, target)


def test_send_backup_a_failing_before_hook_fails_the_task_and_the_ping_url_stays_secret(module, src, dst):
    secret = "5e1f-secret-uuid"
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    failed = module("btrfs_send_backup", {
        "source": str(src), "dest": [str(dst / "backups")], "hook_timeout": "20s",
        "before_snapshot": ["sh -c 'echo the application did not answer >&2; exit 5'"],
        "ping_url": "http://127.0.0.1:%d/ping/%s" % (port, secret)})
    assert failed.code != 0 and failed.result["failed"], failed.explain()
    assert "failed with exit status 5; its stderr ended with: the application did not answer" in failed.result["msg"]
    assert failed.result["snapshot"] is None and not os.listdir(src / "snapshot")
    assert any("notification to http://127.0.0.1:%d/… was not delivered" % port in w
               for w in failed.result.get("warnings", [])), failed.explain()
    assert secret not in json.dumps(failed.result)


def test_restore_as_source_rebuilds_a_lost_source_once_and_the_next_backup_is_incremental(
        module, src, make_fs, btrfs_pool):
    backups = make_fs("backups") / "b"
    backups.mkdir()
    sent = module("btrfs_send_backup", {"source": str(src), "dest": [str(backups)]})
    assert sent.code == 0, sent.explain()
    lost = sent.result["snapshot"]
    btrfs_pool.release(src.parent)  # the source's filesystem is gone
    target = make_fs("newsrc") / "data"
    args = {"backups": str(backups), "target": str(target), "as_source": True}

    refused = module("btrfs_restore", dict(args, writable=True))
    assert refused.code != 0 and "parameter writable" in refused.explain() and not target.exists()
    first = module("btrfs_restore", args)
    assert first.code == 0 and first.result["changed"], first.explain()
    assert subvolume_facts(target / "snapshot" / lost["name"]).received_uuid == lost["uuid"]
    second = module("btrfs_restore", args)
    assert second.code == 0 and not second.result["changed"], second.explain()

    after = module("btrfs_send_backup", {"source": str(target), "dest": [str(backups)]})
    assert after.code == 0, after.explain()
    assert [(t["mode"], t["parent"]) for t in after.result["destinations"][0]["transfers"]] == [
        ("incremental", lost["name"])]
