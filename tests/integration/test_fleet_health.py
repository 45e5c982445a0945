"""Every run leaves a record (invariant 11), for real: metrics promtool accepts and that match the
run, `btrfs-backup status` as a person and a monitoring plugin read it, verify's record, and the
btrfs_backup_info module, over real btrfs and a private sshd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from ansible_helpers import Ansible, install_collection
from cli_helpers import ok, run_cli, run_raw, ssh_args
from faults import set_readonly_keeping_received_uuid
from support.sshd import free_port
from support.trees import write_mixed_tree

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool (Debian package prometheus) not installed")


@pytest.fixture
def src(make_fs, subvolume):
    vol = subvolume(make_fs("src") / "data")
    write_mixed_tree(vol, n_small=20, small_size=4096, large_files=[], seed=5)
    return vol


@pytest.fixture
def metrics_dir(tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    return folder


def metrics(folder, job):
    """{(name, labels...): value} from the job's textfile, after promtool accepted it."""
    text = (folder / ("btrfs_backup_%s.prom" % job)).read_text()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), checked.stdout + checked.stderr
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, labels = series.split("{", 1)
        pairs = dict(item.split("=", 1) for item in labels.rstrip("}").split('",'))
        key = (name,) + tuple(pairs.get(k, "").strip('"') for k in ("destination",) if "destination" in pairs)
        values[key] = float(value)
    return values


def status(*args):
    done = run_raw("status", *args)
    return done.returncode, done.stdout, done.stderr


def test_a_run_writes_metrics_that_match_it(src, make_fs, metrics_dir, sshd):
    dest = make_fs("dst") / "backups"
    dead = "ssh://root@127.0.0.2:%d/srv/backups" % free_port("127.0.0.2")
    started = time.time()
    # With a retention policy (the role always has one) each destination's backups are counted.
    done = run_cli("--job-name", "data", "--max-age", "36h", "--metrics-dir", metrics_dir,
                   "--num-backups", "5", *ssh_args(sshd), src, dest, dead)
    assert done.code == 1, done.explain()
    sent = sum(t["bytes"] for d in done.result["destinations"] if d["id"] == str(dest) for t in d["transfers"])
    m = metrics(metrics_dir, "data")
    assert m[("btrfs_backup_last_run_success",)] == 0
    assert started - 1 <= m[("btrfs_backup_last_run_start_timestamp_seconds",)] <= time.time()
    assert m[("btrfs_backup_max_age_seconds",)] == 36 * 3600
    assert m[("btrfs_backup_last_run_sent_bytes", str(dest))] == sent > 0
    assert m[("btrfs_backup_destination_failed", str(dest))] == 0
    assert m[("btrfs_backup_destination_failed", dead)] == 1
    assert m[("btrfs_backup_backups", str(dest))] == 1
    assert m[("btrfs_backup_snapshots",)] == 1
    assert ("btrfs_backup_last_success_timestamp_seconds", dead) not in m
    assert abs(m[("btrfs_backup_newest_backup_timestamp_seconds", str(dest))] - started) < 3

    # status names the failing destination, for this job only, and a plugin line says WARNING
    code, out, _err = status(src, dest, dead)
    assert code == 1, out  # the table's exit status: 1 when a job is CRITICAL or UNKNOWN
    rows = {line.split()[1]: line for line in out.splitlines()[1:] if line.startswith("data ")}
    assert rows[str(dest)].split()[-1] == "OK" and rows[dead].split()[-1] == "CRITICAL", out
    assert "cannot reach" in rows[dead]
    code, out, _err = status("--plugin", src, dest, dead)
    assert code == 2 and out.startswith("BTRFS BACKUP CRITICAL - data: ") and dead in out, out
    code, out, _err = status("--json", src, dest, dead)
    job = json.loads(out)["jobs"][0]
    assert job["state"]["destinations"][dead]["status"] == "failed"


def test_status_turns_critical_when_the_newest_backup_is_too_old(src, make_fs):
    dest = make_fs("dst") / "backups"
    ok("--job-name", "data", src, dest)
    code, out, _err = status("--max-age", "1h", src, dest)
    assert (code, out.split(" | ")[0]) == (0, "BTRFS BACKUP OK - 1 job(s), every destination fresh"), out
    assert "'data %s age'=" % dest in out
    time.sleep(2.1)
    code, out, _err = status("--max-age", "2s", src, dest)
    assert code == 2 and out.startswith("BTRFS BACKUP CRITICAL - data: newest backup at %s is" % dest), out
    code, out, _err = status("--max-age", "soon", src, dest)
    assert code == 2 and "not a duration" in _err


def test_status_of_a_job_that_never_ran_is_unknown(src, tmp_path):
    code, out, _err = status("--plugin", src, tmp_path / "nowhere")
    assert code == 3 and out.startswith("BTRFS BACKUP UNKNOWN - "), out


def test_status_reads_the_roles_job_configs(src, make_fs, tmp_path):
    dest = make_fs("dst") / "backups"
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "home.conf").write_text("--max-age 36h\n--snapshot-folder snapshot\n%s\n%s\n" % (src, dest))
    (conf / "home.verify.conf").write_text("--no-content\n%s\n%s\n" % (src, dest))  # the role's drill: not a job
    ok("@%s" % (conf / "home.conf"), "--job-name", "home")
    code, out, _err = status("--config-dir", conf)
    newest = sorted(p.name for p in dest.iterdir())[-1]
    assert code == 0 and out.splitlines()[1].split()[:3] == ["home", str(dest), newest], out
    code, out, _err = status("--config-dir", conf, "--plugin")
    assert code == 0 and out.startswith("BTRFS BACKUP OK"), out


def test_verify_records_its_result(src, make_fs, metrics_dir):
    dest = make_fs("dst") / "backups"
    name = ok("--job-name", "data", "--metrics-dir", metrics_dir, src, dest).result["snapshot"]["name"]
    done = run_raw("verify", "--job-name", "data", "--metrics-dir", metrics_dir, src, dest)
    assert done.returncode == 0, done.stderr
    m = metrics(metrics_dir, "data")
    assert m[("btrfs_backup_last_verify_success", str(dest))] == 1
    # the backup changes behind our back: verify fails, and says so in the state and the metrics
    set_readonly_keeping_received_uuid(dest / name, False)
    (dest / name / "intruder").write_text("x")
    set_readonly_keeping_received_uuid(dest / name, True)
    done = run_raw("verify", "--job-name", "data", "--metrics-dir", metrics_dir, src, dest)
    assert done.returncode == 1
    m = metrics(metrics_dir, "data")
    assert m[("btrfs_backup_last_verify_success", str(dest))] == 0
    code, out, _err = status("--plugin", src, dest)
    assert code == 2 and "verify" in out and "only in backup: intruder" in out, out


def test_bad_record_options_change_nothing(src, tmp_path):
    for args in (["--job-name", "../x"], ["--max-age", "forever"], ["--metrics-dir", tmp_path / "missing"]):
        done = run_raw(*args, src, tmp_path / "dest")
        assert done.returncode == 2, done.stderr
        assert not (src / "snapshot").exists() and not (tmp_path / "dest").exists()


def test_the_info_module_reports_a_failing_destination(src, make_fs, sshd, tmp_path_factory, tmp_path):
    ansible = Ansible(install_collection(tmp_path_factory.mktemp("collections")), tmp_path)
    dest = make_fs("dst") / "backups"
    remote = make_fs("remote") / "backups"
    url = sshd.url(remote)
    reach = ssh_args(sshd)
    args = {"source": str(src), "destinations": [str(dest), url], "ssh_options": sshd.ssh_options()}
    ok("--job-name", "data", "--max-age", "1d", *reach, src, dest, url)
    sshd.stop()
    try:
        assert run_cli("--job-name", "data", *reach, src, dest, url).code == 1
        done = ansible.task("btrfs_backup_info", args, check=True)
        assert done.code == 0, done.explain()
        info = done.result
    finally:
        sshd.start()
    assert (info["changed"], info["fresh"], info["status"]) == (False, False, "WARNING")
    job = info["jobs"][0]
    assert (job["name"], job["max_age_seconds"], len(job["snapshots"])) == ("data", 86400, 2)
    by_id = {d["id"]: d for d in job["destinations"]}
    assert by_id[str(dest)]["status"] == "OK" and len(by_id[str(dest)]["backups"]) == 2
    assert by_id[str(dest)]["newest_backup"] == job["snapshots"][-1]["name"]
    failing = by_id[url]
    assert (failing["status"], failing["last_run_status"], failing["reachable"]) == ("WARNING", "failed", False)
    assert failing["newest_backup"] == job["snapshots"][0]["name"]  # what it had before
    assert failing["newest_backup_age"] < 600
    assert any(url in r and "failed" in r for r in info["reasons"])


def test_a_run_that_failed_at_the_source_is_a_warning_in_every_view(src, make_fs):
    """The last run failed before any destination (a corrupt lock table): the backups are still
    fresh, but no view says OK: the table's rows, the line under it, --json and the plugin agree."""
    dest = make_fs("dst") / "backups"
    ok("--job-name", "data", src, dest)
    (src / "snapshot" / ".outstanding_transfers").write_text("{not json")
    assert run_cli("--job-name", "data", src, dest).code == 1
    code, out, _err = status(src, dest)
    rows = [line for line in out.splitlines()[1:] if line.startswith("data ")]
    assert code == 0 and rows and all(row.split()[-1] == "WARNING" for row in rows), out
    assert "(failed)" in rows[0] and "WARNING: data: " in out and ".outstanding_transfers" in out, out
    code, out, _err = status("--json", src, dest)
    assert json.loads(out)["jobs"][0]["status"] == "WARNING", out
    code, out, _err = status("--plugin", src, dest)
    assert code == 1 and out.startswith("BTRFS BACKUP WARNING - data: "), out


def fake_systemctl(folder, timer_active, units_exist=True):
    """A `systemctl` first on PATH that answers `show` for the job 'home' as systemd would."""
    folder.mkdir(exist_ok=True)
    load = "loaded" if units_exist else "not-found"
    active = "active" if timer_active else "inactive"
    when = "Tue 2026-12-01 02:00:00 UTC" if timer_active else ""
    script = folder / "systemctl"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n"
                      "Id=btrfs-backup@home.timer\nLoadState=%s\nActiveState=%s\nNextElapseUSecRealtime=%s\n\n"
                      "Id=btrfs-backup@home.service\nLoadState=%s\nActiveState=inactive\n"
                      "EOF\n" % (load, active, when, load))
    script.chmod(0o755)
    return {"PATH": "%s:%s" % (folder, os.environ["PATH"])}


@pytest.mark.parametrize("timer_active, units_exist, level", [
    (True, True, "OK"),       # the role's timer runs the job
    (False, True, "WARNING"),  # stopped: no next run
    (False, False, "OK"),     # no unit at all: run by hand or by cron
])
def test_a_job_whose_timer_is_stopped_has_no_next_run(src, make_fs, tmp_path, timer_active, units_exist, level):
    dest = make_fs("dst") / "backups"
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "home.conf").write_text("--job-name home\n--max-age 36h\n%s\n%s\n" % (src, dest))
    ok("@%s" % (conf / "home.conf"))
    env = fake_systemctl(tmp_path / "bin", timer_active, units_exist)
    done = run_raw("status", "--config-dir", conf, env=env)
    row = done.stdout.splitlines()[1]
    assert row.split()[-1] == level, done.stdout
    assert ("2026-12-01 02:00:00" in row) == timer_active, done.stdout
    reason = "WARNING: home: no next run: the timer btrfs-backup@home.timer is not active"
    assert (reason in done.stdout) == (level == "WARNING"), done.stdout
    done = run_raw("status", "--config-dir", conf, "--plugin", env=env)
    assert (done.returncode, done.stdout.split(" - ")[0]) == (LEVELS[level], "BTRFS BACKUP " + level), done.stdout
    done = run_raw("status", "--config-dir", conf, "--json", env=env)
    job = json.loads(done.stdout)["jobs"][0]
    assert (job["status"], job["next_run"] is not None) == (level, timer_active), done.stdout


LEVELS = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def test_write_metrics_brings_a_changed_max_age_into_the_metrics_without_a_run(src, make_fs, tmp_path,
                                                                               metrics_dir):
    """The role changed a job's max_age: `status --write-metrics` (its handler) rewrites the job's
    metrics from its recorded state with the new value; nothing else changes."""
    dest = make_fs("dst") / "backups"
    conf = tmp_path / "etc"
    conf.mkdir()
    job_conf = conf / "home.conf"
    lines = "--job-name home\n--metrics-dir %s\n%s\n%s\n" % (metrics_dir, src, dest)
    job_conf.write_text("--max-age 36h\n" + lines)
    ok("@%s" % job_conf)
    before = metrics(metrics_dir, "home")
    assert before[("btrfs_backup_max_age_seconds",)] == 36 * 3600
    snapshots = sorted(p.name for p in (src / "snapshot").iterdir())

    job_conf.write_text("--max-age 2d\n" + lines)
    done = run_raw("status", "--config-dir", conf, "--write-metrics")
    assert done.returncode == 0 and "btrfs_backup_home.prom" in done.stdout, done.stdout + done.stderr
    after = metrics(metrics_dir, "home")
    assert after == {**before, ("btrfs_backup_max_age_seconds",): 2 * 86400}
    assert sorted(p.name for p in (src / "snapshot").iterdir()) == snapshots  # no run

    # A job that never ran gets its configuration's figure; a missing folder is an error.
    (conf / "new.conf").write_text("--job-name new\n--max-age 1d\n--snapshot-folder new\n--metrics-dir %s\n%s\n%s\n"
                                   % (metrics_dir, src, dest))
    (conf / "gone.conf").write_text("--job-name gone\n--metrics-dir %s\n%s\n%s\n"
                                    % (tmp_path / "missing", src, dest))
    done = run_raw("status", "--config-dir", conf, "--write-metrics")
    assert done.returncode == 1 and "metrics directory %s does not exist" % (tmp_path / "missing") in done.stderr
    assert metrics(metrics_dir, "new") == {("btrfs_backup_max_age_seconds",): 86400}
