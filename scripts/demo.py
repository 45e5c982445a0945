#!/usr/bin/env python3
"""Demo on scratch loop-backed btrfs: full backup to a local and an SSH destination, a change,
an incremental run, then a restore that is compared file by file. No real disk is touched."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from support.btrfs_loop import BtrfsPool, create_subvolume, pipeline  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from support.trees import assert_same_tree, checksum_tree, modify_tree, write_mixed_tree  # noqa: E402

CLI = os.path.join(ROOT, "bin", "btrfs-backup")


def say(text):
    print("\n\033[1m== %s\033[0m" % text if sys.stdout.isatty() else "\n== %s" % text, flush=True)


def backup(args):
    """Run the CLI as a user would, show its log, return its JSON result."""
    argv = [CLI, "--json", "-P"] + args
    shown = [a for i, a in enumerate(args) if a != "--ssh-opt" and (i == 0 or args[i - 1] != "--ssh-opt")]
    print("$ btrfs-backup [--ssh-opt ...] " + " ".join(shown), flush=True)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit("btrfs-backup failed with exit status %d" % proc.returncode)
    return json.loads(proc.stdout)


def show_transfers(result):
    """One row per transfer; the destination column is as wide as the longest id (never cut)."""
    width = max([len(dest["id"]) for dest in result["destinations"]] or [0])
    for dest in result["destinations"]:
        for t in dest["transfers"]:
            print("   %-*s %-12s parent=%-16s %10s bytes %6.2fs" % (
                width, dest["id"], t["mode"], t["parent"] or "-", t["bytes"], t["seconds"] or 0))


def show_subvolumes(folder):
    out = subprocess.run(["btrfs", "subvolume", "list", "-o", "-u", "-q", "-R", "-r", folder],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        print("   %-22s uuid=%s... parent=%s... received=%s..." % (
            os.path.basename(fields[-1]), fields[fields.index("uuid") + 1][:8],
            fields[fields.index("parent_uuid") + 1][:8], fields[fields.index("received_uuid") + 1][:8]))


def main():
    if os.geteuid() != 0:
        raise SystemExit("the demo needs root (loop devices, mounts, sshd)")
    with BtrfsPool(tmpfs_size="3G") as pool, Sshd(host="127.0.0.2") as server:
        src_fs = pool.filesystem("source", size="1G")
        local_fs = pool.filesystem("local-backup", size="1G")
        remote_fs = pool.filesystem("remote-backup", size="1G")
        home = create_subvolume(src_fs / "home")
        write_mixed_tree(home, n_small=2000, small_size=4096, large_files=(64 << 20,), seed=7)
        local_dest = str(local_fs / "backups")
        os.mkdir(local_dest)
        remote_dest = server.url(remote_fs / "backups")  # the "remote host" is an sshd on loopback
        os.mkdir(str(remote_fs / "backups"))
        ssh_opts = []
        for option in server.ssh_options():
            ssh_opts += ["--ssh-opt", option]
        common = ssh_opts + ["-N", "3", "-n", "5", str(home), local_dest, remote_dest]

        say("Scratch setup: 3 loop-backed btrfs filesystems on tmpfs, sshd on %s:%d" % (
            server.host, server.port))
        print("   source subvolume %s, local destination %s, ssh destination %s" % (
            home, local_dest, remote_dest))

        say("Run 1: full backup to both destinations")
        show_transfers(backup(common))

        say("A change: about 5 MB rewritten, files added and removed")
        changes = modify_tree(home, 5 << 20, seed=8)
        print("   %d modified, %d added, %d removed" % (
            len(changes.modified), len(changes.added), len(changes.removed)))

        say("Run 2: incremental backup")
        result = backup(common)
        show_transfers(result)

        say("Run 3: no change in the data, so the new snapshot's increment is tiny")
        result = backup(common)
        show_transfers(result)

        say("What each destination holds (received_uuid = the source snapshot's uuid)")
        print(" local:")
        show_subvolumes(local_dest)
        print(" ssh:")
        show_subvolumes(str(remote_fs / "backups"))

        say("Restore the newest backup from the ssh destination and compare every file")
        newest = result["snapshot"]["name"]
        restore_fs = pool.filesystem("restore", size="1G")
        pipeline(server.ssh_argv("btrfs", "send", str(remote_fs / "backups" / newest)),
                 ["btrfs", "receive", str(restore_fs)])
        snapshot_dir = os.path.join(str(home), "snapshot", newest)
        assert_same_tree(snapshot_dir, restore_fs / newest)
        print("   restored %s: %d entries identical to the source snapshot (sha256, modes, links)" % (
            newest, len(checksum_tree(restore_fs / newest))))
    say("Done; everything set up for the demo is unmounted and removed again")


if __name__ == "__main__":
    main()
