"""engine.run.rebuild: which backups a rebuilt source gets, its record, and the input it refuses
before anything runs (the effects themselves: tests/integration/test_rebuild_source.py)."""

import logging

import pytest

from engine.frontends import cli
from engine.host.listing import Subvolume
from engine.model.errors import BackupError, ConfigError
from engine.model.run_record import record_rebuild
from engine.model.steps import Receive
from engine.run.rebuild import choose_backups, holds_snapshot_of, rebuild_source


def sub(name, readonly=True, received="r"):
    return Subvolume(name, "/backup/" + name, 256, "uuid-" + name, None,
                     None if received is None else "%s-%s" % (received, name), readonly)


HELD = {s.name: s for s in [
    sub("20240101-000000"), sub("20240102-000000"), sub("20240103-000000", readonly=False, received=None),
    sub("20240104-000000"), sub("home-20240105-000000"), sub("before-upgrade"),
]}

# (prefix, name, count) -> the names brought back, oldest first
CASES = [
    ("", None, 1, ["20240104-000000"]),
    ("", None, 2, ["20240102-000000", "20240104-000000"]),               # the partial is skipped
    ("", None, 9, ["20240101-000000", "20240102-000000", "20240104-000000"]),
    ("", "20240102-000000", 2, ["20240101-000000", "20240102-000000"]),  # older than the one named
    ("", "20240101-000000", 3, ["20240101-000000"]),
    ("home-", None, 2, ["home-20240105-000000"]),
]


@pytest.mark.parametrize("prefix, name, count, expected", CASES)
def test_the_backups_brought_back(prefix, name, count, expected):
    assert [b.name for b in choose_backups(HELD, prefix, name, count)] == expected


def test_a_backup_named_outside_the_jobs_scheme_is_refused():
    with pytest.raises(ConfigError, match="before-upgrade is not a snapshot name of this job"):
        choose_backups(HELD, "", "before-upgrade")


@pytest.mark.parametrize("held, prefix, message", [
    ({}, "", "no complete backup with prefix ''"),
    (HELD, "db-", "no complete backup with prefix 'db-'"),
])
def test_no_backup_of_the_job_is_an_error(held, prefix, message):
    with pytest.raises(BackupError, match=message):
        choose_backups(held, prefix)


def test_at_least_one_backup_is_brought_back():
    with pytest.raises(ConfigError, match="at least 1"):
        choose_backups(HELD, "", None, 0)


def test_an_incremental_receive_says_from_which_backup():
    step = Receive(origin=type("O", (), {"id": "ssh://nas/b"})(), backup=sub("20240104-000000"),
                   parent=sub("20240102-000000"), endpoint=None, folder="/s")
    assert step.lines() == ["receive 20240104-000000 from ssh://nas/b into /s (incremental from 20240102-000000)"]


def snap(name, uuid, received=None, readonly=True):
    return Subvolume(name, "/home/snapshot/" + name, 300, uuid, None, received, readonly)


@pytest.mark.parametrize("snapshots, held", [
    ([snap("20240104-000000", "u-new", received="r-20240104-000000")], True),   # placed by a rebuild
    ([snap("20240104-000000", "r-20240104-000000")], True),                      # the backup was made of it
    ([snap("20240104-000000", "r-20240104-000000", readonly=False)], False),     # writable: not a snapshot
    ([snap("20240104-000000", "u-other")], False),                               # the same name only
    ([], False),
], ids=["rebuilt", "its own", "writable", "name only", "none"])
def test_a_source_holds_a_backups_snapshot_by_uuid(snapshots, held):
    assert holds_snapshot_of(snapshots, sub("20240104-000000")) is held


# -- the job's state after a rebuild -----------------------------------------------------------


def test_a_rebuild_is_recorded_in_a_new_state():
    state = record_rebuild(None, job="home", prefix="", source="/home", snapshot_folder="/home/snapshot",
                           origin="ssh://nas/b", snapshots=["20240104-000000"], when=5.0)
    assert state["rebuilt"] == {"time": 5.0, "from": "ssh://nas/b", "snapshots": ["20240104-000000"]}
    assert state["destinations"] == {} and state["last_run"] is None
    assert (state["job"], state["source"], state["snapshot_folder"]) == ("home", "/home", "/home/snapshot")


def test_a_rebuild_keeps_what_the_lost_hosts_state_knew():
    previous = {"version": 1, "job": "home", "last_run": {"ok": True}, "max_age_seconds": 90.0,
                "destinations": {"/backup": {"status": "ok", "newest_backup": "20240104-000000"}}}
    state = record_rebuild(previous, job="home", prefix="", source="/home", snapshot_folder="/home/snapshot",
                           origin="/backup", snapshots=["20240104-000000"], when=5.0)
    assert {k: v for k, v in state.items() if k != "rebuilt"} == dict(
        previous, source="/home", snapshot_folder="/home/snapshot", prefix="")
    assert previous.get("rebuilt") is None  # the previous state is not changed in place


# -- input refused before anything runs (rule 7) ---------------------------------------------


class NoCommands:
    """A runner that fails the test if anything is run."""

    def run(self, *args, **kwargs):
        raise AssertionError("nothing may run for bad input")

    run_batch = run


@pytest.mark.parametrize("source", ["data", "", "/srv/../data"])
def test_the_source_must_be_an_absolute_path(source):
    with pytest.raises(ConfigError):
        rebuild_source("/backup", source, runner=NoCommands())


def test_an_existing_source_is_never_replaced(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(BackupError, match="%s already exists" % (tmp_path / "data")):
        rebuild_source("/backup", str(tmp_path / "data"), runner=NoCommands())
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.fixture
def quiet_cli(monkeypatch):
    """main() installs a SIGTERM handler and its own log handler: both are put back after."""
    import signal
    handler = signal.getsignal(signal.SIGTERM)
    logger = logging.getLogger("btrfs_backup")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    signal.signal(signal.SIGTERM, handler)
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize("argv, message", [
    (["--snapshots", "2"], "--snapshots: only with --as-source"),
    (["-f", ".snapshots"], "-f/--snapshot-folder: only with --as-source"),
    (["--job-name", "home"], "--job-name: only with --as-source"),
    (["--as-source", "-W"], "-W and --force do not apply"),
    (["--as-source", "--force"], "-W and --force do not apply"),
])
def test_flags_that_do_not_go_together_are_usage_errors(argv, message, capsys, quiet_cli):
    assert cli.main(["restore"] + argv + ["/backup", "/srv/data"]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
