"""engine.model.snapper: the source_snapshots setting, the snapshot folder of a snapper job, snapper's JSON list."""

import datetime
import json

import pytest

from engine.model import snapper
from engine.model.errors import ConfigError, EndpointError


@pytest.mark.parametrize("value, config", [
    ("own", None),
    (None, None),
    ("", None),
    ("snapper:root", "root"),
    ("snapper:home", "home"),
    (" snapper:srv-data.1 ", "srv-data.1"),
])
def test_the_setting_names_snappers_configuration_or_none(value, config):
    assert snapper.snapper_config(value) == config


@pytest.mark.parametrize("value", ["snapper", "snapper:", "snapper:../etc", "snapper:a b", "btrbk:home",
                                   "snapper:-c", "OWN"])
def test_anything_else_is_refused_naming_the_setting(value):
    with pytest.raises(ConfigError, match="source_snapshots .*snapper:CONFIG"):
        snapper.snapper_config(value)


@pytest.mark.parametrize("source_snapshots, folder, expected", [
    ("own", "snapshot", "snapshot"),
    ("own", "/snaps", "/snaps"),
    ("snapper:home", "snapshot", ".snapshots"),  # the default (the role always passes it)
    ("snapper:home", None, ".snapshots"),
    ("snapper:home", ".snapshots", ".snapshots"),
    ("snapper:home", "./.snapshots/", ".snapshots"),
])
def test_a_snapper_job_keeps_its_snapshots_and_locks_in_snappers_folder(source_snapshots, folder, expected):
    assert snapper.snapshot_folder_of(source_snapshots, folder) == expected


def test_a_snapper_job_takes_no_other_snapshot_folder():
    with pytest.raises(ConfigError, match="snapshot_folder '/snaps' does not apply"):
        snapper.snapshot_folder_of("snapper:home", "/snaps")


def _listing(config="home", subvolume="/home", entries=((1, "2026-12-05 05:21:04", "single"),)):
    rows = [{"subvolume": subvolume, "number": 0, "date": "", "type": "single"}]
    rows += [{"subvolume": subvolume, "number": n, "date": d, "type": t, "pre-number": None}
             for n, d, t in entries]
    return json.dumps({config: rows})


def test_snappers_list_gives_each_snapshot_but_the_live_subvolume_oldest_first():
    text = _listing(entries=[(12, "2026-12-05 05:21:05", "post"), (11, "2026-12-05 05:21:04", "pre"),
                             (3, "2026-11-30 02:00:00", "single")])
    assert snapper.parse_list(text, "home", "/home/") == [
        snapper.SnapperSnapshot(3, datetime.datetime(2026, 11, 30, 2, 0, 0), "single"),
        snapper.SnapperSnapshot(11, datetime.datetime(2026, 12, 5, 5, 21, 4), "pre"),
        snapper.SnapperSnapshot(12, datetime.datetime(2026, 12, 5, 5, 21, 5), "post")]


def test_each_snapshot_is_where_snapper_keeps_it():
    taken = snapper.SnapperSnapshot(42, datetime.datetime(2026, 12, 5), "single")
    assert taken.path("/home") == "/home/.snapshots/42/snapshot"


def test_a_configuration_of_another_subvolume_is_refused():
    with pytest.raises(EndpointError, match="configuration home is of /srv, not of the job's source /home"):
        snapper.parse_list(_listing(subvolume="/srv"), "home", "/home")


@pytest.mark.parametrize("text", ["", "[]", '{"other": []}', _listing(entries=[(1, "yesterday", "single")])])
def test_output_that_is_not_snappers_list_is_a_clear_error(text):
    with pytest.raises(EndpointError, match="cannot read snapper's list of configuration home"):
        snapper.parse_list(text, "home", "/home")


def test_the_list_command_needs_no_dbus_and_no_used_space():
    assert snapper.list_argv("home") == ["snapper", "--no-dbus", "--jsonout", "-c", "home", "list",
                                         "--disable-used-space"]
