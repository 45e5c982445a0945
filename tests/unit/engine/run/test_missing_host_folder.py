"""A source pushing to a backup server whose folder for it is missing: serve still answers the
probes, and the source's message points at the server (issue: the role's server part failed)."""

import tempfile

import pytest

from engine.run.destination_access import missing_destination
from engine.host.endpoints.local import LocalEndpoint
from engine.host.endpoints.ssh import SshEndpoint
from engine.host.listing import listing_commands
from engine.frontends.serve import EXIT_REFUSED, Server
from engine.model.server_mode import MODE_PROBE

MARKER = "__btrfs_backup_0123456789abcdef0123456789abcdef__"


def batch_line(commands):
    endpoint = SshEndpoint("nas", "/x")
    return "; ".join("%s; printf '\\n%s %%d\\n' $?" % (endpoint.remote_line(argv, privileged), MARKER)
                     for argv, privileged in commands)


@pytest.mark.parametrize("dest, on_backup_server, expected", [
    pytest.param(SshEndpoint("127.0.0.2", "/srv/backups/web1/home", user="btrfs-backup"), True,
                 "the backup server 127.0.0.2 has no folder /srv/backups/web1 for this host: did the role's "
                 "server part fail there, or is its backup disk not mounted? "
                 "(destination ssh://btrfs-backup@127.0.0.2/srv/backups/web1/home)", id="serve-key"),
    pytest.param(SshEndpoint("nas", "/srv/backups/web1/home"), False,
                 "destination ssh://nas/srv/backups/web1/home does not exist, nor does its parent folder "
                 "/srv/backups/web1", id="plain-ssh"),
    pytest.param(LocalEndpoint("/mnt/usb/home"), False,
                 "destination /mnt/usb/home does not exist, nor does its parent folder /mnt/usb", id="local"),
])
def test_a_missing_destination_folder_is_named_where_it_is_missing(dest, on_backup_server, expected):
    assert missing_destination(dest, "/".join(dest.path.split("/")[:-1]), on_backup_server) == expected


def serve(root, line):
    logged = []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server = Server(str(root), btrfs_path="/bin/false", stdin=tempfile.TemporaryFile(), stdout=out,
                        stderr=err, use_sudo=False, append_only=True,
                        log=lambda message, priority: logged.append((priority, message)))
        status = server.serve(line)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode(), logged


def test_without_its_folder_serve_answers_the_probes(tmp_path):
    root = tmp_path / "backups" / "web1"
    status, out, _err, logged = serve(root, batch_line([(MODE_PROBE, False)]))
    assert status == 0 and "btrfs-backup-serve-mode append-only" in out and logged == []


def test_without_its_folder_a_listing_says_missing_and_the_rest_is_refused_once(tmp_path):
    root = tmp_path / "backups" / "web1"
    status, out, err, logged = serve(root, batch_line(listing_commands(str(root / "home"))))
    statuses = [line.split()[-1] for line in out.splitlines() if line.startswith(MARKER)]
    assert statuses == ["1", "0", str(EXIT_REFUSED), str(EXIT_REFUSED)]
    assert "No such file or directory" in err
    assert [(p, m.split(":")[0]) for p, m in logged] == [("err", "refused[disk] for %s" % root)]
    assert "the folder %s of this key does not exist on this server" % root in logged[0][1]
    assert "is the backup disk not mounted?" in err


@pytest.mark.parametrize("line", [
    pytest.param("mkdir -p -- {root}/home", id="mkdir-p-would-make-the-root"),
    pytest.param("btrfs receive {root}/home", id="receive"),
    pytest.param("mkdir -p -- {root}/home && zstd -d -q | btrfs receive {root}/home", id="receive-making-its-folder"),
])
def test_without_its_folder_nothing_is_made(tmp_path, line):
    root = tmp_path / "backups" / "web1"
    status, _out, err, logged = serve(root, line.format(root=root))
    assert status == EXIT_REFUSED and "does not exist on this server" in err
    assert not root.exists() and [p for p, _m in logged] == ["err"]
