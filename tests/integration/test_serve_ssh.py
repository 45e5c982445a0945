"""`btrfs-backup serve` as the forced command of a key: real push backups through it, and refusals.

A private sshd on loopback accepts one client key only with
`restrict,command="bin/btrfs-backup serve --root DEST/web1"`, as the role installs it on a
backup server. The engine pushes to it over ssh exactly as it pushes to any ssh destination.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from cli_helpers import CLI, ok, run_cli, sent, ssh_args
from support.sshd import Sshd
from support.trees import MiB, write_mixed_tree


@pytest.fixture
def backup_server(require_btrfs, make_fs):
    """A btrfs "backup server" with folders for web1 and web2, and an sshd whose only key
    runs `serve --root <fs>/web1`."""
    from conftest import _require  # noqa: PLC0415 - the integration suite's own prerequisite check
    from support import sshd as sshd_support
    _require(sshd_support.REQUIRED_TOOLS, "sshd")
    fs = make_fs("server")
    (fs / "web1").mkdir()
    (fs / "web2" / "data").mkdir(parents=True)
    with Sshd(host="127.0.0.4") as server:
        forced = "%s serve --root %s" % (CLI, fs / "web1")
        key = (server.workdir / "id_ed25519.pub").read_text().strip()
        (server.workdir / "authorized_keys").write_text(
            'restrict,command="%s" %s\n' % (forced, key))
        # From here on every connection must meet the forced command.
        probe = server.run("id", check=False, stdin=subprocess.DEVNULL)
        assert probe.returncode == 126 and "refused" in probe.stderr, (probe, server.log_tail(40))
        yield server, fs


def test_pushes_go_through_serve_incrementally(backup_server, make_fs, subvolume):
    server, fs = backup_server
    source = subvolume(make_fs("src") / "data")
    write_mixed_tree(source, n_small=20, small_size=2048, large_files=[MiB], seed=3)
    url = server.url(fs / "web1" / "data")
    args = ssh_args(server) + ["-N", "2", "-n", "2", source, url]
    done = run_cli(*args)
    assert done.code == 0, done.explain() + "\n--- sshd ---\n" + server.log_tail(60)
    first = done.result
    (source / "more.txt").write_text("more\n")
    second = ok(*args).result
    third = ok(*args).result
    names = [r["snapshot"]["name"] for r in (first, second, third)]
    assert sent(first, url) == [(names[0], "full", None)]
    assert sent(second, url) == [(names[1], "incremental", names[0])]
    # Retention deleted the oldest backup through serve too.
    listing = subprocess.run(["btrfs", "subvolume", "list", "-o", str(fs / "web1" / "data")],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    assert names[0] not in listing and names[1] in listing and names[2] in listing


def test_a_push_to_another_hosts_folder_is_refused(backup_server, make_fs, subvolume):
    server, fs = backup_server
    source = subvolume(make_fs("src") / "data")
    (source / "f").write_text("x\n")
    url = server.url(fs / "web2" / "data")
    done = run_cli(*ssh_args(server), source, url)
    assert done.code == 1, done.explain()
    assert "refused" in done.stderr, done.explain()
    assert list((fs / "web2" / "data").iterdir()) == []


@pytest.mark.parametrize("command", [
    "id",
    "btrfs subvolume list -a -u -q -R {fs}/web2",
    "btrfs send {fs}/web1/data",
    "btrfs subvolume delete -- {fs}/web1/../web2/data",
    "mkdir -- {fs}/web1/x; rm -rf {fs}/web2",
    "btrfs receive {fs}/web1/$(id -u)",
])
def test_other_commands_are_refused(backup_server, command):
    server, fs = backup_server
    done = server.run(command.format(fs=shlex.quote(str(fs))), check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 126 and "refused" in done.stderr, done
    assert not (fs / "web1" / "x").exists() and (fs / "web2" / "data").is_dir()
