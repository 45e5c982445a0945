"""engine.model.job_identity: one job whichever spelling names it; its name, state, lock, metrics file."""

import hashlib

import pytest

from engine.model.errors import ConfigError
from engine.model.job_identity import LEGACY_STATE_FILE_NAME, job_identity, job_key

ROOT = "/var/lib/btrfs-backup/jobs"
PULL = "ssh://root@db:22/var/lib/pg"


def identity(source_id="/home", source_path=None, **settings):
    return job_identity(source_id=source_id, source_path=source_path or source_id, state_root=ROOT, **settings)


# (source id, source path, snapshot folder as given) -> the snapshot folder
FOLDERS = [
    ("/home", "/home", "snapshot", "/home/snapshot"),
    ("/home", "/home", "snapshot/", "/home/snapshot"),
    ("/home", "/home", "./snapshot", "/home/snapshot"),
    ("/home", "/home", "snapshot//", "/home/snapshot"),
    ("/home", "/home", "./snapshot/.", "/home/snapshot"),
    ("/home", "/home", None, "/home/snapshot"),
    ("/home", "/home", "", "/home/snapshot"),
    ("/home", "/home", "/srv/snaps/home/", "/srv/snaps/home"),
    ("/home", "/home", "//srv/snaps", "/srv/snaps"),
    ("/", "/", "snapshot", "/snapshot"),
    ("/", "/", ".", "/"),
    (PULL, "/var/lib/pg", "snapshot/", "/var/lib/pg/snapshot"),
    (PULL, "/var/lib/pg", "./snapshot", "/var/lib/pg/snapshot"),
    (PULL, "/var/lib/pg", "/backup/pg/", "/backup/pg"),
]


@pytest.mark.parametrize("source_id, source_path, given, folder", FOLDERS)
def test_the_snapshot_folder_is_absolute_and_one_spelling(source_id, source_path, given, folder):
    job = identity(source_id, source_path, snapshot_folder=given)
    assert job.snapshot_folder == folder
    # every spelling of one folder is one job: the same state and lock
    plain = identity(source_id, source_path, snapshot_folder=folder)
    assert (job.state_path, job.lock_path, job.legacy_state_path) == \
        (plain.state_path, plain.lock_path, plain.legacy_state_path)


# (source id, job name given) -> the job's name
NAMES = [
    ("/home", None, "home"),
    ("/home/", None, "home"),
    ("/srv/pool/real", None, "real"),  # a source given through /srv/link: its id is the real path
    ("/", None, "root"),
    ("/data/my files", None, "my_files"),
    (PULL, None, "ssh_root@db_22_var_lib_pg"),
    ("/home", "nightly", "nightly"),
    ("/home", "web@db-1.example", "web@db-1.example"),
]


@pytest.mark.parametrize("source_id, given, name", NAMES)
def test_the_jobs_name_is_the_one_given_else_made_from_its_source(source_id, given, name):
    job = identity(source_id, "/x", job_name=given)
    assert job.name == name
    assert job.metrics_file == "btrfs_backup_%s.prom" % name


@pytest.mark.parametrize("bad", ["../x", ".hidden", "-x", "@x", "a/b", "a b", "x" * 101])
def test_a_name_outside_the_alphabet_is_refused(bad):
    with pytest.raises(ConfigError, match="job name .* is not allowed"):
        identity(job_name=bad)
    with pytest.raises(ConfigError, match="job name .* is not allowed"):
        identity().named(bad)


def test_a_bad_prefix_is_refused():
    with pytest.raises(ConfigError, match="snapshot prefix"):
        identity(prefix="../x")
    assert identity(prefix="home-").prefix == "home-"


def test_state_and_lock_are_one_folder_per_job_under_the_state_root():
    job = identity()
    assert job.state_dir == ROOT + "/" + job_key("/home", "/home/snapshot")
    assert job.state_path == job.state_dir + "/last-run.json"
    assert job.lock_path == job.state_dir + "/lock"


def test_the_name_labels_the_job_but_does_not_make_it_another():
    job = identity()
    renamed = job.named("nightly")
    assert (renamed.name, renamed.metrics_file) == ("nightly", "btrfs_backup_nightly.prom")
    assert (renamed.state_path, renamed.lock_path, renamed.snapshot_folder) == \
        (job.state_path, job.lock_path, job.snapshot_folder)
    assert job.named(None) is job and job.named("home") is job


def test_the_prefix_does_not_make_another_job():
    assert identity(prefix="a-").state_path == identity(prefix="b-").state_path


# (source id, snapshot folder): the job folder's name starts with
KEYS = {
    ("/home", "/home/snapshot"): "home_snapshot-",
    ("/", "/snapshot"): "snapshot-",
    ("/", "/"): "root-",
    (PULL, "/var/lib/pg/snapshot"): "var_lib_pg_snapshot-",
}


@pytest.mark.parametrize("source, folder", KEYS)
def test_a_jobs_folder_is_named_readably_and_uniquely(source, folder):
    key = job_key(source, folder)
    assert key.startswith(KEYS[(source, folder)]) and len(key.rsplit("-", 1)[1]) == 16
    assert "/" not in key and not key.startswith(".")
    assert job_key(source, folder) == key  # stable across runs
    others = {job_key(s, f) for s, f in KEYS if (s, f) != (source, folder)}
    assert key not in others
    assert job_key("ssh://other@db:22/var/lib/pg", folder) != key  # same folder, other host


# State folders written by earlier versions must keep their names: the digest is sha256 of
# "source\0folder", whichever sha256 implementation computed it.
KNOWN_KEYS = [
    ("/home", "/home/snapshot", "home_snapshot-2b462c995a17bdb8"),
    (PULL, "/var/lib/pg/snapshot", "var_lib_pg_snapshot-%s" % hashlib.sha256(
        ("%s\0/var/lib/pg/snapshot" % PULL).encode()).hexdigest()[:16]),
]


@pytest.mark.parametrize("source, folder, key", KNOWN_KEYS)
def test_a_jobs_folder_keeps_its_name_across_versions(source, folder, key):
    assert job_key(source, folder) == key


def test_legacy_places():
    assert identity().legacy_state_path == "/home/snapshot/" + LEGACY_STATE_FILE_NAME
    remote = identity(PULL, "/data").legacy_state_path
    assert remote.startswith("/var/lib/btrfs-backup/state/") and remote.endswith(".json")
