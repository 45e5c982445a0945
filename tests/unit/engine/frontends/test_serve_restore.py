"""engine.frontends.serve --restore: which SSH_ORIGINAL_COMMAND lines an administrator's restore key may run."""

import os
import stat
import tempfile

import pytest

from engine.host import btrfs
from engine.host.endpoints.ssh import SshEndpoint
from engine.host.listing import listing_commands
from engine.frontends.serve import (EXIT_REFUSED, REFUSAL_KINDS, Operation, Refused, Server, filter_listing,
                          parse_request)
from engine.frontends.serve import main as serve_main
from engine.model.server_mode import MODE_PROBE

ROOT = "/srv/backups"
BACKUP = ROOT + "/web1/home/20260101-000000"
PARENT = ROOT + "/web1/home/20251231-000000"
MARKER = "__btrfs_backup_0123456789abcdef0123456789abcdef__"


def batch_line(commands, sudo=False):
    """The exact line SshEndpoint.run_batch sends (same code path, fixed marker)."""
    endpoint = SshEndpoint("nas", "/x", sudo=sudo)
    return "; ".join("%s; printf '\\n%s %%d\\n' $?" % (endpoint.remote_line(argv, privileged), MARKER)
                     for argv, privileged in commands)


def single_line(argv, sudo=False):
    return SshEndpoint("nas", "/x", sudo=sudo).remote_line(argv)


def restore_request(line, hosts=None):
    return parse_request(line, ROOT, restore=True, hosts=hosts)


# -- accepted: what `btrfs-backup restore ssh://...` and btrfs_restore send -----------------------

@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("folder", [ROOT + "/web1/home", ROOT + "/web1", ROOT], ids=["job", "host", "root"])
def test_the_listing_batch_of_a_restore_is_accepted(folder, sudo):
    request = restore_request(batch_line(listing_commands(folder), sudo))
    assert request.marker == MARKER
    assert request.operations == [Operation("readlink", [folder]), Operation("mountinfo"),
                                  Operation("list", [folder]), Operation("list", [folder], ["-r"])]


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "ssh-sudo"])
@pytest.mark.parametrize("argv, expected", [
    pytest.param(btrfs.send_argv(BACKUP), Operation("send", [BACKUP]), id="send"),
    pytest.param(btrfs.send_argv(BACKUP, PARENT), Operation("send", [BACKUP, PARENT], ["-p"]),
                 id="send-incremental"),
])
def test_the_send_of_a_backup_inside_the_root_is_accepted(argv, expected, sudo):
    request = restore_request(single_line(argv, sudo))
    assert request.marker is None and request.operations == [expected]


def test_with_hosts_the_key_reads_only_their_folders():
    assert restore_request(single_line(btrfs.send_argv(BACKUP)), hosts={"web1"}).operations == [
        Operation("send", [BACKUP])]
    assert restore_request(batch_line(listing_commands(ROOT + "/web1/home")), hosts={"web1", "db1"}).marker


# -- refused: anything that writes, leaves the root, or is not a restore's ------------------------

RESTORE_REFUSED = [
    # Writes: what a source's key may do, a restore key may not.
    ("receive", single_line(btrfs.receive_argv(ROOT + "/web1/home"))),
    ("receive-sudo", single_line(btrfs.receive_argv(ROOT + "/web1/home"), sudo=True)),
    ("compressed-receive", "zstd -d -q | btrfs receive %s/web1/home" % ROOT),
    ("delete", single_line(btrfs.delete_argv([BACKUP]))),
    ("delete-commit", single_line(btrfs.delete_argv([BACKUP], commit=True))),
    ("mkdir", "mkdir -- %s/web1/x" % ROOT),
    ("mkdir-p", "mkdir -p -- %s/web1/x/y" % ROOT),
    ("make-writable", single_line(btrfs.set_writable_argv(BACKUP))),
    ("make-writable-forced", single_line(btrfs.set_writable_argv(BACKUP, force=True))),
    ("sync", single_line(btrfs.sync_argv(ROOT + "/web1/home"))),
    ("snapshot", "btrfs subvolume snapshot %s %s/web1/copy" % (BACKUP, ROOT)),
    # Sends outside the root, of the root itself, or spelled to escape it.
    ("send-outside", "btrfs send /home/user"),
    ("send-sibling-prefix", "btrfs send /srv/backups2/web1/home/20260101-000000"),
    ("send-root", "btrfs send %s" % ROOT),
    ("send-dotdot", "btrfs send %s/web1/../../../home" % ROOT),
    ("send-dot", "btrfs send %s/web1/./home/20260101-000000" % ROOT),
    ("send-double-slash", "btrfs send %s/web1//home/20260101-000000" % ROOT),
    ("send-relative", "btrfs send web1/home/20260101-000000"),
    ("send-parent-outside", "btrfs send -p /home/user %s" % BACKUP),
    ("send-parent-dotdot", "btrfs send -p %s/../etc %s" % (ROOT, BACKUP)),
    # Send flags a restore does not use: writing the stream to a file, other streams.
    ("send-to-file", "btrfs send -f /etc/cron.d/x %s" % BACKUP),
    ("send-to-file-after", "btrfs send %s -f /etc/cron.d/x" % BACKUP),
    ("send-clone-source", "btrfs send -c /home/user %s" % BACKUP),
    ("send-no-data", "btrfs send --no-data %s" % BACKUP),
    ("send-two", "btrfs send %s %s" % (BACKUP, PARENT)),
    ("send-nothing", "btrfs send"),
    ("send-expansion", "btrfs send %s/web1/$(id)" % ROOT),
    ("send-in-batch", "btrfs send %s; printf '\\n%s %%d\\n' $?" % (BACKUP, MARKER)),
    ("send-compressed", "btrfs send %s | zstd -q -c -T0 -3" % BACKUP),
    ("send-piped-elsewhere", "btrfs send %s | tee /tmp/x" % BACKUP),
    ("send-redirected", "btrfs send %s > /tmp/x" % BACKUP),
    ("send-then-rm", "btrfs send %s; rm -rf %s" % (BACKUP, ROOT)),
    # Probes a restore does not send, and other programs.
    ("test-e", "test -e %s/web1" % ROOT),
    ("mode-probe", " ".join(MODE_PROBE)),
    ("btrfs-version", "btrfs --version"),
    ("zstd-version", "zstd --version"),
    ("listing-outside", "btrfs subvolume list -a -u -q -R /home"),
    ("readlink-etc", "readlink -e -- /etc/shadow"),
    ("cat-file", "cat -- %s/etc/shadow" % BACKUP),
    ("sh", "sh -c 'btrfs send %s'" % BACKUP),
    ("empty", ""),
]


@pytest.mark.parametrize("line", [line for _id, line in RESTORE_REFUSED], ids=[i for i, _ in RESTORE_REFUSED])
def test_a_restore_key_refuses_everything_else(line):
    with pytest.raises(Refused) as refused:
        restore_request(line)
    assert refused.value.kind in REFUSAL_KINDS


@pytest.mark.parametrize("line", [
    pytest.param(single_line(btrfs.send_argv(ROOT + "/web2/home/20260101-000000")), id="send-other-host"),
    pytest.param(single_line(btrfs.send_argv(BACKUP, ROOT + "/web2/home/20251231-000000")),
                 id="parent-of-other-host"),
    pytest.param(batch_line(listing_commands(ROOT + "/web2/home")), id="list-other-host"),
    pytest.param(batch_line(listing_commands(ROOT)), id="list-the-root"),
    pytest.param(single_line(btrfs.send_argv(ROOT + "/web10/home/20260101-000000")), id="sibling-prefix"),
])
def test_with_hosts_other_hosts_folders_are_refused(line):
    with pytest.raises(Refused) as refused:
        restore_request(line, hosts={"web1"})
    assert refused.value.kind == "path"


def test_a_source_key_still_refuses_send():
    with pytest.raises(Refused):
        parse_request(single_line(btrfs.send_argv(BACKUP)), ROOT + "/web1")


LISTING = """\
ID 256 gen 9 top level 5 parent_uuid - received_uuid - uuid 11111111-0000-0000-0000-000000000001 path backups
ID 257 gen 12 top level 256 parent_uuid - received_uuid - uuid 11111111-0000-0000-0000-000000000002 path backups/web1
ID 258 gen 13 top level 257 parent_uuid - received_uuid aaaa uuid 11111111-0000-0000-0000-000000000003 path backups/web1/home/20260101-000000
ID 259 gen 14 top level 256 parent_uuid - received_uuid bbbb uuid 11111111-0000-0000-0000-000000000004 path backups/web10/home/20260101-000000
ID 260 gen 15 top level 256 parent_uuid - received_uuid cccc uuid 11111111-0000-0000-0000-000000000005 path backups/web2/home/20260101-000000
"""


@pytest.mark.parametrize("hosts, shown", [
    pytest.param(None, ["256", "257", "258", "259", "260"], id="every-host"),
    pytest.param({"web1"}, ["257", "258"], id="one-host"),
    pytest.param({"web1", "web2"}, ["257", "258", "260"], id="two-hosts"),
    pytest.param(set(), [], id="no-host"),
])
def test_a_restore_listing_shows_only_the_hosts_it_may_read(hosts, shown):
    kept = filter_listing(LISTING, "backups", hosts)
    assert sorted(line.split()[1] for line in kept.splitlines()) == shown


@pytest.mark.parametrize("options", [
    pytest.param({"append_only": True}, id="append-only"),
    pytest.param({"quota_size": "1G"}, id="quota"),
])
def test_a_restore_key_takes_no_writing_option(options, capsys):
    assert serve_main(ROOT, restore=True, environ={"SSH_ORIGINAL_COMMAND": "btrfs send " + BACKUP},
                      **options) == 2
    assert "--restore only reads backups" in capsys.readouterr().err


@pytest.mark.parametrize("hosts, restore, said", [
    pytest.param(["web1"], False, "--host is for a restore key", id="host-without-restore"),
    pytest.param(["../etc"], True, "is not a host folder name", id="host-dotdot"),
    pytest.param(["a/b"], True, "is not a host folder name", id="host-with-slash"),
])
def test_bad_hosts_are_refused_before_anything_runs(hosts, restore, said, capsys):
    assert serve_main(ROOT, restore=restore, hosts=hosts, environ={"SSH_ORIGINAL_COMMAND": "btrfs send " + BACKUP}) == 2
    assert said in capsys.readouterr().err


# -- the executor on a plain folder (btrfs is a stand-in that records its argv) ------------------

SHOW = """#!/bin/sh
echo "btrfs $*" >> {log}
case "$1 $2" in
  "subvolume show")
    case "$3" in
      */partial) printf 'Name: partial\\nUUID: 1\\nSubvolume ID: 300\\nFlags: -\\nReceived UUID: -\\n' ;;
      *) printf 'Name: x\\nUUID: 1\\nSubvolume ID: 301\\nFlags: readonly\\nReceived UUID: aaaa\\n' ;;
    esac ;;
  "send "*|send*) printf 'STREAM %s' "$*" ;;
esac
"""


@pytest.fixture
def restore_root(tmp_path):
    """A server root with web1's backups (plain folders) and a stand-in btrfs whose `subvolume
    show` calls `partial` a partial receive and everything else a complete backup."""
    root = tmp_path / "backups"
    for name in ("20251231-000000", "20260101-000000", "partial"):
        (root / "web1" / "home" / name).mkdir(parents=True)
    (root / "web2" / "home" / "20260101-000000").mkdir(parents=True)
    fake = tmp_path / "btrfs"
    fake.write_text(SHOW.format(log=tmp_path / "btrfs.log"))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def serve_restore(root, line, hosts=None):
    """(status, stdout, stderr, [refusal log lines]) of a restore key serving `line`."""
    logged = []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server = Server(str(root), btrfs_path=str(root.parent / "btrfs"), stdin=tempfile.TemporaryFile(),
                        stdout=out, stderr=err, use_sudo=False, restore=True, hosts=hosts,
                        log=lambda message, priority: logged.append((priority, message)))
        status = server.serve(line)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode(), logged


def btrfs_calls(root):
    log = root.parent / "btrfs.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_complete_backup_is_sent_to_the_client(restore_root):
    backup, parent = restore_root / "web1/home/20260101-000000", restore_root / "web1/home/20251231-000000"
    status, out, _err, logged = serve_restore(restore_root, "sudo -n btrfs send -p %s %s" % (parent, backup))
    assert status == 0 and logged == []
    assert out == "STREAM send -p %s %s" % (parent, backup)
    assert btrfs_calls(restore_root)[-1] == "btrfs send -p %s %s" % (parent, backup)


@pytest.mark.parametrize("line", [
    pytest.param("btrfs send {root}/web1/home/partial", id="partial-receive"),
    pytest.param("btrfs send -p {root}/web1/home/partial {root}/web1/home/20260101-000000", id="partial-parent"),
])
def test_what_is_not_a_complete_backup_is_not_sent(restore_root, line):
    status, out, err, logged = serve_restore(restore_root, line.format(root=restore_root))
    assert status == EXIT_REFUSED and out == "" and "is not a complete backup" in err
    assert [p for p, _m in logged] == ["alert"]
    assert not any(call.startswith("btrfs send") for call in btrfs_calls(restore_root))


def test_a_symlink_out_of_the_root_is_not_followed(restore_root, tmp_path):
    (tmp_path / "elsewhere" / "secret").mkdir(parents=True)
    os.symlink(str(tmp_path / "elsewhere"), str(restore_root / "web1" / "escape"))
    status, out, err, _logged = serve_restore(restore_root, "btrfs send %s/web1/escape/secret" % restore_root)
    assert status == EXIT_REFUSED and out == "" and "symbolic link" in err
    assert btrfs_calls(restore_root) == []


@pytest.mark.parametrize("line", [
    pytest.param("btrfs receive {root}/web1/home", id="receive"),
    pytest.param("btrfs subvolume delete -- {root}/web1/home/20260101-000000", id="delete"),
    pytest.param("mkdir -- {root}/web1/new", id="mkdir"),
    pytest.param("btrfs property set -ts {root}/web1/home/20260101-000000 ro false", id="make-writable"),
])
def test_writes_are_refused_logged_and_run_nothing(restore_root, line):
    status, out, err, logged = serve_restore(restore_root, line.format(root=restore_root))
    assert status == EXIT_REFUSED and out == "" and "a restore key only reads backups" in err
    assert [p for p, _m in logged] == ["alert"] and "refused[command]" in logged[0][1]
    assert btrfs_calls(restore_root) == [] and not (restore_root / "web1" / "new").exists()


def test_another_hosts_backup_is_refused_to_a_key_for_one_host(restore_root):
    status, out, err, _logged = serve_restore(
        restore_root, "btrfs send %s/web2/home/20260101-000000" % restore_root, hosts={"web1"})
    assert status == EXIT_REFUSED and out == "" and "may restore (web1)" in err
