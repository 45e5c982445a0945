"""The role's sshd drop-in for the backup server: MaxStartups sized for the fleet's source hosts."""

import pytest

from support.role_sshd import render_sshd_dropin as render


def max_startups(text):
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("MaxStartups "), text
    return lines[0].split()[1]


@pytest.mark.parametrize("sources, override, expected", [
    pytest.param(0, "", "10:30:100", id="no-sources-is-sshd-default"),
    pytest.param(3, "", "16:30:112", id="small-fleet"),
    pytest.param(16, "", "42:30:164", id="sixteen-sources"),
    pytest.param("100", "", "210:30:500", id="count-as-text"),
    pytest.param(16, "2:100:2", "2:100:2", id="override"),
    pytest.param(16, "50", "50", id="override-start-only"),
])
def test_max_startups(sources, override, expected):
    assert max_startups(render(sources, override)) == expected


def test_the_drop_in_says_where_its_value_comes_from():
    text = render(16)
    assert text.startswith("# Ansible managed\n")
    assert "16 source hosts" in text and "btrfs_backup_server_sshd_max_startups" in text
