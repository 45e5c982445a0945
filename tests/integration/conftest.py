"""Fixtures for integration tests against real btrfs (loop devices on tmpfs) and real sshd on loopback."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Also done by tests/conftest.py; repeated so this directory works when collected on its own.
_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support import archive_stores, btrfs_loop, sshd as sshd_support  # noqa: E402
from support.btrfs_loop import BtrfsPool  # noqa: E402
from support.sshd import Sshd  # noqa: E402
from remote_commands import AS_ASKED, RemoteCommands, logging_forced_command  # noqa: E402
from support.trees import MiB, write_mixed_tree  # noqa: E402

# A test module shapes the shared fixtures below with FS_SIZE (each filesystem's size) and
# SOURCE_TREE (write_mixed_tree's arguments for the source's data).
DEFAULT_FS_SIZE = "512M"
DEFAULT_SOURCE_TREE = dict(n_small=40, small_size=2048, large_files=[MiB], seed=1)

_HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "integration: runs against real btrfs loop filesystems and/or a real local sshd (needs root)",
    )


def pytest_collection_modifyitems(config, items):
    # Everything under tests/integration is an integration test; mark it so `-m "not integration"` works.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _require(tools, what):
    """Skip unless we are root and every tool in *tools* is installed (in CI: fail instead,
    so that a missing install step cannot turn the integration suite into skips)."""
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if os.geteuid() != 0:
        give_up(f"{what} tests need root (loop devices, mount, sshd)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        give_up(f"{what} tools not installed: {', '.join(missing)}")


# Fixed now: this process's own temporary files (loop images, mount points, sshd folders) stay in
# the system's folder whatever TMPDIR the runs below are given.
tempfile.gettempdir()


@pytest.fixture(scope="session")
def runs_tmpdir():
    """A folder of this session's for the temporary files of the runs it starts (TMPDIR): short,
    since an ssh control socket's path has at most 107 bytes. A run killed outright cannot remove
    its own (its ssh control folder, a staged transfer's list of chunks): they go at the end."""
    folder = tempfile.mkdtemp(prefix="bbt-", dir="/tmp")
    yield folder
    _remove_never_crossing_mounts(folder)


def _remove_never_crossing_mounts(folder):
    """`folder` and what is in it, except a filesystem mounted below it (and what leads there)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not os.path.ismount(os.path.join(root, name))]
        found += [(os.unlink, os.path.join(root, name)) for name in files]
        found += [(os.rmdir, os.path.join(root, name)) for name in dirs]
    for remove, path in reversed([(os.rmdir, folder)] + found):  # the deepest first
        try:
            remove(path)
        except OSError:
            pass  # still in use, or a mount point's way: left as it is


@pytest.fixture(autouse=True)
def runs_in_session_tmpdir(runs_tmpdir, monkeypatch):
    """Every run a test starts (the CLI, ansible and the engine it runs) makes its temporary
    folders in this session's folder, not in the machine's /tmp."""
    monkeypatch.setenv("TMPDIR", runs_tmpdir)


@pytest.fixture(autouse=True)
def job_state_dir(tmp_path_factory, monkeypatch):
    """Each test's job states and job locks in a folder of its own, never the machine's: the
    CLI and ansible-playbook that a test starts inherit the environment."""
    folder = tmp_path_factory.mktemp("job-state")
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def btrfs_pool():
    """One tmpfs for the whole session holding all loop images (uses RAM only as data is written)."""
    _require(btrfs_loop.REQUIRED_TOOLS, "btrfs")
    with BtrfsPool(tmpfs_size="8G") as pool:
        yield pool


@pytest.fixture
def make_fs(btrfs_pool):
    """Factory: ``make_fs("dest", size="512M")`` -> Path of a fresh mounted btrfs, gone after the test."""
    made = []

    def factory(name: str = "fs", size: str = "512M", **kwargs) -> Path:
        path = btrfs_pool.filesystem(name, size=size, **kwargs)
        made.append(path)
        return path

    yield factory
    errors = []
    for path in reversed(made):
        if path not in btrfs_pool.filesystems:
            continue  # the test released it itself
        try:
            btrfs_pool.release(path)
        except Exception as e:  # keep releasing the others
            errors.append(f"{path}: {e}")
    if errors:
        raise btrfs_loop.CleanupError("; ".join(errors))


@pytest.fixture
def require_btrfs():
    """Skip the test unless root with btrfs-progs and util-linux (for tests that manage their own pool)."""
    _require(btrfs_loop.REQUIRED_TOOLS, "btrfs")


@pytest.fixture
def subvolume(require_btrfs):
    """``subvolume(path)`` creates a btrfs subvolume and returns its Path."""
    return btrfs_loop.create_subvolume


@pytest.fixture
def snapshot(require_btrfs):
    """``snapshot(src, dest, readonly=True)`` snapshots a subvolume and returns dest."""
    return btrfs_loop.snapshot


@pytest.fixture(scope="session")
def sshd():
    """A private sshd as root on 127.0.0.2 (free port), with its own keys."""
    _require(sshd_support.REQUIRED_TOOLS, "sshd")
    with Sshd(host="127.0.0.2") as server:
        yield server


@pytest.fixture(scope="session")
def sshd2():
    """A second, independent sshd on 127.0.0.3: another "host"."""
    _require(sshd_support.REQUIRED_TOOLS, "sshd")
    with Sshd(host="127.0.0.3") as server:
        yield server


@pytest.fixture(scope="session")
def borg_ssh_server():
    """A borg server on 127.0.0.6 over a private sshd: ``borg_ssh_server.repository(name)`` makes a
    repository whose own client key is forced to ``borg serve --append-only --restrict-to-repository``."""
    _require(sshd_support.REQUIRED_TOOLS + archive_stores.BORG_TOOLS, "borg over ssh")
    with archive_stores.BorgSshServer(host="127.0.0.6") as server:
        yield server


@pytest.fixture(scope="session")
def rest_server():
    """``rclone serve restic --append-only`` on loopback (restic's REST protocol, with a password)."""
    _require(archive_stores.REST_SERVER_TOOLS, "restic REST")
    with archive_stores.RcloneRestServer(append_only=True) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """An S3 API on loopback (moto's server), for ``restic:s3:http://127.0.0.1:PORT/bucket``."""
    _require(archive_stores.S3_SERVER_TOOLS, "restic S3")
    with archive_stores.MotoS3Server() as server:
        yield server


@pytest.fixture
def archive_key_file(tmp_path):
    """A repository passphrase in a 0600 file (the ``archive_key_file`` setting)."""
    return archive_stores.write_secret(tmp_path / "archive.key", archive_stores.PASSPHRASE + "\n")


@pytest.fixture
def archive_client_dirs(tmp_path, monkeypatch):
    """borg's and restic's client caches and security records in the test's own folder, never
    root's home (the CLI a test starts inherits them)."""
    monkeypatch.setenv("BORG_BASE_DIR", str(tmp_path / "borg-base"))
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    return tmp_path


def _fs_size(request) -> str:
    return getattr(request.module, "FS_SIZE", DEFAULT_FS_SIZE)


@pytest.fixture
def src(request, make_fs, subvolume):
    """A source subvolume with a small mixed tree (by default a 1 MiB file, so full and incremental differ)."""
    vol = subvolume(make_fs("src", size=_fs_size(request)) / "data")
    write_mixed_tree(vol, **getattr(request.module, "SOURCE_TREE", DEFAULT_SOURCE_TREE))
    return vol


@pytest.fixture
def dst(request, make_fs):
    """An empty btrfs for backups."""
    return make_fs("dst", size=_fs_size(request))


@pytest.fixture
def restore_fs(request, make_fs):
    """A fresh filesystem to restore backups into."""
    return make_fs("restore", size=_fs_size(request))


@pytest.fixture
def logged_sshd(require_btrfs, tmp_path):
    """(a test sshd whose key runs what it is asked in a shell, the RemoteCommands it logged)."""
    _require(sshd_support.REQUIRED_TOOLS, "sshd")
    log = tmp_path / "remote-commands.log"
    with Sshd(host="127.0.0.6") as server:
        logging_forced_command(server, log, AS_ASKED)
        yield server, RemoteCommands(log, server)


@pytest.fixture
def logged_serve(require_btrfs, make_fs, tmp_path):
    """(a test sshd whose key runs `serve --root` of a new filesystem's web1, the RemoteCommands it
    logged, that root)."""
    from cli_helpers import CLI
    _require(sshd_support.REQUIRED_TOOLS, "sshd")
    fs = make_fs("server")
    (fs / "web1").mkdir()
    log = tmp_path / "remote-commands.log"
    with Sshd(host="127.0.0.7") as server:
        logging_forced_command(server, log, f"{shlex.quote(str(CLI))} serve --root {shlex.quote(str(fs / 'web1'))}")
        yield server, RemoteCommands(log, server), fs / "web1"
