"""The receive's own answer about what arrived (pure parse), serve's filtered answer, and the plain
host's folded command line run by a real /bin/sh (a stand-in btrfs on PATH)."""

import os
import subprocess

import pytest

from engine.host.arrival_check import ARRIVAL_MARKER, answer_text, parse_arrival, parse_filesystem_id
from engine.host.endpoints.location import parse_location

UUID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
RECEIVED = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PARENT = "11111111-2222-4333-8444-555555555555"


def show(name="s2", uuid=UUID, parent=PARENT, received=RECEIVED, sub_id="261", flags="readonly"):
    """`btrfs subvolume show` output as btrfs-progs 6.2 prints it."""
    return (f"backups/{name}\n\tName: \t\t\t{name}\n\tUUID: \t\t\t{uuid}\n\tParent UUID: \t\t{parent}\n"
            f"\tReceived UUID: \t\t{received}\n\tCreation time: \t\t2026-12-05 11:00:00 +0000\n"
            f"\tSubvolume ID: \t\t{sub_id}\n\tGeneration: \t\t12\n\tFlags: \t\t\t{flags}\n"
            f"\tSnapshot(s):\n\t\t\t\tother/UUID: {UUID}\n")


def answer(**facts):
    return f"\n{ARRIVAL_MARKER}\n" + show(**facts)


#: name -> (the receive's stdout, what the check reads: None = no answer, ask apart; else
#: (readonly, received_uuid) of the Subvolume)
ANSWERS = {
    "complete: read-only, received": (answer(), (True, RECEIVED)),
    "writable (a partial receive): read, and rule 2 then fails it": (answer(flags="-"), (False, RECEIVED)),
    "another received uuid: read, and rule 2 then fails it": (answer(received=UUID), (True, UUID)),
    "no received uuid": (answer(received="-"), (True, None)),
    "no answer (a serve from before it)": ("", None),
    "receive's own output, no marker": ("At subvol s2\n", None),
    "the marker, then nothing (the show failed)": (f"\n{ARRIVAL_MARKER}\n", None),
    "cut short before the flags": (answer()[:answer().index("Flags")], None),
    "garbled uuid": (answer(uuid="not-a-uuid"), None),
    "garbled received uuid": (answer(received="zz"), None),
    "garbled subvolume id": (answer(sub_id="x1"), None),
    "about another subvolume": (answer(name="s1"), None),
    "the last marker counts": (answer(name="s1") + answer(), (True, RECEIVED)),
    "serve's filtered answer": (answer_text(show()), (True, RECEIVED)),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_answer_about_what_arrived(name):
    stdout, expected = ANSWERS[name]
    found = parse_arrival(stdout, "/srv/backups", "s2")
    if expected is None:
        assert found is None
        return
    assert (found.readonly, found.received_uuid) == expected
    assert (found.name, found.path, found.id, found.uuid) == ("s2", "/srv/backups/s2", 261, UUID)
    assert found.complete == (expected == (True, RECEIVED) or expected == (True, UUID))


def test_serve_answers_only_the_facts_the_check_reads():
    text = answer_text(show())
    assert text.startswith(f"\n{ARRIVAL_MARKER}\n")
    assert "backups/" not in text and "Snapshot" not in text and "Generation" not in text
    assert "Received UUID: %s\n" % RECEIVED in text


FAKE_BTRFS = """#!/bin/sh
case "$1" in
  receive) cat > /dev/null; [ "$RECEIVE_STATUS" = 0 ] || echo "ERROR: receive failed" >&2; exit "$RECEIVE_STATUS" ;;
  subvolume) [ "$SHOW_STATUS" = 0 ] || exit "$SHOW_STATUS"; printf 'backups/s2\\n\\tName: \\ts2\\n\\tUUID: \\t%s\\n\\t\
Parent UUID: \\t-\\n\\tReceived UUID: \\t%s\\n\\tSubvolume ID: \\t261\\n\\tFlags: \\treadonly\\n' {uuid} {received} ;;
esac
""".format(uuid=UUID, received=RECEIVED)


@pytest.mark.parametrize("receive_status, show_status, answered", [(0, 0, True), (0, 1, False), (1, 0, False)])
def test_the_folded_command_keeps_the_receive_status(tmp_path, receive_status, show_status, answered):
    """The plain host's command line: the show runs only after a receive that succeeded, and the
    line's status is the receive's (a failed show leaves no answer, so the check is asked apart)."""
    (tmp_path / "btrfs").write_text(FAKE_BTRFS)
    (tmp_path / "btrfs").chmod(0o755)
    dest = parse_location("ssh://backup/srv/backups")
    _stage, argv = dest.receiver(False, None, arrival="s2")
    line = argv[argv.index("--") + 1]
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", RECEIVE_STATUS=str(receive_status),
               SHOW_STATUS=str(show_status))
    done = subprocess.run(["/bin/sh", "-c", line], input=b"stream", capture_output=True, env=env, check=False)
    assert done.returncode == receive_status, done
    found = parse_arrival(done.stdout.decode(), dest.path, "s2")
    assert (found is not None) == answered, done
    if answered:
        assert found.complete and found.received_uuid == RECEIVED


@pytest.mark.parametrize("same_filesystem", [True, False], ids=["same-filesystem", "another-filesystem"])
def test_a_receive_planned_on_the_last_run_checks_its_folders_filesystem(tmp_path, same_filesystem):
    """A receive planned on what the job's last run left there (expect_filesystem) runs only where
    its folder is on that filesystem: elsewhere the line fails before `btrfs receive` starts, and
    says why. Either way the line prints the folder's filesystem id for the next run."""
    folder = tmp_path / "backups"
    folder.mkdir()
    (tmp_path / "btrfs").write_text(FAKE_BTRFS.replace("  receive)", f"  receive) : > {tmp_path}/received;", 1))
    (tmp_path / "btrfs").chmod(0o755)
    actual = subprocess.run(["stat", "-f", "-c", "%i", "--", str(folder)], capture_output=True, text=True,
                            check=True).stdout.strip()
    dest = parse_location(f"ssh://backup{folder}")
    dest.expect_filesystem = actual if same_filesystem else "0123456789abcdef"
    _stage, argv = dest.receiver(False, None, arrival="s2")
    line = argv[argv.index("--") + 1]
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", RECEIVE_STATUS="0", SHOW_STATUS="0")
    done = subprocess.run(["/bin/sh", "-c", line], input=b"stream", capture_output=True, env=env, check=False)
    assert (done.returncode == 0) == same_filesystem, done
    assert (tmp_path / "received").exists() == same_filesystem, done
    if same_filesystem:
        assert parse_filesystem_id(done.stdout.decode()) == actual, done
        assert parse_arrival(done.stdout.decode(), dest.path, "s2").complete
    else:
        assert b"is not on the filesystem this job's last run sent to" in done.stderr, done


@pytest.mark.parametrize("stdout, found", [
    ("\nbtrfs-backup-filesystem 2854bb5e38d30afd\n", "2854bb5e38d30afd"),
    ("At subvol s2\nbtrfs-backup-filesystem 1\n\nbtrfs-backup-arrived\nName: s2\n", "1"),
    ("btrfs-backup-filesystem a\nbtrfs-backup-filesystem b\n", "b"),  # the last one counts
    ("", None),
    ("btrfs-backup-filesystem \n", None),  # stat failed
    ("btrfs-backup-filesystem 12 34\n", None),
    ("btrfs-backup-filesystem XYZ\n", None),
    ("btrfs-backup-filesystem " + "a" * 33 + "\n", None),
    ("other-filesystem 1\n", None),
])
def test_the_filesystem_id_a_receive_printed(stdout, found):
    assert parse_filesystem_id(stdout) == found
