"""The role's server metrics unit: its ExecStart is a status command line that the engine accepts."""

import shlex
from pathlib import Path

import jinja2

from engine.frontends.status import build_status_parser, parse_job_max_ages

TEMPLATE = Path(__file__).resolve().parents[3] / "roles/btrfs_backup/templates/btrfs-backup-server-metrics.service.j2"


def render(jobs):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "# " + text
    return env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="Ansible managed", __btrfs_backup_marker="Managed by the btrfs.backup role",
        __btrfs_backup_bin="/usr/local/bin/btrfs-backup", btrfs_backup_server_root="/srv/backups",
        btrfs_backup_host_id="web1", __btrfs_backup_server_jobs=jobs, btrfs_backup_max_age="36h",
        __btrfs_backup_server_metrics_file="/var/lib/prometheus/node-exporter/btrfs_backup_server_web1.prom",
        btrfs_backup_nice=19, btrfs_backup_io_scheduling_class="idle", btrfs_backup_cpu_scheduling_policy="batch")


def test_each_job_of_the_host_gets_its_max_age():
    text = render([{"name": "home", "max_age": "1d 12h"}, {"name": "root"}])
    exec_lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(exec_lines) == 1, text
    argv = shlex.split(exec_lines[0][len("ExecStart="):])  # systemd's quoting, as the shell's here
    assert argv[:2] == ["/usr/local/bin/btrfs-backup", "status"]
    options, rest = build_status_parser().parse_known_args(argv[2:])
    assert rest == []
    assert (options.server_root, options.source_host) == ("/srv/backups", "web1")
    assert parse_job_max_ages(options.job_max_age) == {"home": 129600, "root": 129600}
    assert options.metrics_file == "/var/lib/prometheus/node-exporter/btrfs_backup_server_web1.prom"
