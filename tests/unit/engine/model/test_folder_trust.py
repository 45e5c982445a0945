"""Whether a folder on the way to the job state may be trusted: the owner and the mode decide."""

import stat

import pytest

from engine.model.folder_trust import folder_problem, folders_to_check

DIR, LINK = stat.S_IFDIR, stat.S_IFLNK

CASES = {
    "root's folder, 0755": (0, DIR | 0o755, 0, None),
    "the running user's own folder (a run as that user)": (1000, DIR | 0o700, 1000, None),
    "a receive user's home, as root runs": (998, DIR | 0o755, 0, "is owned by uid 998, not by root"),
    "another user's folder, as a user runs": (998, DIR | 0o755, 1000, "is owned by uid 998, not by root"),
    "writable by others": (0, DIR | 0o777, 0, "is writable by others (mode 0777)"),
    "writable by its group": (0, DIR | 0o775, 0, "is writable by its group (mode 0775)"),
    "sticky and writable by all, as /tmp": (0, DIR | 0o1777, 0, None),
    "root's symbolic link": (0, LINK | 0o777, 0, None),
    "a user's symbolic link points where that user wants": (998, LINK | 0o777, 0, "owned by uid 998"),
}


@pytest.mark.parametrize("name", CASES)
def test_a_folder_is_trusted_only_when_no_one_else_can_swap_what_is_in_it(name):
    owner, mode, euid, problem = CASES[name]
    found = folder_problem("/var/lib/btrfs-backup", owner, mode, euid)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and found.startswith("/var/lib/btrfs-backup ")


def test_every_folder_from_the_root_down_is_checked():
    assert folders_to_check("/var/lib/btrfs-backup/jobs") == [
        "/", "/var", "/var/lib", "/var/lib/btrfs-backup", "/var/lib/btrfs-backup/jobs"]
    assert folders_to_check("/") == ["/"]
