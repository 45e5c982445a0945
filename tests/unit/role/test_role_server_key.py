"""The role's authorized_keys line for a source host on the backup server: one line, serve's flags, the receive slots."""

from pathlib import Path

import jinja2
import pytest
import yaml

TASKS = Path(__file__).resolve().parents[3] / "roles/btrfs_backup/tasks/server_access.yml"
KEY = "ssh-ed25519 AAAAC3Nza btrfs-backup@web1"
SLOTS = "/var/lib/btrfs-backup-serve/receive-slots"


def key_line(**overrides):
    """The task's `line`, rendered as Ansible renders it (its filters stood in for)."""
    task = next(t for t in yaml.safe_load(TASKS.read_text()) if t["name"].startswith("Authorise this host's key"))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(bool=lambda v: str(v).lower() in ("true", "1", "yes"), b64decode=lambda v: v)
    values = dict(__btrfs_backup_bin="/usr/local/bin/btrfs-backup", __btrfs_backup_append_only=True,
                  btrfs_backup_server_quota="", __btrfs_backup_filesystem={"rc": 1}, __btrfs_backup_host_root="/srv/backups/web1",
                  btrfs_backup_server_btrfs_command="/usr/bin/btrfs", __btrfs_backup_clock_skew="15m\n",
                  __btrfs_backup_serve_metrics="/var/lib/btrfs-backup-serve/refusals.prom",
                  __btrfs_backup_public_key={"content": KEY}, __btrfs_backup_receive_slots="4",
                  __btrfs_backup_receive_slot_folder=SLOTS, __btrfs_backup_receive_slot_wait="1h\n")
    values.update(overrides)
    return env.from_string(task["ansible.builtin.lineinfile"]["line"]).render(**values)


@pytest.mark.parametrize("slots, wait, flags", [
    pytest.param("4", "1h\n", " --receive-slots 4 --slot-folder %s --slot-wait 1h" % SLOTS, id="default"),
    pytest.param("1", "30min", " --receive-slots 1 --slot-folder %s --slot-wait 30min" % SLOTS, id="one-slot"),
    pytest.param("0", "1h", "", id="no-limit"),
])
def test_the_key_gets_the_servers_receive_slots_on_one_line(slots, wait, flags):
    line = key_line(__btrfs_backup_receive_slots=slots, __btrfs_backup_receive_slot_wait=wait)
    assert "\n" not in line
    assert line == ('restrict,command="/usr/local/bin/btrfs-backup serve --append-only --root /srv/backups/web1 '
                    '--btrfs /usr/bin/btrfs --clock-skew 15m --metrics-file /var/lib/btrfs-backup-serve/refusals.prom'
                    '%s" %s' % (flags, KEY))
