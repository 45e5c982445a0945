"""engine.run.archive_restore: which job's archives a repository is read for, and bad input refused
before anything is run (the effects are in tests/integration/test_archives.py)."""

import pytest

from engine.host.runner import CommandResult
from engine.model.archives import ArchiveLabel
from engine.model.errors import BackupError, ConfigError
from engine.run.archive_restore import open_store, restore_archive

U1, U2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
LISTING = "\0".join(["home-a\tweb1\t" + ArchiveLabel("home", "a", U1, None).comment(),
                     "web-a\tweb1\t" + ArchiveLabel("web", "a", U2, None).comment()])


class Runner:
    def __init__(self, stdout):
        self.stdout, self.argvs = stdout, []

    def run(self, argv, input_text=None):
        self.argvs.append(argv)
        return CommandResult(argv, 0, self.stdout, "")


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "key"
    path.write_text("secret\n")
    return str(path)


def test_a_repository_of_several_jobs_needs_the_jobs_name(key):
    with pytest.raises(ConfigError, match=r"several jobs \(home, web\): give --job-name"):
        open_store("borg:/b", key_file=key, runner=Runner(LISTING))
    _store, by_uuid, by_name = open_store("borg:/b", key_file=key, job="web", runner=Runner(LISTING))
    assert list(by_uuid) == [U2] and by_name["a"].ref == "web-a"


def test_a_job_the_repository_does_not_hold_is_named(key):
    with pytest.raises(BackupError, match="holds no archive of job mail"):
        open_store("borg:/b", key_file=key, job="mail", runner=Runner(LISTING))


def test_one_jobs_repository_needs_no_name(key):
    store, _by_uuid, by_name = open_store("restic:/r", key_file=key, runner=Runner("[]"))
    assert by_name == {} and store.settings.job == ""


@pytest.mark.parametrize("target, message", [("relative/t", "must be an absolute path"), ("/a/../t", "'..'")])
def test_a_bad_target_runs_nothing(key, target, message):
    runner = Runner(LISTING)
    with pytest.raises(ConfigError, match=message):
        restore_archive("borg:/b", target, key_file=key, job="home", runner=runner)
    assert runner.argvs == []


def test_no_key_file_runs_nothing():
    runner = Runner(LISTING)
    with pytest.raises(ConfigError, match="--archive-key-file"):
        restore_archive("borg:/b", "/t", key_file="", job="home", runner=runner)
    assert runner.argvs == []


U3 = "33333333-3333-3333-3333-333333333333"


def test_of_a_job_several_hosts_stored_a_restore_reads_one_hosts_archives(key, monkeypatch):
    # A job of one name at two hosts, in one repository: each host's archives are its own chain.
    listing = LISTING + "\0" + "home-b\tweb2\t" + ArchiveLabel("home", "b", U3, None).comment()
    monkeypatch.setattr("os.uname", lambda: type("U", (), {"nodename": "web2"})())
    _store, by_uuid, by_name = open_store("borg:/b", key_file=key, job="home", runner=Runner(listing))
    assert list(by_name) == ["b"] and list(by_uuid) == [U3]  # this host's
    _store, _by_uuid, by_name = open_store("borg:/b", key_file=key, job="home", host="web1", runner=Runner(listing))
    assert list(by_name) == ["a"]
    monkeypatch.setattr("os.uname", lambda: type("U", (), {"nodename": "vault"})())
    with pytest.raises(ConfigError, match=r"borg:/b: the job's archives were stored at several hosts \(web1, web2\): "
                                          "give --archive-host"):
        open_store("borg:/b", key_file=key, job="home", runner=Runner(listing))
    with pytest.raises(ConfigError, match="no archive of the job was stored at host web3"):
        open_store("borg:/b", key_file=key, job="home", host="web3", runner=Runner(listing))
