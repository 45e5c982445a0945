"""A job's config file rendered as the role renders it (plain jinja2), and read back as the engine reads it."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

from engine.frontends import cli
from engine.frontends.argfiles import expand_argfiles
from engine.frontends.job_options import build_parser
from engine.host import recording

ROLE = Path(__file__).resolve().parents[2] / "roles/btrfs_backup"
TEMPLATE = ROLE / "templates/job.conf.j2"

# The role's internal variables that the template uses, as vars/main.yml makes them for a host.
_INTERNAL = {
    "ansible_managed": "Ansible managed",
    "__btrfs_backup_marker": "Managed by the btrfs.backup role",
    "__btrfs_backup_bin": "/usr/local/bin/btrfs-backup",
    "__btrfs_backup_metrics_dir": "",
    "__btrfs_backup_key": "/etc/btrfs-backup/ssh/id_ed25519",
    "__btrfs_backup_known_hosts": "/etc/btrfs-backup/ssh/known_hosts",
    "__btrfs_backup_server_url": "ssh://btrfs-backup@nas:22/srv/backups/web1",
}


def render_job_config(job: dict) -> str:
    """The config file of `job` (an item of btrfs_backup_jobs) with the role's defaults."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "# " + text
    variables = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    return env.from_string(TEMPLATE.read_text()).render(dict(variables, item=job, **_INTERNAL))


def job_config_of(job: dict, folder: Path):
    """The JobConfig that a timer's run of `job` gets: btrfs-backup @NAME.conf."""
    path = folder / ("%s.conf" % job["name"])
    path.write_text(render_job_config(job))
    parser = build_parser()
    recording.add_options(parser)
    return cli.config_from_args(parser.parse_args(expand_argfiles(["@%s" % path])))
