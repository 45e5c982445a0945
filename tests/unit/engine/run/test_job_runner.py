"""The job runner over a fake host, table-driven: check mode plans exactly the steps a real run carries out.

Rules cited by number are those of docs/docsite/rst/rules.rst.
"""

import datetime
import os
import re

import pytest

from engine.run.job import JobConfig, run_job
from engine.host.state_store import save_state, state_root
from engine.model.job_identity import job_identity
from engine.model.steps import render
from support.fake_host import FakeHost

NOW = datetime.datetime(2026, 1, 3, 0, 0, 0)
NEW = "20260103-000000"
S1, S2 = "20260101-000000", "20260102-000000"


# -- scenes: what the fake host holds before the run -------------------------------------------


def fresh(host):
    """A source subvolume `data`, nothing else; the backup folder's parent exists."""
    host.subvolume(host.path("data"))


def with_snapshots(host, *names):
    fresh(host)
    os.makedirs(host.path("data", "snapshot"))
    for name in names:
        host.snapshot(host.path("data"), host.path("data", "snapshot", name))


def backed_up(host, dest="dest", *names):
    os.makedirs(host.path(dest), exist_ok=True)
    for name in names:
        snapshot = host.subvolumes[host.path("data", "snapshot", name)]
        host.subvolume(host.path(dest, name), readonly=True, received_uuid=snapshot["uuid"])


def write_locks(host, text):
    with open(host.path("data", "snapshot", ".outstanding_transfers"), "w") as handle:
        handle.write(text)


def incremental(host):
    with_snapshots(host, S1)
    backed_up(host, "dest", S1)


def up_to_date(host):
    with_snapshots(host, S1, S2)
    backed_up(host, "dest", S1, S2)


def partial_receive_left(host):
    """S2's transfer died: a lock, and a writable subvolume without received_uuid (rule 2, 3)."""
    with_snapshots(host, S1, S2)
    backed_up(host, "dest", S1)
    host.subvolume(host.path("dest", S2))
    write_locks(host, '{"%s": {"locks": ["%s"], "parent_locks": []}, "%s": {"parent_locks": ["%s"]}}'
                % (S2, host.path("dest"), S1, host.path("dest")))


def stale_lock(host):
    """A lock whose transfer did arrive (the lock removal was lost): settled, nothing resent."""
    up_to_date(host)
    write_locks(host, '{"%s": {"locks": ["%s"]}}' % (S2, host.path("dest")))


def foreign_under_our_name(host):
    """A writable subvolume under the next snapshot's name that no lock explains (rule 1)."""
    with_snapshots(host, S1, S2)
    backed_up(host, "dest", S1)
    host.subvolume(host.path("dest", S2))


def at_append_only_server(host):
    """Both snapshots backed up on a server whose key runs `serve --append-only`."""
    up_to_date(host)
    backed_up(host, "server", S1, S2)
    host.serve_mode = "append-only"


def at_older_append_only_server(host):
    """The same, through a serve from before the mode probe: it only refuses deletions."""
    at_append_only_server(host)
    host.serve_mode = "append-only, older"


def unreachable_only(host):
    incremental(host)
    host.answer(["ssh"], 255, stderr="ssh: connect to host backup port 22: Connection refused")


SSH_DEST = "ssh://backup/srv/backups"
SERVER = "ssh://backup{root}/server"
NEWEST_AT_SERVER = ["newest backup whose snapshot is still at the source (next incremental parent)",
                    "one of the newest 1"]
SERVER_PRUNES = "the server is append-only: its own retention (btrfs-backup prune) decides"


def remembered(host, dest_id, newest_backup):
    """The last-run state of the job: the last run that reached `dest_id` saw it hold `newest_backup`."""
    job = job_identity(source_id=host.path("data"), source_path=host.path("data"), state_root=state_root())
    save_state(job, {"version": 1, "destinations": {dest_id: {"status": "failed", "newest_backup": newest_backup}}})


def ssh_gone_local_up_to_date(host):
    """S1 and S2 at the source and at a local destination; the ssh one is out of reach, and which
    backup it holds is not known."""
    up_to_date(host)
    host.answer(["ssh"], 255, stderr="ssh: connect to host backup port 22: Connection refused")


def ssh_gone_holding_s1(host):
    """As above; the last run that reached the ssh destination saw it hold S1."""
    ssh_gone_local_up_to_date(host)
    remembered(host, SSH_DEST, S1)


def ssh_gone_holding_s1_s2_locked(host):
    """As above, and S2's transfer to the ssh destination failed: S2 is locked for it (rule 3)."""
    ssh_gone_holding_s1(host)
    write_locks(host, '{"%s": {"locks": ["%s"], "parent_locks": []}}' % (S2, SSH_DEST))


def only_ssh_holding_s1(host):
    """S1 and S2 at the source; the only destination, over ssh, is out of reach and was seen holding S1."""
    with_snapshots(host, S1, S2)
    host.answer(["ssh"], 255, stderr="ssh: connect to host backup port 22: Connection refused")
    remembered(host, SSH_DEST, S1)


# -- the table -------------------------------------------------------------------------------

CASES = {
    "first run creates both folders and sends in full": dict(
        scene=fresh, dests=["{root}/dest"],
        plan=["create snapshot folder {root}/data/snapshot",
              "create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "create destination folder {root}/dest",
              "send %s to {root}/dest (full)" % NEW]),
    "incremental from the newest common snapshot (rule 1)": dict(
        scene=incremental, dests=["{root}/dest"],
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (incremental from %s)" % (NEW, S1)]),
    "nothing to send changes nothing": dict(
        scene=up_to_date, dests=["{root}/dest"], config=dict(no_snapshot=True), plan=[]),
    "no incremental sends in full": dict(
        scene=incremental, dests=["{root}/dest"], config=dict(no_incremental=True),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (full)" % NEW]),
    "partial receive deleted, lock cleared, then resent (rules 2, 3)": dict(
        scene=partial_receive_left, dests=["{root}/dest"],
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "delete partial receive {root}/dest/%s at {root}/dest" % S2,
              "clear locks of %s, %s for {root}/dest" % (S1, S2),
              "send %s to {root}/dest (incremental from %s)" % (S2, S1),
              "send %s to {root}/dest (incremental from %s)" % (NEW, S2)],
        locks_after={}),
    "a stale lock is only cleared": dict(
        scene=stale_lock, dests=["{root}/dest"], config=dict(no_snapshot=True),
        plan=["clear locks of %s for {root}/dest" % S2], locks_after={}),
    "--remove-locks forgets a destination's locks": dict(
        scene=stale_lock, dests=["{root}/dest"], config=dict(no_snapshot=True, remove_locks=True),
        plan=["remove locks of %s for {root}/dest" % S2], locks_after={}),
    "one destination failing costs the other nothing (rule 9)": dict(
        scene=incremental, dests=["{root}/missing/dest", "{root}/dest"],
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (incremental from %s)" % (NEW, S1)],
        status={"{root}/missing/dest": "failed", "{root}/dest": "ok"}),
    "no usable destination: nothing is created (rule 7)": dict(
        scene=fresh, dests=["{root}/missing/dest"], plan=[],
        errors=["no snapshot taken, as no destination can take it"]),
    "only unreachable: the snapshot is still taken": dict(
        scene=unreachable_only, dests=[SSH_DEST],
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW],
        status={SSH_DEST: "failed"}),
    "only unreachable with require_destination: nothing is taken": dict(
        scene=unreachable_only, dests=[SSH_DEST], config=dict(require_destination=True), plan=[],
        errors=["no snapshot taken"]),
    "max_unsent_snapshots waiting for an unreachable destination: nothing is taken, nothing deleted": dict(
        scene=unreachable_only, dests=[SSH_DEST], config=dict(max_unsent_snapshots=1, num_snapshots=1), plan=[],
        status={SSH_DEST: "failed"},
        errors=["1 snapshots are waiting for %s" % SSH_DEST, "not taking another (max_unsent_snapshots 1)"]),
    # Rule 9 and rule 4: the others get their backup, the unreachable one keeps its parent.
    "max_unsent_snapshots, its backup known, another answers: taken, sent, released": dict(
        scene=ssh_gone_holding_s1, dests=["{root}/dest", SSH_DEST],
        config=dict(max_unsent_snapshots=1, num_snapshots=1),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (incremental from %s)" % (NEW, S2),
              "delete {root}/data/snapshot/%s at source (retention)" % S2],
        status={"{root}/dest": "ok", SSH_DEST: "failed"},
        kept={"source": {S1: ["newest snapshot that %s held when last reached (it continues from it when it "
                              "is back; max_unsent_snapshots)" % SSH_DEST]}}),
    "at max_unsent_snapshots a snapshot locked for the unreachable destination stays (rule 4)": dict(
        scene=ssh_gone_holding_s1_s2_locked, dests=["{root}/dest", SSH_DEST],
        config=dict(max_unsent_snapshots=1, num_snapshots=1),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (incremental from %s)" % (NEW, S2)],
        status={"{root}/dest": "ok", SSH_DEST: "failed"}),
    "max_unsent_snapshots, another answers, its backup not known: nothing taken or deleted": dict(
        scene=ssh_gone_local_up_to_date, dests=["{root}/dest", SSH_DEST],
        config=dict(max_unsent_snapshots=1, num_snapshots=1), plan=[],
        status={"{root}/dest": "ok", SSH_DEST: "failed"},
        errors=["the newest backup it holds is not known", "not taking another (max_unsent_snapshots 1)"]),
    "max_unsent_snapshots, its backup is known, but no other destination answers: nothing is taken": dict(
        scene=only_ssh_holding_s1, dests=[SSH_DEST], config=dict(max_unsent_snapshots=1, num_snapshots=1),
        plan=[], status={SSH_DEST: "failed"},
        errors=["no other destination can take a snapshot now", "every snapshot is kept"]),
    "fewer than max_unsent_snapshots waiting: the snapshot is still taken": dict(
        scene=unreachable_only, dests=[SSH_DEST], config=dict(max_unsent_snapshots=2),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW],
        status={SSH_DEST: "failed"}),
    "max_unsent_snapshots 0 sets no limit": dict(
        scene=unreachable_only, dests=[SSH_DEST], config=dict(max_unsent_snapshots=0),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW],
        status={SSH_DEST: "failed"}),
    "max_unsent_snapshots for a destination that answers: it gets them all": dict(
        # No record of what it holds: it is asked, it answers, the run goes on.
        scene=incremental, dests=["{root}/dest"], config=dict(max_unsent_snapshots=1),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (incremental from %s)" % (NEW, S1)]),
    "a foreign subvolume under our name stops that chain (rule 1)": dict(
        scene=foreign_under_our_name, dests=["{root}/dest"], config=dict(no_snapshot=True), plan=[],
        status={"{root}/dest": "failed"}, errors=["left alone"]),
    "retention at both ends, after the transfer (rule 4)": dict(
        scene=up_to_date, dests=["{root}/dest"], config=dict(num_snapshots=1, num_backups=1),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to {root}/dest (incremental from %s)" % (NEW, S2),
              "delete {root}/dest/%s at {root}/dest (retention)" % S1,
              "delete {root}/dest/%s at {root}/dest (retention)" % S2,
              "delete {root}/data/snapshot/%s at source (retention)" % S1,
              "delete {root}/data/snapshot/%s at source (retention)" % S2],
        kept={"source": {NEW: ["newest snapshot that {root}/dest holds (its next incremental parent)",
                               "one of the newest 1"]}}),
    "retention keeps the parent a destination still needs (rule 4)": dict(
        # -T: the destination is only surveyed, and still protects its next incremental parent.
        scene=up_to_date, dests=["{root}/dest"], config=dict(num_snapshots=1, no_snapshot=True, no_transfer=True),
        plan=["delete {root}/data/snapshot/%s at source (retention)" % S1],
        kept={"source": {S2: ["newest snapshot that {root}/dest holds (its next incremental parent)",
                              "one of the newest 1"]}}),
    "an append-only server is sent no deletion of a complete backup (rule 10)": dict(
        scene=at_append_only_server, dests=[SERVER], config=dict(num_backups=1),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to %s (incremental from %s)" % (NEW, SERVER, S2)],
        kept={SERVER: {S1: [SERVER_PRUNES], S2: [SERVER_PRUNES], NEW: NEWEST_AT_SERVER}},
        refusals=[]),
    "an older append-only server refuses the deletions: kept, and said (rule 10)": dict(
        scene=at_older_append_only_server, dests=[SERVER], config=dict(num_backups=1),
        plan=["create snapshot {root}/data/snapshot/%s of {root}/data" % NEW,
              "send %s to %s (incremental from %s)" % (NEW, SERVER, S2),
              "delete {root}/server/%s at %s (retention)" % (S1, SERVER),
              "delete {root}/server/%s at %s (retention)" % (S2, SERVER)],
        kept={SERVER: {S1: [SERVER_PRUNES], S2: [SERVER_PRUNES], NEW: NEWEST_AT_SERVER}},
        warnings=["%s is append-only" % SERVER]),
    "a locked snapshot is never deleted by retention (rule 4)": dict(
        scene=partial_receive_left, dests=["{root}/other"], config=dict(num_snapshots=1, no_snapshot=True),
        plan=["create destination folder {root}/other",
              "send %s to {root}/other (full)" % S1,
              "send %s to {root}/other (incremental from %s)" % (S2, S1)],
        kept={"source": {S1: ["parent of an unfinished transfer to {root}/dest"],
                         S2: ["transfer to {root}/dest is unfinished (locked)",
                              "newest snapshot that {root}/other holds (its next incremental parent)",
                              "one of the newest 1"]}}),
}


def _fill(value, root):
    if isinstance(value, str):
        return value.replace("{root}", root)
    if isinstance(value, list):
        return [_fill(v, root) for v in value]
    if isinstance(value, dict):
        return {_fill(k, root): _fill(v, root) for k, v in value.items()}
    return value


def run_case(tmp_path, case, check_mode):
    host = FakeHost(tmp_path / ("check" if check_mode else "real"))
    os.makedirs(host.root)
    case["scene"](host)
    config = JobConfig(source=host.path("data"), destinations=_fill(case["dests"], host.root),
                       check_mode=check_mode, now=NOW, **case.get("config", {}))
    before = {path: dict(sub) for path, sub in host.subvolumes.items()}
    return host, run_job(config, runner=host), before


@pytest.mark.parametrize("name", list(CASES))
def test_check_mode_plans_exactly_what_the_run_does(tmp_path, name):
    case = CASES[name]
    checked_host, checked, before = run_case(tmp_path, case, check_mode=True)
    host, done, _ = run_case(tmp_path, case, check_mode=False)

    expected = _fill(case["plan"], host.root)
    assert render(done.steps) == expected, done.as_dict()
    # Check mode's plan is the same, under its own root; and it changed nothing.
    assert checked.as_dict()["plan"] == _fill(case["plan"], checked_host.root), checked.as_dict()
    assert checked_host.subvolumes == before
    assert done.changed == checked.changed == bool(expected)
    assert done.as_dict()["plan"] == []


@pytest.mark.parametrize("name", list(CASES))
def test_outcomes_per_destination_and_retention_reasons(tmp_path, name):
    case = CASES[name]
    host, done, _ = run_case(tmp_path, case, check_mode=False)
    shaped = done.as_dict()
    for dest_id, status in _fill(case.get("status", {}), host.root).items():
        assert {d["id"]: d["status"] for d in shaped["destinations"]}[dest_id] == status, shaped
    for text in case.get("errors", []):
        assert any(text in error for error in shaped["errors"]), shaped["errors"]
    if not case.get("errors") and not case.get("status"):
        assert not shaped["errors"], shaped["errors"]
    if "locks_after" in case:
        assert shaped["locks"] == case["locks_after"]
    if "refusals" in case:
        assert host.refusals == case["refusals"]
    for text in _fill(case.get("warnings", []), host.root):
        assert sum(text in warning for warning in shaped["warnings"]) == 1, shaped["warnings"]
    for where, kept in _fill(case.get("kept", {}), host.root).items():
        section = {s["where"]: s for s in shaped["retention"]}[where]
        reasons = {k["name"]: k["reasons"] for k in section["kept"]}
        for snapshot, why in kept.items():
            assert reasons[snapshot] == why, section


# -- failing transfers: what the real run leaves (check mode cannot foresee a broken stream) --

FAULTS = {
    "receive fails and leaves a partial receive": dict(leave_partial=True),
    "receive fails without leaving anything": dict(leave_partial=False),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_failed_receive_keeps_its_lock_and_loses_its_partial_receive(tmp_path, name):
    host = FakeHost(tmp_path)
    incremental(host)
    host.fail_receive(host.path("dest"), **FAULTS[name])
    result = run_job(JobConfig(source=host.path("data"), destinations=[host.path("dest"), host.path("good")],
                               num_snapshots=1, now=NOW), runner=host)
    shaped = result.as_dict()
    dest, good = shaped["destinations"]
    partial = [host.path("dest", NEW)] if FAULTS[name]["leave_partial"] else []
    # Rule 2: the partial receive is deleted at once; rule 3: the lock stays for the next run.
    assert dest["status"] == "failed" and dest["partial_receives_deleted"] == dest["partials_deleted"] == partial
    assert [t["status"] for t in dest["transfers"]] == ["failed"]
    assert shaped["locks"] == {NEW: {"locks": [host.path("dest")], "parent_locks": []},
                               S1: {"locks": [], "parent_locks": [host.path("dest")]}}
    assert host.path("dest", NEW) not in host.subvolumes
    # Rule 9: the other destination got its backup.
    assert good["status"] == "ok" and [t["status"] for t in good["transfers"]] == ["done", "done"]
    # Rule 4: retention keeps what the unfinished transfer needs.
    source = {s["where"]: s for s in shaped["retention"]}["source"]
    assert source["deleted"] == []
    # Both need NEW from S1: one send feeds both (fan-out), and the failure of one spares the other.
    assert render(result.steps) == [
        "create snapshot %s of %s" % (host.path("data", "snapshot", NEW), host.path("data")),
        "create destination folder %s" % host.path("good"),
        "send %s to %s (full)" % (S1, host.path("good")),
        "send %s to %s (incremental from %s)" % (NEW, host.path("dest"), S1),
        "send %s to %s (incremental from %s)" % (NEW, host.path("good"), S1),
    ] + (["delete partial receive %s at %s" % (host.path("dest", NEW), host.path("dest"))] if partial else [])
    assert len(host.ran("btrfs", "send")) == 2
    assert good["transfers"][1]["shared_with"] == [host.path("dest")]


def test_the_next_run_resends_what_failed(tmp_path):
    host = FakeHost(tmp_path)
    incremental(host)
    host.fail_receive(host.path("dest"), leave_partial=False)
    run_job(JobConfig(source=host.path("data"), destinations=[host.path("dest")], now=NOW), runner=host)
    del host.failing_receives[host.path("dest")]
    again = run_job(JobConfig(source=host.path("data"), destinations=[host.path("dest")], no_snapshot=True,
                              now=NOW), runner=host)
    assert render(again.steps) == [
        "clear locks of %s, %s for %s" % (S1, NEW, host.path("dest")),
        "send %s to %s (incremental from %s)" % (NEW, host.path("dest"), S1),
    ]
    assert again.as_dict()["locks"] == {} and not again.errors


def test_check_mode_says_only_what_it_would_do_once(tmp_path):
    from engine.frontends.cli import _summary

    host = FakeHost(tmp_path)
    up_to_date(host)
    config = dict(source=host.path("data"), destinations=[host.path("dest")], num_snapshots=1, now=NOW)
    checked = run_job(JobConfig(check_mode=True, **config), runner=host)
    assert _summary(checked) == ["would " + line for line in render(checked.steps)]
    assert len(_summary(checked)) == 4  # snapshot, send, two deletions at the source
    done = run_job(JobConfig(**config), runner=host)
    assert not any(line.startswith("would ") for line in _summary(done))


# -- rule 8: a backup is somewhere else -------------------------------------------------------


def test_a_destination_on_the_sources_own_filesystem_is_refused_and_nothing_is_made(tmp_path):
    """The usual cause: a backup disk that is not mounted, so its mount point is a plain folder
    on the source's disk (here: a folder inside the source's filesystem)."""
    host = FakeHost(tmp_path)
    fresh(host)
    os.makedirs(host.path("data/mnt/usb-backup"))
    before = {path: dict(sub) for path, sub in host.subvolumes.items()}
    done = run_job(JobConfig(source=host.path("data"), destinations=[host.path("data/mnt/usb-backup")],
                             now=NOW), runner=host)
    assert done.failed and host.subvolumes == before and render(done.steps) == []
    error = " ".join(done.errors)
    assert host.path("data/mnt/usb-backup") in error and host.path("data") in error, error
    assert "same btrfs filesystem" in error and "not mounted" in error and "--allow-same-filesystem" in error


def test_a_destination_on_the_sources_filesystem_is_accepted_when_allowed(tmp_path):
    host = FakeHost(tmp_path)
    fresh(host)
    os.makedirs(host.path("data/mnt/usb-backup"))
    done = run_job(JobConfig(source=host.path("data"), destinations=[host.path("data/mnt/usb-backup")],
                             allow_same_filesystem=True, now=NOW), runner=host)
    assert not done.failed, done.as_dict()
    assert render(done.steps)[-1] == "send %s to %s (full)" % (NEW, host.path("data/mnt/usb-backup"))


# -- the mode probe rides in the batch of capability probes that a destination gets anyway ------


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check"])
def test_the_server_is_asked_its_mode_with_its_tools_once(tmp_path, check_mode):
    host = FakeHost(tmp_path)
    at_append_only_server(host)
    run_job(JobConfig(source=host.path("data"), destinations=[_fill(SERVER, host.root)], num_backups=1,
                      check_mode=check_mode, now=NOW), runner=host)
    batches = [argv[-1] for argv in host.ran("ssh") if "btrfs-backup-serve-mode" in argv[-1]]
    assert len(batches) == 1 and "btrfs --version" in batches[0] and "zstd --version" in batches[0], batches


def test_an_older_serve_is_asked_again_without_the_mode_probe(tmp_path):
    host = FakeHost(tmp_path)
    at_older_append_only_server(host)
    run_job(JobConfig(source=host.path("data"), destinations=[_fill(SERVER, host.root)], now=NOW), runner=host)
    batches = [argv[-1] for argv in host.ran("ssh") if "btrfs --version" in argv[-1]]
    assert ["btrfs-backup-serve-mode" in batch for batch in batches] == [True, False], batches
    assert host.ran("btrfs", "--version"), "the second batch was answered"


# -- one remote command tells the run all it must know of an ssh destination before sending ------


def plain_ssh_host(host):
    """Both snapshots backed up at a plain ssh host (no serve)."""
    at_append_only_server(host)
    host.serve_mode = None


#: scene -> remote commands of a run with something to send: what it must know (listing, tools,
#: mode), the receive that also answers what arrived, and a check of its own only where no answer comes
#: (an older serve also refuses the first survey, which is asked again without the mode probe).
ROUND_TRIPS = {
    "a plain ssh host: the receive's command reads what arrived": (plain_ssh_host, 2, True),
    "serve: it answers what arrived by itself": (at_append_only_server, 2, False),
    "a serve from before the answer (and the mode probe): the check is asked apart": (
        at_older_append_only_server, 5, False),
}


@pytest.mark.parametrize("scene", list(ROUND_TRIPS))
def test_an_ssh_destination_is_asked_once_before_sending(tmp_path, scene):
    at, count, folded = ROUND_TRIPS[scene]
    host = FakeHost(tmp_path)
    at(host)
    os.utime(host.path("data"))  # something new to send
    done = run_job(JobConfig(source=host.path("data"), destinations=[_fill(SERVER, host.root)], now=NOW),
                   runner=host)
    assert not done.failed, done.as_dict()
    remote = [argv[-1] for argv in host.ran("ssh") if "--" in argv]
    assert len(remote) == count, remote
    assert "btrfs-backup-serve-mode" in remote[0] and "zstd --version" in remote[0] and "list" in remote[0]
    receive = [line for line in remote if "btrfs receive" in line]
    assert len(receive) == 1 and ("btrfs subvolume show" in receive[0]) == folded, receive
    assert ("list" in remote[-1]) == (count > 2), remote


def first_backup(serve_mode, serve_features=True):
    """A source without snapshots, and the server's folder for it (not yet the backup folder)."""
    def scene(host):
        fresh(host)
        os.makedirs(host.path("server"))
        host.serve_mode, host.serve_features = serve_mode, serve_features
    return scene


#: scene -> remote commands of a first run to a folder that does not exist yet, and whether the
#: receive's own command creates it: the survey (the folder is missing), its parent's listing, the
#: receive (a serve that does not say it takes that form gets a mkdir apart; one from before the mode
#: probe is asked again without it, and for what arrived).
NEW_FOLDER_ROUND_TRIPS = {
    "a plain ssh host": (first_backup(None), 3, True),
    "a serve that says it takes the receive that makes its folder": (first_backup("append-only"), 3, True),
    "a serve from before that: a mkdir of its own": (first_backup("append-only", serve_features=False), 4, False),
    "a serve from before the mode probe: a mkdir of its own": (first_backup("append-only, older"), 7, False),
}


@pytest.mark.parametrize("scene", list(NEW_FOLDER_ROUND_TRIPS))
def test_a_first_run_to_a_new_folder_creates_it_in_the_receives_command_where_it_may(tmp_path, scene):
    at, count, folded = NEW_FOLDER_ROUND_TRIPS[scene]
    host = FakeHost(tmp_path)
    at(host)
    done = run_job(JobConfig(source=host.path("data"), destinations=[_fill(SERVER, host.root) + "/new"], now=NOW),
                   runner=host)
    assert not done.failed, done.as_dict()
    assert host.subvolumes[host.path("server", "new", NEW)]["readonly"]
    remote = [argv[-1] for argv in host.ran("ssh") if "--" in argv]
    assert len(remote) == count, "\n".join(remote)
    receive = [line for line in remote if "btrfs receive" in line]
    assert len(receive) == 1 and receive[0].startswith("mkdir -p -- %s && " % host.path("server", "new")) == folded
    assert any(line.startswith("mkdir -- ") for line in remote) != folded, remote


class _GarbledHost(FakeHost):
    """Every batch the ssh destination answers comes back garbled (its status markers broken)."""

    def _ssh(self, argv):
        result = super()._ssh(argv)
        if "--" in argv and "__btrfs_backup_" in argv[-1]:
            result.stdout = re.sub(r"(__btrfs_backup_\w+__) \d+", r"\1 ?", result.stdout)
        return result


def test_a_garbled_answer_is_a_clear_error_and_nothing_is_made(tmp_path):
    host = _GarbledHost(tmp_path)
    incremental(host)
    before = {path: dict(sub) for path, sub in host.subvolumes.items()}
    done = run_job(JobConfig(source=host.path("data"), destinations=[_fill(SERVER, host.root)], now=NOW),
                   runner=host)
    assert done.failed and host.subvolumes == before and render(done.steps) == []
    assert "no snapshot taken" in " ".join(done.errors) and "unexpected output" in " ".join(done.errors), done.errors


# -- restore: the same promise, check mode plans exactly the steps a restore carries out ---------

B1, B2 = "20260101-000000", "20260102-000000"


def backups_here(host):
    """Two received backups in `backups`; the restore target's folder `restored` exists."""
    for name in (B1, B2):
        host.subvolume(host.path("backups", name), readonly=True, received_uuid="sent-" + name)
    os.makedirs(host.path("restored"))


def with_earlier_restore(host):
    """The newest backup was restored read-only at the target already."""
    backups_here(host)
    host.subvolume(host.path("restored", "home"), readonly=True, received_uuid="sent-" + B2)


def with_a_folder_at_the_target(host):
    backups_here(host)
    os.makedirs(host.path("restored", "home"))


RECEIVE = "receive {snapshot} from {root}/backups into {root}/restored/.btrfs-backup-restore-*"
RESTORE_CASES = {
    "the newest read-only": dict(
        scene=backups_here, options={},
        plan=[RECEIVE.replace("{snapshot}", B2), "read-only snapshot of it at {root}/restored/home"]),
    "a chosen one writable, marked and cleaned": dict(
        scene=backups_here, options=dict(name=B1, writable=True),
        plan=[RECEIVE.replace("{snapshot}", B1), "writable snapshot of it at {root}/restored/home",
              "mark {root}/restored/home as restored from sent-%s %s writable" % (B1, B1),
              "remove the source's run files restored into {root}/restored/home"]),
    "over an existing target, moved aside": dict(
        scene=with_a_folder_at_the_target, options=dict(force=True),
        plan=[RECEIVE.replace("{snapshot}", B2),
              "rename {root}/restored/home to {root}/restored/home.before-restore-20260103-000000",
              "read-only snapshot of it at {root}/restored/home"]),
    "restored already: nothing to do": dict(scene=with_earlier_restore, options={}, plan=[]),
}


def run_restore(tmp_path, case, check_mode):
    from engine.run.restore import restore

    host = FakeHost(tmp_path / ("checked" if check_mode else "done"))
    case["scene"](host)
    before = ({path: dict(sub) for path, sub in host.subvolumes.items()}, sorted(os.listdir(host.path("restored"))))
    done = restore(host.path("backups"), host.path("restored", "home"), check_mode=check_mode, runner=host,
                   now=NOW, **case["options"])
    return host, done, before


def _staging_as_star(lines):
    return [re.sub(r"\.btrfs-backup-restore-[0-9a-f]{12}", ".btrfs-backup-restore-*", line) for line in lines]


@pytest.mark.parametrize("name", list(RESTORE_CASES))
def test_check_mode_plans_exactly_what_a_restore_does(tmp_path, name):
    case = RESTORE_CASES[name]
    checked_host, checked, before = run_restore(tmp_path, case, check_mode=True)
    host, done, _ = run_restore(tmp_path, case, check_mode=False)

    assert _staging_as_star(done["plan"]) == _fill(case["plan"], host.root), done
    assert _staging_as_star(checked["plan"]) == _fill(case["plan"], checked_host.root), checked
    # Check mode changed nothing: no subvolume, no staging folder, no mark.
    assert (checked_host.subvolumes, sorted(os.listdir(checked_host.path("restored")))) == before
    assert done["changed"] == checked["changed"] == bool(case["plan"])
    if done["changed"]:  # a real restore leaves the target and no staging folder
        restored = host.subvolumes[host.path("restored", "home")]
        assert restored["readonly"] is not case["options"].get("writable", False)
        assert not [n for n in os.listdir(host.path("restored")) if n.startswith(".btrfs-backup-restore-")]
