"""The tarball a user builds from a clone holds the collection and nothing the checkout happens to
contain: neither files never added to git nor what the tests and ansible-lint leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GALAXY = str(Path(sys.executable).with_name("ansible-galaxy"))


def _run(argv, cwd, **env):
    done = subprocess.run(argv, cwd=cwd, env=dict(os.environ, **env), capture_output=True, text=True)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def clone(tmp_path):
    """A git repository with the checkout's tracked files (as they are now), plus the clutter of a
    used clone: an untracked file, ansible-lint's collections/ folder of symbolic links back into
    the clone, and its .ansible/ folder."""
    if not Path(GALAXY).exists():
        pytest.skip("ansible-galaxy is not installed next to this Python")
    work = tmp_path / "clone"
    work.mkdir()
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    packed = subprocess.run(["tar", "--create", "--null", "--ignore-failed-read", "--files-from=-"],
                            cwd=REPO, input=files, capture_output=True, check=True).stdout
    subprocess.run(["tar", "--extract"], cwd=work, input=packed, check=True)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    _run(git + ["init", "-q"], work)
    _run(git + ["add", "-A"], work)
    _run(git + ["commit", "-q", "-m", "tracked files"], work)
    (work / "notes-never-added.txt").write_text("local notes\n")
    links = work / "collections" / "ansible_collections" / "btrfs" / "backup"
    links.mkdir(parents=True)
    (links / "requirements-role.txt").symlink_to("../../../../requirements-role.txt")
    (links / "plugins").symlink_to("../../../../plugins")
    (work / ".ansible" / "collections").mkdir(parents=True)
    return work


def _members(tarball):
    with tarfile.open(tarball) as archive:
        return archive.getnames()


def _installs(tarball, into):
    _run([GALAXY, "collection", "install", "--offline", "--force", "-p", str(into), str(tarball)], into.parent)
    assert (into / "ansible_collections/btrfs/backup/plugins/modules/btrfs_send_backup.py").is_file()


def test_the_build_script_packs_only_tracked_files(clone, tmp_path):
    out = tmp_path / "out"
    tarball = _run([str(clone / "scripts/build-collection.sh"), str(out)], clone, ANSIBLE_GALAXY=GALAXY).strip()
    members = _members(tarball)
    assert "plugins/modules/btrfs_send_backup.py" in members
    assert "notes-never-added.txt" not in members
    assert not [m for m in members if m.split("/")[0] in ("collections", ".ansible")]
    _installs(tarball, tmp_path / "installed")


def test_a_plain_build_of_a_used_clone_installs(clone, tmp_path):
    """The README's plain `ansible-galaxy collection build` leaves the test leftovers out (their
    symbolic links point outside the collection and made the install fail)."""
    out = tmp_path / "out"
    _run([GALAXY, "collection", "build", "--force", "--output-path", str(out), "."], clone)
    tarball = next(out.glob("btrfs-backup-*.tar.gz"))
    assert not [m for m in _members(tarball) if m.split("/")[0] in ("collections", ".ansible")]
    _installs(tarball, tmp_path / "installed")
