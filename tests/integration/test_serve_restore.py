"""`btrfs-backup serve --restore` as the forced command of an administrator's restore key.

A private sshd on loopback holds two keys, as the role installs them on a backup server: the
source's key confined to `serve --root DEST/web1` (it pushes the backups), and a restore key
confined to `serve --restore --root DEST`. Restores go through the restore key exactly as the
guides tell an administrator to run them.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess

import pytest

from cli_helpers import CLI, ok, run_subcommand, ssh_args, subvolumes
from support.sshd import Sshd
from support.trees import assert_same_tree, checksum_tree, write_mixed_tree


def require_sshd():
    from conftest import _require  # noqa: PLC0415 - the integration suite's own prerequisite check
    from support import sshd as sshd_support
    _require(sshd_support.REQUIRED_TOOLS, "sshd")


def forced(*serve_args):
    return " ".join([str(CLI), "serve"] + [shlex.quote(str(a)) for a in serve_args])


class RestoreServer:
    """The backup server's sshd, its btrfs root, and the restore key's ssh options."""

    def __init__(self, sshd, fs, restore_key):
        self.sshd = sshd
        self.fs = fs
        self.restore_key = restore_key

    def restore_options(self):
        """`--ssh-opt` flags that log in with the restore key only."""
        args = []
        for option in self.sshd.ssh_options():
            if option.startswith("IdentityFile="):
                option = "IdentityFile=%s" % self.restore_key
            args += ["--ssh-opt", option]
        return args

    def run_as_restore_key(self, line, **kwargs):
        """An ssh connection with the restore key that asks for `line` (the key's forced command runs)."""
        argv = self.sshd.ssh_argv(line)
        at = argv.index("IdentityFile=%s" % self.sshd.identity_file)
        argv[at] = "IdentityFile=%s" % self.restore_key
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, **kwargs)


@contextlib.contextmanager
def restore_server_on(fs, host):
    """An sshd at `host` where the source's key pushes into fs/web1 (`serve --append-only`) and
    an administrator's restore key reads every host's folder of `fs` (`serve --restore`)."""
    with Sshd(host=host) as sshd:
        restore_key = sshd.workdir / "id_restore"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin-restore", "-f", str(restore_key)],
                       check=True, stdout=subprocess.DEVNULL)
        source_key = (sshd.workdir / "id_ed25519.pub").read_text().strip()
        admin_key = (sshd.workdir / "id_restore.pub").read_text().strip()
        (sshd.workdir / "authorized_keys").write_text(
            'restrict,command="%s" %s\nrestrict,command="%s" %s\n' % (
                forced("--append-only", "--root", fs / "web1"), source_key,
                forced("--restore", "--root", fs), admin_key))
        yield RestoreServer(sshd, fs, restore_key)


@pytest.fixture
def restore_server(require_btrfs, make_fs):
    """web1's folder takes pushes through the source's key; the restore key reads every host's."""
    require_sshd()
    fs = make_fs("server")
    (fs / "web1").mkdir()
    (fs / "web2").mkdir()
    with restore_server_on(fs, "127.0.0.41") as server:
        yield server


def push_two_backups(server, source):
    """Two backups of `source` on the server through the source's own key; their names."""
    url = server.sshd.url(server.fs / "web1" / "data")
    one = ok(*ssh_args(server.sshd), source, url).result["snapshot"]["name"]
    (source / "added.txt").write_text("added after the first backup\n")
    two = ok(*ssh_args(server.sshd), source, url).result["snapshot"]["name"]
    return one, two


def complete_backups(folder):
    return {n: (s.uuid, s.received_uuid) for n, s in subvolumes(folder).items() if s.complete_backup}


def test_a_restore_through_the_restore_key_brings_the_data_back(restore_server, make_fs, subvolume):
    server = restore_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=30, small_size=4096, large_files=[1 << 20], seed=11)
    one, two = push_two_backups(server, source)
    backups = server.sshd.url(server.fs / "web1" / "data")
    into = make_fs("restore")

    newest = run_subcommand("restore", *server.restore_options(), backups, str(into / "data"))
    assert newest.code == 0, newest.explain() + "\n--- sshd ---\n" + server.sshd.log_tail(40)
    assert newest.result["snapshot"] == two
    assert checksum_tree(into / "data") == checksum_tree(source / "snapshot" / two)

    older = run_subcommand("restore", *server.restore_options(), "--snapshot", one, "-W", backups,
                           str(into / "data-first"))
    assert older.code == 0, older.explain()
    assert_same_tree(source / "snapshot" / one, into / "data-first")
    assert not (into / "data-first" / "added.txt").exists()


def test_the_restore_key_cannot_receive_or_delete(restore_server, make_fs, subvolume):
    """Everything that writes is refused through the restore key, and the backups stay as they were."""
    server = restore_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=10, small_size=2048, seed=12)
    one, two = push_two_backups(server, source)
    folder = server.fs / "web1" / "data"
    before = complete_backups(folder)
    backup = folder / one
    q = lambda path: shlex.quote(str(path))  # noqa: E731

    writes = {
        "delete": "btrfs subvolume delete -- %s" % q(backup),
        "delete through sudo": "sudo -n btrfs subvolume delete -c -- %s" % q(backup),
        "make writable": "btrfs property set -ts %s ro false" % q(backup),
        "mkdir": "mkdir -- %s" % q(server.fs / "web2" / "x"),
        "send to a file": "btrfs send -f %s %s" % (q(server.fs / "web2" / "stream"), q(backup)),
        "send the host folder": "btrfs send %s" % q(server.fs / "web1"),
        "shell": "sh -c id",
    }
    for what, line in writes.items():
        done = server.run_as_restore_key(line)
        assert done.returncode == 126 and b"refused" in done.stderr, (what, done)

    stream = subprocess.run(["btrfs", "send", "-q", str(source / "snapshot" / two)],
                            stdout=subprocess.PIPE, check=True).stdout
    received = server.run_as_restore_key("btrfs receive %s" % q(server.fs / "web2"), input=stream, stdin=None)
    assert received.returncode == 126 and b"refused" in received.stderr, received

    # Used as a destination by mistake, the key takes no backup either.
    (source / "more.txt").write_text("more\n")
    pushed = subprocess.run([str(CLI), *server.restore_options(), str(source),
                             server.sshd.url(server.fs / "web2")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert pushed.returncode != 0 and "refused" in pushed.stderr, pushed

    assert complete_backups(folder) == before
    assert list((server.fs / "web2").iterdir()) == []


def test_one_file_comes_back_as_the_guide_says(restore_server, make_fs, subvolume):
    """failures.rst, "Bringing back one file": restore the backup into a scratch folder of the
    source's filesystem with the restore key, copy the file, delete the scratch copy."""
    server = restore_server
    home = make_fs("home")
    source = subvolume(home / "data")
    (source / "alice").mkdir()
    (source / "alice" / "report.txt").write_text("the report, as it was\n")
    (source / "alice" / "other.txt").write_text("left alone\n")
    one, _two = push_two_backups(server, source)
    (source / "alice" / "report.txt").write_text("overwritten by mistake\n")
    (source / "alice" / "other.txt").write_text("changed since, on purpose\n")

    scratch = home / ".restore-data"
    # 1. btrfs-backup restore --snapshot NAME ssh://btrfs-restore@SERVER/srv/backups/web1/data SCRATCH
    ok_restore = run_subcommand("restore", *server.restore_options(), "--snapshot", one,
                                server.sshd.url(server.fs / "web1" / "data"), str(scratch))
    assert ok_restore.code == 0, ok_restore.explain()
    # 2. cp -a SCRATCH/alice/report.txt /data/alice/report.txt
    subprocess.run(["cp", "-a", str(scratch / "alice" / "report.txt"), str(source / "alice" / "report.txt")],
                   check=True)
    # 3. btrfs subvolume delete SCRATCH
    subprocess.run(["btrfs", "subvolume", "delete", str(scratch)], check=True, stdout=subprocess.DEVNULL)

    assert (source / "alice" / "report.txt").read_text() == "the report, as it was\n"
    assert (source / "alice" / "other.txt").read_text() == "changed since, on purpose\n"
    assert not scratch.exists()
    assert not [p for p in home.iterdir() if p.name.startswith(".btrfs-backup-restore-")]


# -- a source's key whose folder is missing on the server (the role's server part failed there) --

def test_a_push_to_a_missing_host_folder_points_at_the_server(require_btrfs, make_fs, subvolume):
    require_sshd()
    fs = make_fs("server")
    source = subvolume(make_fs("src") / "data")
    (source / "f").write_text("x\n")
    with Sshd(host="127.0.0.42") as sshd:
        key = (sshd.workdir / "id_ed25519.pub").read_text().strip()
        (sshd.workdir / "authorized_keys").write_text(
            'restrict,command="%s" %s\n' % (forced("--append-only", "--root", fs / "web1"), key))
        done = subprocess.run([str(CLI), *ssh_args(sshd), str(source), sshd.url(fs / "web1" / "data")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert done.returncode != 0, done
    assert ("the backup server 127.0.0.42 has no folder %s for this host: did the role's server part "
            "fail there, or is its backup disk not mounted?" % (fs / "web1")) in done.stderr, done.stderr
    assert not (fs / "web1").exists() and not (source / "snapshot").exists()
