"""The role's archive destinations: packages for the jobs' stores, each job's passphrase and store
environment in root-only files that its config names and no output shows, and the append-only
borg and restic REST servers' forced command and unit."""

import shlex
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from support.role_job_config import render_job_config
from support.role_templates import render_role_template as render

try:  # ansible-core 2.19 templates only what is marked trusted
    from ansible.template import trust_as_template
except ImportError:  # pragma: no cover - older ansible-core trusts every string
    def trust_as_template(value):
        return value

ROLE = Path(__file__).resolve().parents[3] / "roles/btrfs_backup"
SPEC = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
JOB_KEYS = SPEC["btrfs_backup_jobs"]["options"]
JOB = {"name": "home", "source": "/home", "server": False}


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def role_value(expression: str, **variables):
    """*expression* templated as Ansible does with the role's defaults and vars and *variables*."""
    values = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    values.update(yaml.safe_load((ROLE / "vars/main.yml").read_text()))
    values = _trusted(values)
    values.update(groups={"all": ["src1"]}, inventory_hostname="src1", hostvars={}, role_path=str(ROLE))
    values.update(variables)
    return Templar(loader=DataLoader(), variables=values).template(trust_as_template(expression))


# -- packages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("destinations, wanted, unwanted", [
    pytest.param(["/mnt/backup"], [], ["borgbackup", "restic"], id="btrfs-only"),
    pytest.param(["borg:/mnt/usb/borg"], ["borgbackup"], ["restic"], id="borg-local"),
    pytest.param(["borg+ssh://borg@nas:2222/srv/borg/repos/web1"], ["borgbackup"], ["restic"], id="borg-ssh"),
    pytest.param(["restic:s3:http://127.0.0.1:9000/bucket"], ["restic"], ["borgbackup"], id="restic-s3"),
    pytest.param(["/mnt/b", "borg:/b", "restic:rest:http://nas:8000/web1"], ["borgbackup", "restic"], [], id="both"),
    pytest.param(["/srv/borgmatic", "/srv/restic:x"], [], ["borgbackup", "restic"], id="folders-named-like-stores"),
])
def test_a_job_with_an_archive_destination_gets_its_store_installed(destinations, wanted, unwanted):
    jobs = [dict(JOB, destinations=destinations)]
    packages = role_value("{{ __btrfs_backup_source_packages }}", btrfs_backup_jobs=jobs)
    assert set(wanted) <= set(packages)
    assert not set(unwanted) & set(packages)


def test_a_host_that_is_no_source_gets_no_store():
    jobs = [dict(JOB, destinations=["borg:/b"])]
    assert role_value("{{ __btrfs_backup_archive_destinations }}", btrfs_backup_jobs=jobs,
                      btrfs_backup_source_enabled=False) == []


# -- each job's passphrase and environment --------------------------------------------------------

@pytest.mark.parametrize("keys, expected", [
    pytest.param({}, [], id="none"),
    pytest.param({"archive_key": "pass phrase"}, ["--archive-key-file /etc/btrfs-backup/archive/home.key"], id="key"),
    pytest.param({"archive_key_file": "/root/borg.pass"}, ["--archive-key-file /root/borg.pass"], id="key-file"),
    pytest.param({"archive_env": {"AWS_ACCESS_KEY_ID": "a"}}, ["--archive-env-file /etc/btrfs-backup/archive/home.env"],
                 id="env"),
    pytest.param({"archive_env_file": "/root/s3.env"}, ["--archive-env-file /root/s3.env"], id="env-file"),
    pytest.param({"archive_full_every": 14}, ["--archive-full-every 14"], id="full-every"),
])
def test_the_job_config_names_the_files_never_the_secrets(keys, expected):
    text = render_job_config(dict(JOB, **keys))
    assert [line for line in text.splitlines() if line.startswith("--archive-")] == expected
    assert "pass phrase" not in text and "AWS_ACCESS_KEY_ID" not in text


def test_the_role_writes_the_files_that_the_job_configs_name():
    jobs = [dict(JOB, archive_key="k", archive_env={"A": "1"}), dict(JOB, name="web", archive_key_file="/k")]
    assert role_value("{{ __btrfs_backup_archive_files }}", btrfs_backup_jobs=jobs) == [
        "/etc/btrfs-backup/archive/home.key", "/etc/btrfs-backup/archive/home.env"]


def _tasks(name):
    found = []

    def walk(tasks):
        for task in tasks:
            found.append(task)
            walk(task.get("block", []))
    walk(yaml.safe_load((ROLE / "tasks" / name).read_text()))
    return found


NAMES = "{{ __btrfs_backup_active_jobs | map(attribute='name') | list }}"
SECRET_WORDS = ("archive_key", "archive_env", "restic_server_password")


@pytest.mark.parametrize("tasks_file", ["archives.yml", "archive_servers.yml", "preflight.yml"])
def test_every_task_that_touches_a_secret_hides_it(tasks_file):
    touching = [task for task in _tasks(tasks_file)
                if "block" not in task and any(word in yaml.safe_dump(task) for word in SECRET_WORDS)]
    for task in touching:
        module = next(key for key in task if key.startswith("ansible.builtin."))
        if module == "ansible.builtin.assert":
            # A check shows its expression, never a value; one per job loops over the names only.
            assert task.get("loop", NAMES) == NAMES, task["name"]
            continue
        assert task.get("no_log") is True and task.get("diff") is False, task["name"]
        assert task[module]["mode"] == "0600", task["name"]
    assert touching or tasks_file == "archive_servers.yml"


def test_the_secret_variables_are_no_log_in_the_argument_specs():
    assert JOB_KEYS["archive_key"]["no_log"] is True
    assert JOB_KEYS["archive_env"]["no_log"] is True
    assert SPEC["btrfs_backup_restic_server_password"]["no_log"] is True


def test_passphrases_and_environments_of_removed_jobs_go():
    tasks = {task["name"]: task for task in _tasks("archives.yml")}
    removal = tasks["Remove the passphrases and environments that no job gives any more"]
    assert "difference(__btrfs_backup_archive_files)" in removal["loop"]


# -- the append-only servers ----------------------------------------------------------------------

def test_each_borg_key_is_forced_to_serve_its_own_repository():
    text = render("borg_authorized_keys.j2", btrfs_backup_borg_server_repositories=[
        {"name": "web1", "keys": ["ssh-ed25519 AAAAC3Nza1 root@web1", "ssh-ed25519 AAAAC3Nza2 root@web1b"]},
        {"name": "db1", "keys": ["ssh-ed25519 AAAAC3Nza3 root@db1"], "append_only": False},
    ])
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        'restrict,command="borg serve --append-only --restrict-to-repository /srv/borg/repos/web1" '
        'ssh-ed25519 AAAAC3Nza1 root@web1',
        'restrict,command="borg serve --append-only --restrict-to-repository /srv/borg/repos/web1" '
        'ssh-ed25519 AAAAC3Nza2 root@web1b',
        'restrict,command="borg serve --restrict-to-repository /srv/borg/repos/db1" ssh-ed25519 AAAAC3Nza3 root@db1',
    ]


def _exec_start(text):
    lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, text
    return shlex.split(lines[0][len("ExecStart="):])


def test_the_rest_server_is_append_only_and_its_password_stays_off_its_command_line():
    text = render("btrfs-backup-restic-rest.service.j2", btrfs_backup_restic_server_password="s3cr3t",
                  btrfs_backup_restic_server_username="web1")
    assert _exec_start(text) == ["/usr/bin/rclone", "--config", "/dev/null", "serve", "restic", "--addr",
                                 "127.0.0.1:8000", "--append-only", "/srv/restic"]
    assert "s3cr3t" not in text and "web1" not in text
    assert "EnvironmentFile=/etc/btrfs-backup/restic-rest.env" in text.splitlines()
    assert "ReadWritePaths=/srv/restic" in text.splitlines()


def test_the_rest_server_serves_tls_when_given_a_certificate():
    text = render("btrfs-backup-restic-rest.service.j2", btrfs_backup_restic_server_append_only=False,
                  btrfs_backup_restic_server_tls_cert="/etc/ssl/rest.pem", btrfs_backup_restic_server_tls_key="/k.pem",
                  btrfs_backup_restic_server_listen=":8443")
    assert _exec_start(text)[5:] == ["--addr", ":8443", "--cert", "/etc/ssl/rest.pem", "--key", "/k.pem", "/srv/restic"]


# -- restore drills ----------------------------------------------------------------------------------

def _drill_options(job, folder):
    from engine.frontends.argfiles import expand_argfiles
    from engine.frontends.cli import build_verify_parser

    text = render("verify.conf.j2", item=job, __btrfs_backup_bin="/usr/local/bin/btrfs-backup",
                  __btrfs_backup_metrics_dir="", __btrfs_backup_key="/etc/btrfs-backup/ssh/id_ed25519",
                  __btrfs_backup_known_hosts="/etc/btrfs-backup/ssh/known_hosts",
                  __btrfs_backup_server_url="ssh://btrfs-backup@nas:22/srv/backups/web1")
    path = folder / "drill.verify.conf"
    path.write_text(text)
    return build_verify_parser().parse_args(expand_argfiles(["@%s" % path])), text


def test_a_drill_of_an_archive_destination_reads_it_with_the_jobs_passphrase_and_environment(tmp_path):
    options, text = _drill_options(dict(JOB, destinations=["restic:s3:https://s3.example.com/web1"],
                                        archive_key="pass phrase", archive_env={"AWS_SECRET_ACCESS_KEY": "s3cr3t"}), tmp_path)
    assert (options.archive_key_file, options.archive_env_file) == (
        "/etc/btrfs-backup/archive/home.key", "/etc/btrfs-backup/archive/home.env")
    assert "pass phrase" not in text and "s3cr3t" not in text


def test_a_drill_gets_the_files_a_job_names_itself(tmp_path):
    options, _ = _drill_options(dict(JOB, destinations=["borg:/mnt/usb/borg"], archive_key_file="/root/borg.pass"), tmp_path)
    assert (options.archive_key_file, options.archive_env_file) == ("/root/borg.pass", "")


def test_a_drill_checks_the_archive_destination_it_is_told_to(tmp_path):
    repository = "borg+ssh://borg@vault/srv/borg/repos/web1"
    options, text = _drill_options(dict(JOB, server=True, destinations=["/mnt/usb", repository],
                                        verify_destination=repository, archive_key_file="/root/borg.pass"), tmp_path)
    assert (options.source, options.backups, options.no_content) == ("/home", repository, False)
    assert "IdentityFile=/etc/btrfs-backup/ssh/id_ed25519" not in text


@pytest.mark.parametrize("job, backups, no_content", [
    pytest.param(dict(JOB, server=True), "ssh://btrfs-backup@nas:22/srv/backups/web1/home", True, id="the-server"),
    pytest.param(dict(JOB, destinations=["restic:/mnt/usb/restic", "/mnt/b"]), "restic:/mnt/usb/restic", False,
                 id="the-first-destination"),
])
def test_a_drill_checks_the_server_or_else_the_first_destination_by_default(job, backups, no_content, tmp_path):
    options, _ = _drill_options(job, tmp_path)
    assert (options.backups, options.no_content) == (backups, no_content)


ARCHIVE_CHECK = "Check each job's archive passphrase, store environment and drilled destination"


@pytest.mark.parametrize("job, passes", [
    pytest.param(dict(JOB, destinations=["borg:/b"], archive_key="one line", archive_env={"BORG_RSH": "ssh -i /k"}),
                 True, id="good"),
    pytest.param(dict(JOB, archive_key="k", archive_key_file="/k"), False, id="key-and-key-file"),
    pytest.param(dict(JOB, archive_env={"A": "1"}, archive_env_file="/e"), False, id="env-and-env-file"),
    pytest.param(dict(JOB, archive_key="two\nlines"), False, id="key-of-two-lines"),
    pytest.param(dict(JOB, archive_key=["a", "list"]), False, id="key-not-text"),
    pytest.param(dict(JOB, archive_env={"aws_key": "x"}), False, id="lower-case-name"),
    pytest.param(dict(JOB, archive_env={"A": "x\ny"}), False, id="value-of-two-lines"),
    pytest.param(dict(JOB, destinations=["borg:/b"], verify_destination="borg:/b"), True, id="drill-of-a-destination"),
    pytest.param(dict(JOB, destinations=["borg:/b"], verify_destination="borg:/c"), False, id="drill-of-another"),
])
def test_the_archive_settings_check(job, passes):
    task = {t["name"]: t for t in _tasks("preflight.yml")}[ARCHIVE_CHECK]
    conditions = [trust_as_template("{{ %s }}" % condition) for condition in task["ansible.builtin.assert"]["that"]]
    job_var = _trusted(task["vars"]["__btrfs_backup_job"])
    results = [role_value(condition, btrfs_backup_jobs=[job], item=job["name"], __btrfs_backup_job=job_var)
               for condition in conditions]
    assert all(results) == passes, results
