"""engine.run.source_side.SnapperSourceSide: what a snapper job refuses before anything runs."""

import pytest

from engine.model.errors import ConfigError
from engine.run.source_side import SnapperSourceSide


def test_a_snapper_job_runs_on_the_host_of_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="snapper's snapshots are sent from the host they are on"):
        SnapperSourceSide.of("ssh://root@web1/home", None, source_snapshots="snapper:home")


def test_its_snapshot_folder_and_identity_are_snappers(tmp_path, monkeypatch):
    monkeypatch.setenv("BTRFS_BACKUP_STATE_DIR", str(tmp_path))
    side = SnapperSourceSide.of(str(tmp_path), None, source_snapshots="snapper:home")
    assert (side.config, side.folder, side.takes_snapshots) == ("home", str(tmp_path / ".snapshots"), False)
    with pytest.raises(ConfigError, match="does not apply"):
        SnapperSourceSide.of(str(tmp_path), None, source_snapshots="snapper:home", snapshot_folder="/snaps")
