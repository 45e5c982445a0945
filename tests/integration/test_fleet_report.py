"""The fleet_report playbook for real: btrfs_backup_info on several hosts (local connections, each
with its own job configs and real btrfs), one HTML page that headless Chromium renders, naming every
host and marking the one whose backup fails."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from ansible_helpers import VENV_BIN, install_collection
from cli_helpers import REPO, run_raw
from support.sshd import free_port

CHROMIUM = shutil.which("chromium")
SCREENSHOT = os.environ.get("FLEET_REPORT_SCREENSHOT")  # e.g. docs/images/fleet-report.png


@pytest.fixture(autouse=True)
def require_chromium():
    """scripts/test.sh installs chromium: in CI its absence fails, elsewhere it skips."""
    if CHROMIUM is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("chromium (Debian package) not installed")


@pytest.fixture
def fleet(make_fs, subvolume, tmp_path):
    """Four 'hosts': web1 (two jobs) and web2 back up fine, db1's destination is unreachable,
    backup0 has no backup job."""
    fs = make_fs("fleet", size="1G")
    backup_disk = make_fs("fleet-backups", size="1G")  # a backup is somewhere else (rule 8)
    hosts = {}
    for host in ("web1", "web2", "db1"):
        conf = tmp_path / host / "etc"
        conf.mkdir(parents=True)
        src = subvolume(fs / host)
        (src / "file").write_text(host)
        dest = "ssh://root@127.0.0.2:%d/srv/backups" % free_port("127.0.0.2") if host == "db1" \
            else str(backup_disk / ("backups-" + host))
        (conf / "data.conf").write_text("--max-age 1d\n--num-backups 5\n--ssh-opt ConnectTimeout=3\n%s\n%s\n"
                                        % (src, dest))
        for _ in range(2):
            run_raw("--job-name", "data", "@%s" % (conf / "data.conf"))
        hosts[host] = conf
    logs = subvolume(fs / "web1-logs")
    (hosts["web1"] / "logs.conf").write_text("--max-age 1d\n--num-backups 5\n%s\n%s\n"
                                             % (logs, backup_disk / "backups-web1-logs"))
    run_raw("--job-name", "logs", "@%s" % (hosts["web1"] / "logs.conf"))
    hosts["backup0"] = tmp_path / "backup0" / "etc"
    hosts["backup0"].mkdir(parents=True)
    return hosts


def test_the_report_names_every_host_and_marks_the_failing_one(fleet, tmp_path, tmp_path_factory):
    collections = install_collection(tmp_path_factory.mktemp("collections"))
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {
        host: {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
               "fleet_report_config_dir": str(conf)} for host, conf in fleet.items()}}}))
    report = tmp_path / "report.html"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "btrfs.backup.fleet_report",
                           "-e", "fleet_report_path=%s" % report], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Hosts are counted as hosts, jobs as jobs.
    assert "hosts: 4; OK: 2 (web1, web2); CRITICAL: 1 (db1); NONE: 1 (backup0)" in done.stdout, done.stdout[-3000:]
    assert "jobs: 4; OK: 3; CRITICAL: 1" in done.stdout, done.stdout[-3000:]

    page = report.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything"
    rows = re.findall(r'data-host="([^"]+)" data-status="([A-Z]+)"', page)
    assert sorted(rows) == [("backup0", "NONE"), ("db1", "CRITICAL"),  # never had a backup
                            ("web1", "OK"), ("web1", "OK"), ("web2", "OK")]
    assert "4 hosts,\n4 jobs;" in page
    assert "last run failed" in html.unescape(page)

    # What a person sees: the browser renders it (text dump and a screenshot).
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
    shown = subprocess.run([CHROMIUM, *flags, "--dump-dom", report.as_uri()], capture_output=True,
                           text=True, timeout=120)
    assert all(host in shown.stdout for host in fleet)
    assert re.search(r"data-host=\"db1\" data-status=\"CRITICAL\"", shown.stdout)
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1400,420", "--screenshot=%s" % shot, report.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOT:
        shutil.copy(shot, REPO / SCREENSHOT)
