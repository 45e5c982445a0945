"""engine.host.locks: the `.outstanding_transfers` file (btrfs-backup 0.3 shape, strict, atomic)."""

import json
import os
import stat

import pytest

from engine.model.errors import LockFileError
from engine.host.locks import (LOCK_FILE_NAME, MAX_INLINE_LOCK_TEXT, LocalLockStore, LockTable, RemoteLockStore,
                               parse_locks, parse_staged, serialize_locks, staged_here)
from engine.host.endpoints.ssh import SshEndpoint

# Written by btrfs-backup 0.3.1 after a failed incremental transfer to two destinations.
BTRFS_BACKUP_03 = json.dumps({
    "20261124-181630": {"locks": ["/backup"], "parent_locks": []},
    "20261123-181630": {"parent_locks": ["ssh://nas/b"]},
    "20261122-181630": {"locks": ["ssh://root@nas:2222/b", "/backup"]},
}, indent=4)


def test_parse_btrfs_backup_03_file():
    assert parse_locks(BTRFS_BACKUP_03) == {
        "20261124-181630": {"locks": {"/backup"}, "parent_locks": set()},
        "20261123-181630": {"locks": set(), "parent_locks": {"ssh://nas/b"}},
        "20261122-181630": {"locks": {"ssh://root@nas:2222/b", "/backup"}, "parent_locks": set()},
    }


def test_serialize_keeps_the_shape_drops_empty_and_sorts():
    text = serialize_locks({
        "snap": {"locks": {"/backup"}, "parent_locks": {"ssh://nas/b"}},
        "done": {"locks": set(), "parent_locks": set()},  # nothing left: dropped
        "only": {"locks": {"/z", "/a"}},
    })
    assert json.loads(text) == {
        "snap": {"locks": ["/backup"], "parent_locks": ["ssh://nas/b"]},
        "only": {"locks": ["/a", "/z"]},
    }


@pytest.mark.parametrize("locks", [
    pytest.param({}, id="empty"),
    pytest.param({"snap": {"locks": {"/backup"}, "parent_locks": {"ssh://nas/b"}}}, id="both-kinds"),
    pytest.param({"a": {"locks": {"/x", "ssh://u@h:22/y"}, "parent_locks": set()},
                  "b": {"locks": set(), "parent_locks": {"/x"}}}, id="several"),
])
def test_serialize_parse_round_trip(locks):
    assert parse_locks(serialize_locks(locks)) == locks


@pytest.mark.parametrize("text, problem", [
    pytest.param("", "not valid JSON", id="empty-file"),
    pytest.param('{"a": {"locks": [', "not valid JSON", id="truncated"),
    pytest.param('["a"]', "the top level is not an object", id="list-at-top-level"),
    pytest.param("null", "the top level is not an object", id="null"),
    pytest.param('{"a": ["/backup"]}', "entry 'a' is not an object", id="entry-is-a-list"),
    pytest.param('{"a": {"lock": ["/backup"]}}', "unknown key 'lock'", id="unknown-key"),
    pytest.param('{"a": {"locks": "/backup"}}', "'locks' of 'a' is not a list of strings",
                 id="value-not-a-list"),
    pytest.param('{"a": {"parent_locks": [1]}}', "'parent_locks' of 'a' is not a list of strings",
                 id="id-not-a-string"),
])
def test_corrupt_lock_file_is_an_error_never_a_reset(text, problem):
    where = "/home/snapshot/.outstanding_transfers"
    with pytest.raises(LockFileError) as err:
        parse_locks(text, where)
    message = str(err.value)
    assert message.startswith(where + " is corrupt")
    assert problem in message
    assert "not reset" in message


# -- LockTable --------------------------------------------------------------------------------------

def _table():
    return LockTable({
        "s1": {"locks": {"/backup"}, "parent_locks": set()},
        "s2": {"locks": {"ssh://nas/b"}, "parent_locks": {"/backup"}},
        "s3": {"parent_locks": {"ssh://nas/b"}},
    })


def test_add_and_locked():
    table = LockTable()
    table.add("s4", "/backup")
    table.add("s3", "/backup", "parent_locks")
    assert table.locked("s4", {"/backup"})
    assert not table.locked("s4", {"/backup"}, "parent_locks")
    assert table.locked("s3", {"/backup", "/alias"}, "parent_locks")
    assert table.as_dict() == {"s3": {"locks": [], "parent_locks": ["/backup"]},
                               "s4": {"locks": ["/backup"], "parent_locks": []}}


def test_discard_removes_only_the_given_destination_and_kind():
    table = _table()
    table.discard("s2", {"ssh://nas/b"})
    table.discard("unknown", {"/backup"})  # no entry: nothing happens
    assert table.as_dict() == {
        "s1": {"locks": ["/backup"], "parent_locks": []},
        "s2": {"locks": [], "parent_locks": ["/backup"]},
        "s3": {"locks": [], "parent_locks": ["ssh://nas/b"]},
    }


def test_discard_destination_removes_locks_and_parent_locks_and_names_snapshots():
    table = _table()
    assert table.discard_destination({"ssh://nas/b"}) == ["s2", "s3"]
    assert table.destinations() == ["/backup"]
    assert "s3" not in table.as_dict()  # an entry with nothing left disappears


def test_destinations_lists_every_locked_destination_once():
    assert _table().destinations() == ["/backup", "ssh://nas/b"]


def test_reasons_explain_each_lock():
    assert _table().reasons("s2") == [
        "transfer to ssh://nas/b is unfinished (locked)",
        "parent of an unfinished transfer to /backup",
    ]
    assert _table().reasons("not-locked") == []


def test_copy_is_independent():
    table = _table()
    copy = table.copy()
    copy.add("s1", "/other")
    assert not table.locked("s1", {"/other"})


# -- LocalLockStore ---------------------------------------------------------------------------------

def test_missing_lock_file_reads_as_empty(tmp_path):
    assert LocalLockStore(str(tmp_path)).read().as_dict() == {}


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not waiting for the disk"])
def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, durable):
    store = LocalLockStore(str(tmp_path))
    table = _table()
    store.write(table, durable)
    store.write(table, durable)  # replacing an existing file works the same
    assert os.listdir(str(tmp_path)) == [LOCK_FILE_NAME]
    lock_file = tmp_path / LOCK_FILE_NAME
    assert parse_locks(lock_file.read_text()) == {k: v for k, v in table.locks.items()}
    assert LocalLockStore(str(tmp_path)).read().as_dict() == table.as_dict()
    # Readable like the file btrfs-backup 0.3 wrote, whatever the umask.
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o644


def test_write_of_an_empty_table_is_an_empty_object(tmp_path):
    LocalLockStore(str(tmp_path)).write(LockTable())
    assert json.loads((tmp_path / LOCK_FILE_NAME).read_text()) == {}


def test_corrupt_file_raises_and_is_left_untouched(tmp_path):
    lock_file = tmp_path / LOCK_FILE_NAME
    damaged = b'{"20261124-181630": {"locks": ["/backup"'
    lock_file.write_bytes(damaged)
    with pytest.raises(LockFileError) as err:
        LocalLockStore(str(tmp_path)).read()
    assert str(lock_file) in str(err.value)
    assert lock_file.read_bytes() == damaged
    assert os.listdir(str(tmp_path)) == [LOCK_FILE_NAME]


def test_write_into_a_missing_folder_is_a_lock_file_error(tmp_path):
    with pytest.raises(LockFileError) as err:
        LocalLockStore(str(tmp_path / "gone")).write(_table())
    assert "cannot write" in str(err.value)


def test_the_staged_share_lies_beside_the_lock_file_which_keeps_its_shape(tmp_path):
    store = LocalLockStore(str(tmp_path))
    table = LockTable()
    table.hold("s2", "s1", "ssh://h/b")
    store.write(table)
    store.write_staged({"s2": {"ssh://h/b": {"staged_bytes": 5, "stream_bytes": 10, "time": 1}}})
    # btrfs-backup 0.3 refuses any key in an entry but the two lock kinds: the file keeps only those.
    assert json.loads((tmp_path / LOCK_FILE_NAME).read_text()) == {"s2": {"locks": ["ssh://h/b"]},
                                                                  "s1": {"parent_locks": ["ssh://h/b"]}}
    staged, locks = staged_here(str(tmp_path))
    assert staged["s2"]["ssh://h/b"]["staged_bytes"] == 5 and locks["s2"]["locks"] == ["ssh://h/b"]
    store.write_staged({})
    assert staged_here(str(tmp_path)) == ({}, {}) and sorted(os.listdir(tmp_path)) == [LOCK_FILE_NAME]


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"s": []}', '{"s": {"d": {"staged_bytes": "5"}}}'])
def test_a_malformed_staged_share_is_no_figure(text):
    assert parse_staged(text) == {}


# -- RemoteLockStore's command that goes before a send -------------------------------------------

def _remote_store(folder):
    return RemoteLockStore(SshEndpoint("nas", str(folder)), None, str(folder))


def test_the_write_before_a_send_replaces_the_file_atomically(tmp_path):
    """The command runs there in a shell: run here, it leaves the lock file and no temp file."""
    import subprocess
    table = _table()
    (tmp_path / LOCK_FILE_NAME).write_text("{}\n")
    argv, privileged = _remote_store(tmp_path).write_command(table)
    assert privileged
    subprocess.run(argv, check=True)
    assert os.listdir(str(tmp_path)) == [LOCK_FILE_NAME]
    assert parse_locks((tmp_path / LOCK_FILE_NAME).read_text()) == table.locks


def test_a_failed_write_before_a_send_fails_and_says_which_file(tmp_path):
    """Its failure stops the send that follows it with `&&` (rule 3), and says why."""
    import subprocess
    (tmp_path / (LOCK_FILE_NAME + ".tmp")).mkdir()  # the temp file cannot be written
    argv, _privileged = _remote_store(tmp_path).write_command(_table())
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "cannot write the lock file %s" % (tmp_path / LOCK_FILE_NAME) in done.stderr
    assert not (tmp_path / LOCK_FILE_NAME).exists()


def test_a_lock_file_too_long_for_a_command_line_is_written_apart(tmp_path):
    table = LockTable()
    for n in range(MAX_INLINE_LOCK_TEXT // 40):
        table.hold("20261124-%06d" % n, None, "ssh://nas/b")
    assert _remote_store(tmp_path).write_command(table) is None
