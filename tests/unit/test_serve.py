"""engine.serve: which SSH_ORIGINAL_COMMAND lines a source host's restricted key may run."""

import os
import stat
import tempfile

import pytest

from engine import btrfs
from engine.endpoints import SshEndpoint
from engine.listing import listing_commands
from engine.serve import (EXIT_REFUSED, Operation, Refused, Server, filter_listing,
                          parse_request)

ROOT = "/srv/backups/web1"
MARKER = "__btrfs_backup_0123456789abcdef0123456789abcdef__"


def batch_line(commands, sudo=False, marker=MARKER):
    """The exact line SshEndpoint.run_batch sends (same code path, fixed marker)."""
    endpoint = SshEndpoint("nas", "/x", sudo=sudo)
    return "; ".join("%s; printf '\\n%s %%d\\n' $?" % (endpoint.remote_line(argv, privileged), marker)
                     for argv, privileged in commands)


def single_line(argv, sudo=False):
    return SshEndpoint("nas", "/x", sudo=sudo).remote_line(argv)


# -- accepted: what the engine really sends to a push destination -------------------------------

@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("argv, expected", [
    pytest.param(btrfs.receive_argv(ROOT + "/root"), Operation("receive", [ROOT + "/root"]),
                 id="receive"),
    pytest.param(btrfs.receive_argv(ROOT + "/root", debug=True),
                 Operation("receive", [ROOT + "/root"], ["-vv"]), id="receive-debug"),
    pytest.param(btrfs.receive_argv(ROOT), Operation("receive", [ROOT]), id="receive-into-root"),
    pytest.param(["mkdir", "--", ROOT + "/root"], Operation("mkdir", [ROOT + "/root"]), id="mkdir"),
    pytest.param(["mkdir", "-p", "--", ROOT + "/a/b"], Operation("mkdir", [ROOT + "/a/b"], ["-p"]),
                 id="mkdir-p"),
    pytest.param(btrfs.delete_argv([ROOT + "/root/20260101-000000"]),
                 Operation("delete", [ROOT + "/root/20260101-000000"]), id="delete"),
    pytest.param(btrfs.delete_argv([ROOT + "/r/a-20260101-000000", ROOT + "/r/a-20260102-000000"],
                                   commit=True),
                 Operation("delete", [ROOT + "/r/a-20260101-000000", ROOT + "/r/a-20260102-000000"],
                           ["-c"]), id="delete-several-commit"),
    pytest.param(btrfs.sync_argv(ROOT + "/root"), Operation("sync", [ROOT + "/root"]), id="sync"),
    pytest.param(btrfs.set_writable_argv(ROOT + "/root/x"), Operation("writable", [ROOT + "/root/x"]),
                 id="convert-rw"),
    pytest.param(btrfs.set_writable_argv(ROOT + "/root/x", force=True),
                 Operation("writable", [ROOT + "/root/x"], ["-f"]), id="convert-rw-force"),
    pytest.param(["test", "-e", ROOT + "/root"], Operation("test", [ROOT + "/root"]), id="test-e"),
])
def test_single_commands_the_engine_sends_are_accepted(argv, expected, sudo):
    request = parse_request(single_line(argv, sudo), ROOT)
    assert request.marker is None
    assert request.operations == [expected]


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
def test_the_listing_batch_is_accepted(sudo):
    folder = ROOT + "/root"
    request = parse_request(batch_line(listing_commands(folder), sudo), ROOT)
    assert request.marker == MARKER
    assert request.operations == [
        Operation("readlink", [folder]),
        Operation("mountinfo"),
        Operation("list", [folder]),
        Operation("list", [folder], ["-r"]),
    ]


def test_the_listing_batch_of_the_parent_folder_is_accepted():
    # A missing destination folder makes the engine list its parent: here, the root itself.
    request = parse_request(batch_line(listing_commands(ROOT)), ROOT)
    assert [op.op for op in request.operations] == ["readlink", "mountinfo", "list", "list"]


def test_a_trailing_slash_is_the_same_folder():
    assert parse_request("btrfs receive %s/root/" % ROOT, ROOT).operations == [
        Operation("receive", [ROOT + "/root"])]


# -- refused: everything else ---------------------------------------------------------------------

REFUSED = [
    # Paths outside the key's root.
    ("receive-other-host", "btrfs receive /srv/backups/web2/root"),
    ("receive-sibling-prefix", "btrfs receive /srv/backups/web10/root"),
    ("receive-parent", "btrfs receive /srv/backups"),
    ("dotdot", "btrfs receive /srv/backups/web1/../web2/root"),
    ("dotdot-at-end", "btrfs receive /srv/backups/web1/root/.."),
    ("dot-component", "btrfs receive /srv/backups/web1/./root"),
    ("double-slash", "btrfs receive /srv/backups/web1//root"),
    ("relative-path", "btrfs receive root"),
    ("hidden-component", "mkdir -- /srv/backups/web1/.ssh"),
    ("delete-other-host", "btrfs subvolume delete -- /srv/backups/web2/root/20260101-000000"),
    ("delete-one-of-two-outside",
     "btrfs subvolume delete -- /srv/backups/web1/r/a /srv/backups/web2/r/a"),
    ("delete-root-itself", "btrfs subvolume delete -- /srv/backups/web1"),
    ("mkdir-root-itself", "mkdir -- /srv/backups/web1"),
    ("list-other-host", "btrfs subvolume list -a -u -q -R /srv/backups/web2"),
    ("readlink-other-host", "readlink -e -- /srv/backups/web2"),
    ("readlink-etc", "readlink -e -- /etc/shadow"),
    ("convert-rw-other-host", "btrfs property set -ts /srv/backups/web2/r/x ro false"),
    # Reading back: no btrfs send at all, not even of this host's own backups.
    ("send-other-host", "btrfs send /srv/backups/web2/root/20260101-000000"),
    ("send-own", "btrfs send /srv/backups/web1/root/20260101-000000"),
    ("send-incremental", "btrfs send -p /srv/backups/web1/r/a /srv/backups/web1/r/b"),
    ("cat-file", "cat -- /srv/backups/web1/root/x/etc/shadow"),
    ("cat-lock-file", "cat -- /srv/backups/web1/.outstanding_transfers"),
    # Other programs and other btrfs subcommands or flags.
    ("rm", "rm -rf /srv/backups/web2"),
    ("rm-inside", "rm -rf /srv/backups/web1/root"),
    ("sh-c", "sh -c 'btrfs receive /srv/backups/web1/root'"),
    ("bash", "bash"),
    ("sudo-other", "sudo -n rm -rf /"),
    ("sudo-without-n", "sudo btrfs receive /srv/backups/web1/root"),
    ("env-prefix", "env btrfs receive /srv/backups/web1/root"),
    ("absolute-btrfs", "/usr/bin/btrfs receive /srv/backups/web1/root"),
    ("receive-mount-option", "btrfs receive -m / /srv/backups/web1/root"),
    ("receive-from-file", "btrfs receive -f /etc/shadow /srv/backups/web1/root"),
    ("receive-dump", "btrfs receive --dump"),
    ("subvolume-snapshot", "btrfs subvolume snapshot /srv/backups/web2/r/a /srv/backups/web1/r/a"),
    ("subvolume-create", "btrfs subvolume create /srv/backups/web1/x"),
    ("property-set-other", "btrfs property set -ts /srv/backups/web1/r/x ro true"),
    ("list-other-flags", "btrfs subvolume list -o /srv/backups/web1"),
    ("filesystem", "btrfs filesystem show"),
    ("mkdir-mode", "mkdir -m 777 -- /srv/backups/web1/x"),
    ("cat-other-file", "cat /etc/passwd"),
    ("printf-alone", "printf '\\n%s %%d\\n' $?" % MARKER),
    ("empty", ""),
    ("blank", "   "),
    # Shell syntax: injections and redirections.
    ("semicolon-injection", "btrfs receive /srv/backups/web1/root; rm -rf /srv/backups/web2"),
    ("semicolon-in-batch",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; rm -rf /; "
     "printf '\\n%s %%d\\n' $?" % (MARKER, MARKER)),
    ("and-and", "btrfs receive /srv/backups/web1/root && rm -rf /"),
    ("or-or", "btrfs receive /srv/backups/web1/root || id"),
    ("pipe", "btrfs receive /srv/backups/web1/root | tee /tmp/x"),
    ("background", "btrfs receive /srv/backups/web1/root & id"),
    ("subshell", "(btrfs receive /srv/backups/web1/root)"),
    ("dollar-paren", "btrfs receive /srv/backups/web1/$(id)"),
    ("dollar-paren-quoted", "btrfs receive '/srv/backups/web1/$(id)'"),
    ("backticks", "btrfs receive /srv/backups/web1/`id`"),
    ("dollar-var", "btrfs receive $HOME"),
    ("redirect-out", "readlink -e -- /srv/backups/web1 > /etc/passwd"),
    ("redirect-in", "btrfs receive /srv/backups/web1/root < /srv/backups/web2/x"),
    ("redirect-append", "cat /proc/self/mountinfo >> /srv/backups/web1/x"),
    ("newline", "btrfs receive /srv/backups/web1/root\nrm -rf /"),
    ("carriage-return", "btrfs receive /srv/backups/web1/root\rid"),
    ("nul", "btrfs receive /srv/backups/web1/root\x00"),
    ("unbalanced-quote", "btrfs receive '/srv/backups/web1/root"),
    ("glob", "btrfs subvolume delete -- /srv/backups/web1/r/*"),
    ("space-in-name", "btrfs receive '/srv/backups/web1/a b'"),
    # Batches that do not follow the protocol.
    ("receive-in-batch", "btrfs receive /srv/backups/web1/root; printf '\\n%s %%d\\n' $?" % MARKER),
    ("batch-no-final-marker",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; readlink -e -- /srv/backups/web1"
     % MARKER),
    ("batch-marker-mismatch",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' $?; cat /proc/self/mountinfo; "
     "printf '\\n__btrfs_backup_ffffffffffffffffffffffffffffffff__ %%d\\n' $?" % MARKER),
    ("batch-printf-format-string", "readlink -e -- /srv/backups/web1; printf '%s' /etc/shadow"),
    ("batch-printf-other-arg",
     "readlink -e -- /srv/backups/web1; printf '\\n%s %%d\\n' /etc/shadow" % MARKER),
    ("batch-empty-command", "; printf '\\n%s %%d\\n' $?" % MARKER),
]


@pytest.mark.parametrize("line", [line for _id, line in REFUSED], ids=[i for i, _ in REFUSED])
def test_everything_else_is_refused(line):
    with pytest.raises(Refused):
        parse_request(line, ROOT)


@pytest.mark.parametrize("root", ["", "/", "relative", "/srv/../etc", "/srv/backups/", "/a\nb"])
def test_a_bad_root_is_refused(root):
    with pytest.raises(Refused):
        parse_request("btrfs receive /srv/backups/web1/root", root)


# -- the listing filter -------------------------------------------------------------------------

LISTING = """\
ID 256 gen 9 top level 5 parent_uuid - received_uuid - uuid 11111111-0000-0000-0000-000000000001 path backups
ID 257 gen 12 top level 256 parent_uuid - received_uuid - uuid 11111111-0000-0000-0000-000000000002 path backups/web1
ID 258 gen 13 top level 257 parent_uuid - received_uuid aaaa uuid 11111111-0000-0000-0000-000000000003 path backups/web1/root/20260101-000000
ID 259 gen 14 top level 256 parent_uuid - received_uuid bbbb uuid 11111111-0000-0000-0000-000000000004 path backups/web10/root/20260101-000000
ID 260 gen 15 top level 256 parent_uuid - received_uuid cccc uuid 11111111-0000-0000-0000-000000000005 path <FS_TREE>/backups/web2/root/20260101-000000
"""


def test_a_listing_shows_only_subvolumes_at_or_below_the_root():
    kept = filter_listing(LISTING, "backups/web1")
    assert [line.split()[1] for line in kept.splitlines()] == ["257", "258"]
    assert "bbbb" not in kept and "cccc" not in kept


def test_a_root_at_the_top_of_its_filesystem_shows_everything():
    assert len(filter_listing(LISTING, "").splitlines()) == 5


# -- the executor on a plain folder (btrfs is a stand-in that records its argv) ------------------

@pytest.fixture
def server_root(tmp_path):
    root = tmp_path / "backups" / "web1"
    (root / "root").mkdir(parents=True)
    (tmp_path / "backups" / "web2" / "root").mkdir(parents=True)
    fake = tmp_path / "btrfs"
    fake.write_text("#!/bin/sh\necho \"btrfs $*\" >> %s\n" % (tmp_path / "btrfs.log"))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def serve(root, line):
    # Real files: the executor hands its stdin/stdout/stderr to btrfs as they are.
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        server = Server(str(root), btrfs_path=str(root.parents[1] / "btrfs"), stdin=stdin,
                        stdout=out, stderr=err, use_sudo=False)
        status = server.serve(line)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


def btrfs_calls(root):
    log = root.parents[1] / "btrfs.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_batch_echoes_each_status_after_the_marker(server_root):
    line = batch_line([(["readlink", "-e", "--", str(server_root / "root")], False),
                       (["readlink", "-e", "--", str(server_root / "missing")], False)])
    status, out, err = serve(server_root, line)
    assert out == "%s\n\n%s 0\n\n%s 1\n" % (server_root / "root", MARKER, MARKER)
    assert status == 1 and "No such file" in err


def test_mkdir_creates_a_folder_inside_the_root(server_root):
    status, _out, _err = serve(server_root, "mkdir -- %s" % (server_root / "home"))
    assert status == 0 and (server_root / "home").is_dir()


def test_a_symlink_out_of_the_root_is_refused_on_disk(server_root):
    os.symlink(str(server_root.parent / "web2"), str(server_root / "escape"))
    for line in ["btrfs receive %s/escape/root" % server_root,
                 "btrfs subvolume delete -- %s/escape/root" % server_root,
                 "mkdir -- %s/escape/new" % server_root]:
        status, _out, err = serve(server_root, line)
        assert status == EXIT_REFUSED and "symbolic link" in err
    assert not (server_root.parent / "web2" / "new").exists()
    assert btrfs_calls(server_root) == []


def test_btrfs_runs_as_an_argv_with_receive_confined_by_chroot(server_root):
    status, _out, _err = serve(server_root, "sudo -n btrfs receive %s/root" % server_root)
    assert status == 0
    status, _out, _err = serve(server_root, "btrfs subvolume delete -c -- %s/root/x" % server_root)
    assert status == 0
    assert btrfs_calls(server_root) == [
        "btrfs receive --chroot %s/root" % server_root,
        "btrfs subvolume delete -c -- %s/root/x" % server_root,
    ]


def test_a_refused_line_runs_nothing(server_root):
    line = "mkdir -- %s/a; rm -rf %s" % (server_root, server_root.parent / "web2")
    status, out, err = serve(server_root, line)
    assert status == EXIT_REFUSED and out == "" and "refused" in err
    assert not (server_root / "a").exists() and (server_root.parent / "web2").is_dir()


def test_the_mount_table_shows_only_mounts_on_the_way_to_the_root(server_root):
    status, out, _err = serve(server_root, "cat /proc/self/mountinfo")
    assert status == 0
    shown = [m.mount_point for m in btrfs.parse_mountinfo(out)]
    real = os.path.realpath(str(server_root))
    assert shown and all(real == m or real.startswith(m.rstrip("/") + "/") or m == "/"
                         or m.startswith(real + "/") for m in shown)
    assert "/proc" not in shown
