"""A template of the role rendered as the role renders it (plain jinja2, Ansible's filters that the
template uses stood in for), with the role's defaults and the given variables."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles/btrfs_backup"

# The role's internal variables that templates use, as vars/main.yml makes them with the defaults.
INTERNAL = {
    "ansible_managed": "Ansible managed",
    "__btrfs_backup_marker": "Managed by the btrfs.backup role",
    "__btrfs_backup_borg_repos_dir": "/srv/borg/repos",
    "__btrfs_backup_restic_env_file": "/etc/btrfs-backup/restic-rest.env",
}


def _bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("yes", "true", "1", "on")


def render_role_template(name: str, **variables) -> str:
    """templates/NAME rendered with the role's defaults, INTERNAL and *variables*."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "# " + text
    env.filters["bool"] = _bool
    values = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    values.update(INTERNAL)
    values.update(variables)
    return env.from_string((ROLE / "templates" / name).read_text()).render(values)
