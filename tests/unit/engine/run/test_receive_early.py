"""The receive of a send to one plain ssh host, started before the sample decides (transfer.open_receive_early):
where it starts, and with which command line."""

import subprocess

import pytest

from engine.host.endpoints.local import LocalEndpoint
from engine.host.endpoints.ssh import SshEndpoint
from engine.host.listing import Subvolume
from engine.host.streams import EndTools
from engine.model.stream_options import StreamOptions
from engine.run.executor import EffectOptions
from engine.run.transfer import open_receive_early


class Ends:
    """zstd everywhere; `plain`: the ssh hosts that said they are plain hosts (not serve)."""

    def __init__(self, plain):
        self.plain = plain

    def __call__(self, endpoint):
        return EndTools(zstd=True, proto2=True)

    def is_plain_host(self, endpoint):
        return endpoint.id in self.plain


class Runner:
    """Starts `cat` (which reads the pipe to its end) for every command, and keeps their argv."""

    def __init__(self):
        self.started = []

    def popen(self, argv, stdin=None, stdout=None, stderr=None, pass_fds=()):
        self.started.append(argv)
        return subprocess.Popen(["cat"], stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)


SOURCE = LocalEndpoint("/data")
SNAPSHOT = Subvolume(name="s2", path="/data/snapshot/s2", id=257, uuid="u2", parent_uuid=None, received_uuid=None,
                     readonly=True)
PARENT = SNAPSHOT._replace(name="s1", path="/data/snapshot/s1", id=256, uuid="u1")


def host(path="/backups"):
    return SshEndpoint("backup", path)


def new_folder():
    dest = host()
    dest.folder_to_create = dest.path
    return dest


# (case, destinations, hosts that said they are plain, stream settings, last stream compressed, what starts)
CASES = [
    ("one plain host, compressed last time", [host()], {"ssh://backup/backups"}, {}, True, "zstd -d -q | btrfs receive /backups &&"),
    ("one plain host, never sent", [host()], {"ssh://backup/backups"}, {}, None, "zstd -d -q | btrfs receive /backups &&"),
    ("one plain host, plain last time", [host()], {"ssh://backup/backups"}, {}, False, "btrfs receive /backups &&"),
    ("compression explicitly off", [host()], {"ssh://backup/backups"}, {"compress": "none"}, None, "btrfs receive /backups &&"),
    ("a backup server's serve: an empty stream would be a failed receive there", [host()], set(), {}, True, None),
    ("a folder to create: that would change the host first", [new_folder()], {"ssh://backup/backups"}, {}, True, None),
    ("resumable always: staged, not received", [host()], {"ssh://backup/backups"}, {"resumable": "always"}, True, None),
    ("two destinations: a fan-out", [host(), host("/other")], {"ssh://backup/backups", "ssh://backup/other"}, {}, True,
     None),
    ("a local destination", [LocalEndpoint("/mnt/backups")], set(), {}, True, None),
]


@pytest.mark.parametrize("case, dests, plain, settings, before, starts", CASES, ids=[c[0] for c in CASES])
def test_which_receive_starts_early(case, dests, plain, settings, before, starts):
    runner = Runner()
    early = open_receive_early(SOURCE, dests, SNAPSHOT, PARENT, runner, EffectOptions(stream=StreamOptions(**settings)),
                               Ends(plain), before)
    try:
        if starts is None:
            assert early is None and runner.started == []
        else:
            assert len(runner.started) == 1 and runner.started[0][0] == "ssh", runner.started
            line = runner.started[0][-1]
            assert line.startswith(starts), line
            assert "btrfs-backup-arrived" in line  # it also answers what arrived
    finally:
        if early is not None:
            early.give_up()
