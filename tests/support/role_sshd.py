"""The role's sshd drop-in for a backup server, rendered as the role renders it (plain jinja2)."""

from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).resolve().parents[2] / "roles/btrfs_backup/templates/sshd_fleet.conf.j2"


def render_sshd_dropin(sources, override: str = "") -> str:
    """The drop-in for a fleet of `sources` source hosts (`comment` stands in for Ansible's filter)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "# " + text
    return env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="Ansible managed", __btrfs_backup_marker="Managed by the btrfs.backup role",
        __btrfs_backup_fleet_sources=sources, btrfs_backup_server_sshd_max_startups=override)
