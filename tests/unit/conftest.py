"""Put plugins/module_utils on sys.path so the unit tests can `import engine` like the CLI does."""

import sys
from pathlib import Path

import pytest

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

# tests/unit/plugins holds the modules' unit tests. They import the collection as
# `ansible_collections.btrfs.backup...`, which only works from a checkout that sits at
# .../ansible_collections/btrfs/backup: `ansible-test units` runs them there (scripts/test.sh
# makes such a copy). From a plain checkout, pytest leaves them alone.
_COLLECTION_ROOT = Path(__file__).resolve().parents[2]
if _COLLECTION_ROOT.parts[-3:] != ("ansible_collections", "btrfs", "backup"):
    collect_ignore = ["plugins"]


@pytest.fixture(autouse=True)
def job_state_dir(tmp_path_factory, monkeypatch):
    """Each test's job states and job locks in a folder of its own, never the machine's."""
    folder = tmp_path_factory.mktemp("job-state")
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(folder))
    return folder
