"""Proof under chaos: long random sequences of runs, faults and hand edits on real btrfs and real
ssh, with the numbered rules (docs: the rules) checked after every step.

Each sequence is drawn from a seeded generator, so a failure is replayed exactly with
`CHAOS_SEEDS=<seed>`. The steps: runs to a random subset of three destinations (two local, one
ssh), some with a fault (a receive cut mid-stream, a full disk, an unreachable host), runs
killed at a random moment (SIGTERM or SIGKILL, the CLI alone or its whole process group), data
changes, hand deletions of snapshots and backups, changes of retention settings, and
`--no-snapshot --locked-dests` retries, and resumable transfers to the ssh destination cut
mid-staging (the client killed, alone or with its group, or the destination's chunk receiver
killed), each followed by the next run that resumes it. A run to several destinations shares one send among
those that need the same snapshot from the same parent (fan-out); the ssh destination gets the
stream compressed unless the run says otherwise (`--compress none`, a level, a buffer, protocol 1). After every step the checks below hold; after every
run, also what the model says: nothing that existed is missing unless the run reported
deleting it, and what a run reports as sent is there.

Cuts of resumable transfers come between the steps from a generator of their own, in every
sequence but the fixed seeds' (which replay as they were found; RESUMABLE_SEEDS are fixed ones
with cuts). In CI: the fixed seeds plus two fresh ones, 12 steps each. Soak: `CHAOS_SOAK_MINUTES=60` draws
fresh seeds until the time is up and prints the counts.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from cli_helpers import LOCK_FILE, failing_receive_env, run_cli, ssh_args, subvolumes
from faults import descendants, find_process, fill_up, process_table, start_cli, wait_for
from support.btrfs_loop import run
from support.sshd import free_port
from support.trees import MiB, assert_same_tree, modify_tree, write_file, write_mixed_tree, write_text_files

# 2264788707 once made a snapshot with the name of a hand-deleted one whose backup was still
# at a destination (the same second): the name clash must be reported, never taken for a backup;
# 15280 made one too, and content is compared only between a backup and its snapshot by UUID;
# 3732603099 made one that retention (-n) left unsent: no conflict to report, nothing taken;
# 538500082 left one in the way of the final run: reported as a conflict, left alone;
# 3932828797: a killed run's ssh receive completed after the kill step, during the next one.
FIXED_SEEDS = [11, 23, 42, 2264788707, 15280, 3732603099, 538500082, 3932828797]
RESUMABLE_SEEDS = [3]  # five cuts: the client killed (SIGTERM, SIGKILL, alone, with its group), the receiver killed
STEPS = int(os.environ.get("CHAOS_STEPS", "12"))
CUT_SHARE = 0.2  # of the steps, how many are preceded by the cut of a resumable transfer
STAGING = ".btrfs-backup-staging"
RESUMABLE = ["--resumable", "always", "--resumable-chunk-size", "1M"]
SOAK_MINUTES = float(os.environ.get("CHAOS_SOAK_MINUTES", "0"))
COUNTS = collections.Counter()  # steps, faults and checks, printed at the end of the session


def _seeds():
    if os.environ.get("CHAOS_SEEDS"):
        return [int(s) for s in os.environ["CHAOS_SEEDS"].split(",")]
    fresh = [int.from_bytes(os.urandom(4), "big") for _ in range(2)]
    return FIXED_SEEDS + RESUMABLE_SEEDS + fresh


class World:
    """The source, its three destinations, and what the last observation of each held."""

    def __init__(self, make_fs, subvolume, sshd, workdir):
        self.source = subvolume(make_fs("chaos-src", size="1G") / "data")
        # The data lives beside the snapshot folder, never in it (changes must not touch the lock file).
        self.files = self.source / "files"
        write_mixed_tree(self.files, n_small=40, small_size=2048, large_files=[6 * MiB], seed=1)
        # Some text too: `--compress auto` finds the data worth compressing for the ssh destination.
        write_text_files(self.files / "text", 4, 512 * 1024, seed=1)
        self.snaps = self.source / "snapshot"
        self.small_fs = make_fs("chaos-small", size="300M")
        remote_fs = make_fs("chaos-remote", size="1G")
        self.folders = {
            "local": make_fs("chaos-local", size="1G") / "backups",
            "small": self.small_fs / "backups",
            "ssh": remote_fs / "backups",
        }
        self.sshd = sshd
        self.ids = {"local": str(self.folders["local"]), "small": str(self.folders["small"]),
                    "ssh": sshd.url(self.folders["ssh"])}
        self.workdir = workdir
        self.hand_deleted = set()  # snapshot names deleted by hand at the source
        # Each sequence's own filesystems (a soak gives them back after each one).
        self.filesystems = [self.source.parent, self.small_fs, remote_fs, self.folders["local"].parent]

    def snapshots(self):
        return {n: s for n, s in subvolumes(self.snaps).items()} if self.snaps.exists() else {}

    def backups(self, dest):
        folder = self.folders[dest]
        return subvolumes(folder) if folder.exists() else {}

    def locks(self):
        """Rule 3: the lock file always parses, in btrfs-backup 0.3's shape."""
        path = self.snaps / LOCK_FILE
        if not path.exists():
            return {}
        raw = path.read_bytes()
        try:
            table = json.loads(raw.decode("utf-8"))
        except ValueError as err:
            raise AssertionError("the lock file does not parse (%s): %r" % (err, raw[:200])) from err
        assert isinstance(table, dict)
        for name, entry in table.items():
            assert set(entry) <= {"locks", "parent_locks"}, (name, entry)
            assert all(isinstance(v, list) for v in entry.values()), (name, entry)
        COUNTS["check: lock file parses"] += 1
        return table

    def state(self):
        return {"snapshots": self.snapshots(), "locks": self.locks(),
                **{dest: self.backups(dest) for dest in self.folders}}


# -- the steps ----------------------------------------------------------------------------------


def step_run(world, rng, extra=()):
    dests = [d for d in world.folders if rng.random() < 0.7] or [rng.choice(list(world.folders))]
    fault = rng.choice([None, None, None, "cut", "full", "unreachable"])
    args = list(extra) + ["-N", str(rng.choice([0, 2, 3])), "-n", str(rng.choice([0, 2, 3]))]
    # The destinations of a run share one send (fan-out); the ssh one gets it compressed, or not.
    stream = rng.choice([[], [], ["--compress", "none"], ["--compress", "zstd:1"], ["--buffer", "1M"],
                         ["--send-protocol", "1"]])
    args += stream
    COUNTS["stream: %s" % (" ".join(stream) or "default (compressed over ssh)")] += 1
    COUNTS["fan-out: %d destinations" % len(dests)] += 1
    env, ballast, urls = None, None, {d: world.ids[d] for d in dests}
    if fault == "cut":
        target = rng.choice([d for d in ("local", "small") if d in dests] or ["local"])
        env = failing_receive_env(world.workdir, nbytes=rng.choice([2000, 200000]),
                                  only=world.folders[target])
    elif fault == "full" and "small" in dests:
        world.folders["small"].mkdir(exist_ok=True)
        ballast = fill_up(world.small_fs, leave_free=rng.choice([1, 3]) * MiB)
    elif fault == "unreachable" and "ssh" in dests:
        urls["ssh"] = "ssh://root@127.0.0.2:%d%s" % (free_port("127.0.0.2"), world.folders["ssh"])
    COUNTS["fault: %s" % (fault or "none")] += 1
    before = world.state()
    done = run_cli(*ssh_args(world.sshd), "--ssh-opt", "ConnectTimeout=5", *args,
                   world.source, *urls.values(), env=env)
    if ballast is not None:
        ballast.unlink()
        run(["btrfs", "filesystem", "sync", world.small_fs])
    assert done.result is not None, done.explain()
    check_run(world, before, done.result, {d: u for d, u in urls.items() if u == world.ids[d]})


def step_kill(world, rng):
    signum = rng.choice([signal.SIGTERM, signal.SIGKILL])
    whole_group = rng.random() < 0.5
    write_file(world.files / ("grow-%d.bin" % rng.randrange(1 << 30)), 8 * MiB, seed=rng.randrange(1000))
    with start_cli(*ssh_args(world.sshd), world.source, *world.ids.values()) as cli:
        time.sleep(rng.uniform(0.05, 1.5))
        try:
            cli.signal_group(signum) if whole_group else cli.signal(signum)
        except ProcessLookupError:
            pass  # it had finished
        cli.finish()
    COUNTS["fault: killed by %s%s" % (signum.name, " (group)" if whole_group else "")] += 1
    wait_until_quiet(world)
    world.locks()


def wait_until_quiet(world):
    """The receive on the ssh side outlives a killed client until its stream ends (and may still
    complete the backup); sshd may even start it after the client died, from what it had
    buffered. The next step starts from what it leaves: wait until no receive into the
    destinations and no command of an ssh session has run for a while."""
    folders = [str(f) for f in world.folders.values()]

    def busy():
        return any("receive" in proc.argv and any(f in a for a in proc.argv for f in folders)
                   for proc in process_table().values()) or any(
            not proc.comm.startswith("sshd") for proc in descendants(world.sshd.pid))

    quiet_since = [None]

    def quiet_for_a_while():
        now = time.monotonic()
        if busy():
            quiet_since[0] = None
        elif quiet_since[0] is None:
            quiet_since[0] = now
        return quiet_since[0] is not None and now - quiet_since[0] >= 1.5

    wait_for("the killed run's receivers to end", quiet_for_a_while, timeout=90, interval=0.1)


def staged_chunks(world) -> dict:
    """{staging key: chunks verified there} at the ssh destination."""
    root = world.folders["ssh"] / STAGING
    if not root.is_dir():
        return {}
    return {folder.name: sum(1 for line in (folder / "chunks.sha256").read_text().splitlines()
                             if line.endswith(".chunk")) if (folder / "chunks.sha256").exists() else 0
            for folder in root.iterdir()}


def step_resumable_cut(world, rng):
    """A resumable transfer to the ssh destination (and maybe others) cut once some chunks have
    landed, then the next run: the rules hold after it, and it resumed from what was staged."""
    write_file(world.files / ("grow-%d.bin" % rng.randrange(1 << 30)), 6 * MiB, seed=rng.randrange(1000))
    dests = ["ssh"] + [d for d in ("local", "small") if rng.random() < 0.4]
    urls = {d: world.ids[d] for d in dests}
    fault = rng.choice(["client SIGKILL group", "client SIGKILL", "client SIGTERM", "client SIGTERM group",
                        "receiver SIGKILL"])
    chunks = rng.randint(1, 5)
    with start_cli(*ssh_args(world.sshd), *RESUMABLE, "--limit-rate", "4M", world.source, *urls.values()) as cli:
        def landed():
            return cli.proc.poll() is not None or max(staged_chunks(world).values() or [0]) >= chunks
        wait_for("%d staged chunks" % chunks, landed, timeout=90, interval=0.01)
        try:
            if fault.startswith("receiver"):
                root = str(world.folders["ssh"] / STAGING)
                lander = find_process("the chunk receiver", world.sshd.pid,
                                      lambda p: p.comm.startswith("python") and any(a.startswith(root) for a in p.argv),
                                      timeout=5)
                os.kill(lander.pid, signal.SIGKILL)
            else:
                signum = signal.SIGKILL if "SIGKILL" in fault else signal.SIGTERM
                cli.signal_group(signum) if fault.endswith("group") else cli.signal(signum)
        except (ProcessLookupError, AssertionError):
            fault = "none (it had finished)"
        cli.finish()
    COUNTS["fault: resumable transfer cut, %s" % fault] += 1
    wait_until_quiet(world)
    staged = staged_chunks(world)

    before = world.state()
    done = run_cli(*ssh_args(world.sshd), "--ssh-opt", "ConnectTimeout=5", *RESUMABLE, "--no-snapshot",
                   world.source, *urls.values())
    assert done.result is not None, done.explain()
    check_run(world, before, done.result, urls)
    outcome = next(o for o in done.result["destinations"] if o["id"] == world.ids["ssh"])
    snapshots = world.snapshots()
    for transfer in outcome["transfers"]:
        parent = transfer.get("parent")
        key = "%s.%s" % (transfer["snapshot"], snapshots[parent].uuid if parent in snapshots else "full")
        if transfer["status"] == "done" and key in staged and "starting over" not in done.stderr:
            # Rule 13: what had landed was proven and kept, only the rest was sent.
            assert transfer["resumed_bytes"] == staged[key] * MiB, (transfer, staged)
            COUNTS["check: a cut resumable transfer resumed from its staging"] += 1
    if outcome["status"] == "ok":
        # Nothing is left staged of what arrived.
        arrived = {t["snapshot"] for t in outcome["transfers"] if t["status"] == "done"}
        left = [k for k in staged_chunks(world) if k.split(".")[0] in arrived]
        assert not left, "staging of arrived snapshots left at the ssh destination: %s" % left
        COUNTS["check: no staging left of what arrived"] += 1


def step_change(world, rng):
    modify_tree(world.files, n_bytes=rng.choice([4096, 200000]), seed=rng.randrange(1 << 30),
                add_files=2, remove_files=1, max_write=64 * 1024)


def step_delete_snapshot(world, rng):
    snapshots = sorted(world.snapshots())
    if snapshots:
        name = rng.choice(snapshots)
        run(["btrfs", "subvolume", "delete", world.snaps / name])
        world.hand_deleted.add(name)
        COUNTS["fault: snapshot deleted by hand"] += 1


def step_delete_backup(world, rng):
    dest = rng.choice(["local", "small"])
    complete = sorted(n for n, s in world.backups(dest).items() if s.complete_backup)
    if complete:
        run(["btrfs", "subvolume", "delete", world.folders[dest] / rng.choice(complete)])
        COUNTS["fault: backup deleted by hand"] += 1


def step_retry_locked(world, rng):
    before = world.state()
    done = run_cli(*ssh_args(world.sshd), "--no-snapshot", "--locked-dests", world.source)
    assert done.result is not None, done.explain()
    check_run(world, before, done.result, {d: world.ids[d] for d in world.folders
                                           if any(d_ for d_ in done.result["destinations"]
                                                  if d_["id"] == world.ids[d])})


STEP_KINDS = [(step_run, 6), (step_kill, 2), (step_change, 3), (step_delete_snapshot, 1),
              (step_delete_backup, 1), (step_retry_locked, 1)]


# -- the rules, after every run -----------------------------------------------------------------


def check_run(world, before, result, in_run):
    """The rules and the model after a run that ended by itself. `in_run`: dest -> its id."""
    after = world.state()
    snapshots = after["snapshots"]
    by_uuid = {s.uuid: n for n, s in snapshots.items()}
    deleted_at = collections.defaultdict(set)
    for section in result.get("retention", []):
        deleted_at[section["where"]].update(d["name"] for d in section["deleted"])

    # Nothing the model says exists is missing, unless the run reported deleting it.
    lost = set(before["snapshots"]) - set(snapshots) - deleted_at["source"]
    assert not lost, "snapshots vanished without a retention decision: %s" % sorted(lost)
    COUNTS["check: no snapshot lost"] += 1
    for dest, dest_id in world.ids.items():
        was = {n for n, s in before[dest].items() if s.complete_backup}
        now = {n for n, s in after[dest].items() if s.complete_backup}
        lost = was - now - deleted_at[dest_id]
        assert not lost, "%s lost complete backups: %s" % (dest, sorted(lost))
        COUNTS["check: no backup lost"] += 1
        outcome = next((o for o in result["destinations"] if o["id"] == dest_id), None)
        for name, backup in after[dest].items():
            if not (backup.complete_backup and name in snapshots):
                continue
            if backup.received_uuid != snapshots[name].uuid:
                # Rule 1: a subvolume with a snapshot's name but another UUID (the backup of an
                # older snapshot of that name, deleted by hand) is never taken for its backup.
                sent_it = outcome and any(t["snapshot"] == name and t["status"] == "done"
                                          for t in outcome["transfers"])
                assert not sent_it, "%s: %s reported sent, but it holds another snapshot's backup" % (dest, name)
                COUNTS["check: a name clash is not taken for a backup"] += 1
            COUNTS["check: backup matches its snapshot by UUID"] += 1

    for outcome in result["destinations"]:
        dest = next((d for d, i in in_run.items() if i == outcome["id"]), None)
        if dest is None:
            continue
        # Complete backups of the very snapshot of that name (by UUID), before the run.
        had = {n for n, s in before[dest].items() if s.complete_backup and n in before["snapshots"]
               and s.received_uuid == before["snapshots"][n].uuid}
        for transfer in outcome["transfers"]:
            if transfer["status"] == "done":
                # What a run reports as sent is there, complete (rule 2).
                backup = after[dest].get(transfer["snapshot"])
                deleted = transfer["snapshot"] in deleted_at[outcome["id"]]
                assert deleted or (backup is not None and backup.complete_backup), (dest, transfer)
                COUNTS["stream: transfer done %s%s" % ("compressed" if "compressed_bytes" in transfer else "plain",
                                                        ", shared" if transfer.get("shared_with") else "")] += 1
            if transfer["mode"] == "incremental":
                # Rule 1: the parent of an incremental send was a complete backup of that very
                # snapshot there (a subvolume of the same name but another UUID never is).
                # A killed run's ssh receive may complete after "before" was read: the parent may
                # also be a complete backup of it that is there after the run.
                parent = transfer["parent"]
                landed = after[dest].get(parent)
                assert parent in had or parent in {
                    t["snapshot"] for t in outcome["transfers"] if t["status"] == "done"} or (
                    landed is not None and landed.complete_backup and parent in snapshots
                    and landed.received_uuid == snapshots[parent].uuid), (dest, transfer)
            COUNTS["check: transfer verified"] += 1
        if outcome["status"] == "ok":
            # Rule 2: after a successful run no partial receive is left there.
            partial = [n for n, s in after[dest].items() if not s.complete_backup]
            assert not partial, "%s keeps partial receives after a successful run: %s" % (dest, partial)
            # Rule 3: the locks name only unfinished transfers.
            locked = [n for n, e in after["locks"].items() if outcome["id"] in e.get("locks", [])]
            assert not locked, "%s still locked after a successful run: %s" % (dest, locked)
            # Rule 4: retention kept the newest snapshot that the destination holds.
            common_before = sorted(had)
            common_after = [n for n, s in after[dest].items() if s.complete_backup
                            and s.received_uuid in by_uuid]
            if common_before and after[dest]:
                assert common_after, "%s: retention broke the chain (no common snapshot left)" % dest
            COUNTS["check: partials, locks, chain after a successful run"] += 1

    # Sampled content: one complete backup against its snapshot.
    pairs = [(d, n) for d in world.folders for n, s in after[d].items()
             if s.complete_backup and n in snapshots and s.received_uuid == snapshots[n].uuid]
    if pairs:
        dest, name = random.Random(len(pairs)).choice(pairs)
        assert_same_tree(world.snaps / name, world.folders[dest] / name)
        COUNTS["check: content equals its snapshot"] += 1


# -- the sequences ------------------------------------------------------------------------------


def play(world, seed, steps):
    rng = random.Random(seed)
    # Cuts of resumable transfers draw from a generator of their own: the other steps are the
    # ones the seed always drew, and the fixed seeds replay exactly as they were found.
    cuts = random.Random("resumable cuts %d" % seed) if seed not in FIXED_SEEDS else None
    kinds, weights = zip(*STEP_KINDS)
    done = []

    def take(step, generator):
        """One step; its failure names the seed, the steps so far and how to replay them."""
        done.append(step.__name__)
        try:
            step(world, generator)
        except Exception as err:
            raise AssertionError("seed %d, step %d (%s): %s\nreplay: CHAOS_SEEDS=%d CHAOS_STEPS=%d"
                                 % (seed, len(done), " -> ".join(done), err, seed, steps)) from err
        COUNTS["steps"] += 1

    for _ in range(steps):
        step = rng.choices(kinds, weights)[0]
        if cuts is not None and cuts.random() < CUT_SHARE:
            take(step_resumable_cut, cuts)
        take(step, rng)
        if os.environ.get("CHAOS_TRACE"):
            print("after %s: snapshots %s; local %s" % (
                step.__name__, {n: s.uuid[:8] for n, s in sorted(world.snapshots().items())},
                {n: (b.received_uuid or "-")[:8] + ("" if b.complete_backup else " partial")
                 for n, b in sorted(world.backups("local").items())}), flush=True)
    # The end: a clean run to every destination must bring all of them up to date.
    before = world.state()
    final = run_cli(*ssh_args(world.sshd), world.source, *world.ids.values())
    assert final.result is not None, final.explain()
    for outcome in final.result["destinations"]:
        # Each destination is brought up to date, unless it holds another snapshot's backup under
        # a snapshot's name (a name taken again after a hand deletion): that one is reported as a
        # conflict and left alone (rule 1), and its chain waits for the user.
        assert outcome["status"] == "ok" or outcome["conflicts"], \
            "seed %d: the final clean run failed at %s\n%s" % (seed, outcome["id"], final.explain())
    check_run(world, before, final.result, dict(world.ids))
    COUNTS["sequences"] += 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nchaos counts: " + ", ".join("%s=%d" % kv for kv in sorted(COUNTS.items())))


@pytest.mark.parametrize("seed", _seeds())
def test_a_random_sequence_keeps_the_rules(seed, make_fs, subvolume, sshd, tmp_path):
    print("chaos seed %d (replay: CHAOS_SEEDS=%d)" % (seed, seed))
    play(World(make_fs, subvolume, sshd, tmp_path), seed, STEPS)


@pytest.mark.skipif(SOAK_MINUTES <= 0, reason="soak runs only with CHAOS_SOAK_MINUTES")
@pytest.mark.timeout(int(SOAK_MINUTES * 60) + 900)  # the suite's per-test limit, past the last sequence
def test_soak(make_fs, subvolume, sshd, tmp_path_factory, btrfs_pool):
    deadline = time.monotonic() + SOAK_MINUTES * 60
    while time.monotonic() < deadline:
        seed = int.from_bytes(os.urandom(4), "big")
        print("chaos soak seed %d" % seed, flush=True)
        world = World(make_fs, subvolume, sshd, tmp_path_factory.mktemp("soak"))
        play(world, seed, STEPS)
        # The images live in the session's tmpfs: an hour of sequences would fill it.
        for filesystem in world.filesystems:
            btrfs_pool.release(filesystem)
