"""A local run with nothing to send, on real btrfs: engine.host.subvol_info's folder listing (the
subvolumes directly inside a folder, found by tree searches of the root tree, with exactly the
facts one ioctl per subvolume gives; rule 1: a backup is known by its UUIDs; rule 2: a partial
receive is never complete) for every kind of entry a snapshot or backup folder can hold, and the
run itself: it loads no send machinery and still leaves its record (rule 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import leave_partial_receive
from support.btrfs_loop import create_subvolume, pipeline, run, snapshot

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
_LAUNCHER = Path(__file__).resolve().parents[2] / "bin" / "btrfs-backup"
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from engine.host import subvol_info  # noqa: E402
from engine.host.listing import list_folder_here  # noqa: E402


def _one_by_one(folder: Path) -> dict:
    """What an ioctl per entry says: the reference the tree search must equal."""
    return {entry.name: subvol_info.subvolume_facts(entry.path) for entry in os.scandir(folder)
            if entry.is_dir(follow_symlinks=False) and subvol_info.is_subvolume_root(entry.path)}


@pytest.fixture
def crowded(make_fs):
    """A backup folder holding every kind of entry, and its neighbours that must stay out of it."""
    fs = make_fs("listing")
    data = create_subvolume(fs / "data")
    (data / "file").write_bytes(os.urandom(200_000))
    folder = fs / "backups"
    folder.mkdir()
    for name in ("20240101-000000", "20240101-010000"):
        snapshot(data, fs / name)                              # read-only snapshots...
        pipeline(["btrfs", "send", "-q", fs / name], ["btrfs", "receive", folder])  # ...received: complete
    snapshot(data, folder / "writable", readonly=False)
    snapshot(data, folder / "read-only")
    create_subvolume(folder / "to-rename")
    os.rename(folder / "to-rename", folder / "renamed")
    create_subvolume(folder / "to-delete")
    run(["btrfs", "subvolume", "delete", folder / "to-delete"])
    leave_partial_receive(snapshot(data, fs / "20240101-020000"), folder)  # a receive cut short
    (folder / "plain-dir").mkdir()
    (folder / "plain-file").write_text("x")
    create_subvolume(folder / "plain-dir" / "nested")          # one level down: not in the folder
    create_subvolume(folder / "renamed" / "inside")            # inside a child subvolume: neither
    (fs / "elsewhere").mkdir()
    snapshot(data, fs / "elsewhere" / "20240101-000000")       # same name in another folder
    return fs, folder


def test_the_tree_search_finds_what_an_ioctl_per_subvolume_finds(crowded):
    fs, folder = crowded
    found = subvol_info.folder_subvolume_facts(str(folder))
    assert found == _one_by_one(folder)
    assert set(found) == {"20240101-000000", "20240101-010000", "20240101-020000", "writable", "read-only",
                          "renamed"}
    complete = {name for name, (_id, _uuid, _parent, received, readonly, _time) in found.items()
                if readonly and received}
    assert complete == {"20240101-000000", "20240101-010000"}  # not the partial receive (-020000)


def test_a_folder_that_is_a_subvolume_root_and_the_filesystem_root(crowded):
    fs, folder = crowded
    assert subvol_info.folder_subvolume_facts(str(folder / "renamed")) == _one_by_one(folder / "renamed")
    top = subvol_info.folder_subvolume_facts(str(fs))
    assert top == _one_by_one(fs) and "data" in top and "20240101-000000" in top


def test_a_small_search_buffer_reads_the_rest_in_further_searches(crowded, monkeypatch):
    fs, folder = crowded
    monkeypatch.setattr(subvol_info, "_SEARCH_BUFFER", 600)  # one root item per search
    assert subvol_info.folder_subvolume_facts(str(folder)) == _one_by_one(folder)


def test_the_listing_is_the_same_without_the_tree_search(crowded, monkeypatch):
    fs, folder = crowded
    searched = list_folder_here(str(folder))

    def refused(_folder):
        raise PermissionError(1, "Operation not permitted")  # as for a user without CAP_SYS_ADMIN

    monkeypatch.setattr("engine.host.listing.folder_subvolume_facts", refused)
    assert list_folder_here(str(folder)).children == searched.children


_NOTHING_TO_SEND = """
import json, sys
sys.path.insert(0, sys.argv.pop(1))
from engine.frontends.cli import main
status = main()
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def test_a_run_with_nothing_to_send_loads_no_send_machinery_and_leaves_its_record(make_fs, tmp_path):
    # Rule 11 holds for the cheapest run: its record and metrics are written; and it imports only
    # what it needs (the start-up guard in tests/unit/engine/frontends covers the import itself).
    fs = make_fs("nothing")
    data = create_subvolume(fs / "data")
    (data / "file").write_text("x")
    dest = make_fs("nothing-dest") / "backups"
    dest.mkdir()
    first = subprocess.run([str(_LAUNCHER), "-q", data, dest], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    before = time.time()
    done = subprocess.run([sys.executable, "-I", "-S", "-c", _NOTHING_TO_SEND, _MODULE_UTILS, "-S", "-q",
                           "--metrics-dir", str(metrics), str(data), str(dest)],
                          capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["status"] == 0
    sent_nothing = {"engine.run.sending", "engine.run.transfer", "engine.host.stream_size",
                    "engine.host.compressibility", "subprocess", "shutil"}
    assert not sent_nothing & set(found["modules"])
    assert len(list(dest.iterdir())) == 1  # the one backup of the first run, nothing new
    records = list(Path(os.environ["BTRFS_BACKUP_STATE_DIR"]).glob("*/last-run.json"))
    last_run = json.loads(records[0].read_text())["last_run"]
    assert last_run["ok"] and not last_run["changed"] and last_run["start"] >= before, last_run
    assert [p.suffix for p in metrics.iterdir()] == [".prom"]
