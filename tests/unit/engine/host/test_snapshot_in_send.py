"""A pulled source's snapshot taken in its send's command: the marked facts read (a table of answers),
why no snapshot was taken, and the send's whole command line run by a real /bin/sh (a stand-in btrfs
on PATH): stdout carries only the stream, each failure stops the line before the send."""

import os
import subprocess

import pytest

from engine.host.endpoints.location import parse_location
from engine.host.locks import LockTable
from engine.host.snapshot_in_send import SNAPSHOT_MARKER, not_taken_reason, snapshot_facts, was_taken

UUID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
SOURCE_UUID = "11111111-2222-4333-8444-555555555555"
SNAP = "/data/snapshot/20261205-120000"


def show(name="20261205-120000", uuid=UUID, parent=SOURCE_UUID, received="-", sub_id="262", flags="readonly"):
    """`btrfs subvolume show` of a new snapshot as btrfs-progs 6.2 prints it."""
    return (f"data/snapshot/{name}\n\tName: \t\t\t{name}\n\tUUID: \t\t\t{uuid}\n\tParent UUID: \t\t{parent}\n"
            f"\tReceived UUID: \t\t{received}\n\tCreation time: \t\t2026-12-05 12:00:00 +0000\n"
            f"\tSubvolume ID: \t\t{sub_id}\n\tGeneration: \t\t12\n\tFlags: \t\t\t{flags}\n\tSnapshot(s):\n")


def said(**facts):
    """The send command's stderr: the snapshot's own words, the marked facts, then btrfs send's."""
    return (f"Create a readonly snapshot of '/data' in '{SNAP}'\n\n{SNAPSHOT_MARKER}\n" + show(**facts)
            + f"At subvol {SNAP}\n")


#: name -> (the send command's stderr, was it taken, what is read: None = unreadable (asked apart),
#: else (readonly, uuid, received_uuid))
ANSWERS = {
    "taken, read-only": (said(), True, (True, UUID, None)),
    "a snapshot of a received subvolume keeps its received uuid": (said(received=UUID.replace("3f", "4f")), True,
                                                                    (True, UUID, UUID.replace("3f", "4f"))),
    "writable: read, and the send then fails it": (said(flags="-"), True, (False, UUID, None)),
    "about another name": (said(name="20261205-110000"), True, None),
    "garbled uuid": (said(uuid="not-a-uuid"), True, None),
    "garbled subvolume id": (said(sub_id="x1"), True, None),
    "the show failed: the marker and nothing": (f"\n{SNAPSHOT_MARKER}\nERROR: cannot find {SNAP}\n", True, None),
    "cut short before the flags": (said()[:said().index("Flags")], True, None),
    "missing: no marker (not taken)": ("ERROR: cannot snapshot '/data': No space left on device\n", False, None),
    "nothing at all": ("", False, None),
    "another program's marker does not count": ("\nbtrfs-backup-arrived\n" + show(), False, None),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_snapshot_facts_marked_on_stderr(name):
    stderr, taken, expected = ANSWERS[name]
    assert was_taken(stderr) == taken
    found = snapshot_facts(stderr, SNAP)
    if expected is None:
        assert found is None
        return
    assert (found.readonly, found.uuid, found.received_uuid) == expected
    assert (found.name, found.path, found.id, found.parent_uuid) == ("20261205-120000", SNAP, 262, SOURCE_UUID)


@pytest.mark.parametrize("stderr, expected", [
    ("ERROR: cannot snapshot '/data': No space left on device\n",
     f"cannot snapshot /data to {SNAP}: ERROR: cannot snapshot '/data': No space left on device"),
    ("", f"cannot snapshot /data to {SNAP}: no answer"),
    ("mkdir: cannot create directory '/data/snapshot': Read-only file system\n",
     "cannot create folder /data/snapshot: mkdir: cannot create directory '/data/snapshot': Read-only file system"),
    ("cannot write the lock file /data/snapshot/.outstanding_transfers\n",
     "cannot write the lock file /data/snapshot/.outstanding_transfers"),
], ids=["the snapshot", "no answer", "the folder", "the lock file"])
def test_why_no_snapshot_was_taken(stderr, expected):
    assert not_taken_reason(stderr, "/data", SNAP) == expected


FAKE_BTRFS = """#!/bin/sh
case "$1 $2" in
  "subvolume snapshot") [ "$SNAPSHOT_STATUS" = 0 ] || {{ echo "ERROR: cannot snapshot: no space" >&2; exit 1; }}
    echo "Create a readonly snapshot of '$4' in '$5'"; mkdir -p "$5" ;;
  "subvolume show") [ "$SHOW_STATUS" = 0 ] || exit 1; printf '%s\\n\\tName: \\t%s\\n\\tUUID: \\t{uuid}\\n\\t\
Parent UUID: \\t-\\n\\tReceived UUID: \\t-\\n\\tSubvolume ID: \\t262\\n\\tFlags: \\treadonly\\n' "$3" "${{3##*/}}" ;;
  send*) echo "At subvol $3" >&2; printf 'STREAM' ;;
esac
""".format(uuid=UUID)


@pytest.mark.parametrize("snapshot_status, show_status, lock_ok, taken, facts, sent", [
    (0, 0, True, True, True, True),
    (0, 1, True, True, False, True),
    (1, 0, True, False, False, False),
    (0, 0, False, False, False, False),
], ids=["taken", "its show failed: sent, facts asked apart", "the snapshot failed", "the lock file failed"])
def test_the_send_line_run_by_a_shell(tmp_path, snapshot_status, show_status, lock_ok, taken, facts, sent):
    """The whole remote line of a pull on a first run: folder, lock file, snapshot, marked facts on
    stderr, and only then the send, whose stdout is the stream and nothing else."""
    (tmp_path / "btrfs").write_text(FAKE_BTRFS)
    (tmp_path / "btrfs").chmod(0o755)
    folder = tmp_path / "src" / "snapshot"
    if not lock_ok:
        folder.mkdir(parents=True)
        (folder / ".outstanding_transfers.tmp").mkdir()  # the temp file cannot be written
    source = parse_location(f"ssh://nas{tmp_path}/src")
    source.create_in_next_command(str(folder))
    snapshot = str(folder / "20261205-120000")
    lock_write = source.lock_store(None, str(folder)).write_command(LockTable({"20261205-120000": {"locks": ["/b"]}}))
    first = source.snapshot_in_send(str(tmp_path / "src"), snapshot, lock_write)
    assert source.folder_to_create is None, "the line creates the folder: no command after it does"
    _stage, argv = source.sender(["btrfs", "send", snapshot], first=first)
    line = argv[argv.index("--") + 1]
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", SNAPSHOT_STATUS=str(snapshot_status),
               SHOW_STATUS=str(show_status))
    done = subprocess.run(["/bin/sh", "-c", line], capture_output=True, env=env, check=False)
    stderr = done.stderr.decode()
    assert done.stdout == (b"STREAM" if sent else b""), done
    assert (done.returncode == 0) == sent, done
    assert was_taken(stderr) == taken, stderr
    found = snapshot_facts(stderr, snapshot)
    assert (found is not None) == facts, stderr
    if facts:
        assert (found.uuid, found.readonly, found.path) == (UUID, True, snapshot)
    if lock_ok:
        assert '"20261205-120000"' in (folder / ".outstanding_transfers").read_text()
    if not taken:
        reason = not_taken_reason(stderr, "/src", snapshot)
        assert reason.startswith("cannot snapshot /src to " if lock_ok else "cannot write the lock file"), stderr
