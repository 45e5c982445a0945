"""serve's staging verbs on a plain folder (no btrfs is needed to stage): a host stages only in
its own folder, with the chunk size and bound of the manifest serve checked; attacks are refused."""

import json
import os
import shlex
import subprocess
import sys
import tempfile

import pytest

from engine.frontends.serve import EXIT_REFUSED, Server
from engine.frontends.serve_staging import manifest_refusal
from engine.host.staging import STAGE_SENDER
from engine.model import resumable
from engine.model.resumable import Manifest

CHUNK = 1 << 20
UUID = "0" * 8 + "-1111-2222-3333-" + "4" * 12
STREAM = os.urandom(3 * CHUNK + 4321)
NAME = "20260101-000000"
KEY = resumable.staging_key(NAME, None)
MANIFEST = Manifest(NAME, UUID, None, CHUNK, len(STREAM))


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "backups" / "web1"
    (root / "data").mkdir(parents=True)
    (tmp_path / "backups" / "web2" / "data").mkdir(parents=True)
    return root


def serve(root, words, stream=b""):
    """(status, stdout, stderr) of serving the command line of `words` (quoted as a source does)."""
    line = words if isinstance(words, str) else " ".join(shlex.quote(w) for w in words)
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin.write(stream)
        stdin.seek(0)
        server = Server(str(root), btrfs_path="false", stdin=stdin, stdout=out, stderr=err, use_sudo=False,
                        log=lambda message, priority: None)
        status = server.serve(line)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


def stage(verb, folder, *words):
    return [resumable.SERVE_COMMAND, verb, str(folder)] + list(words)


def framed(stream, staged=()):
    with tempfile.NamedTemporaryFile("w") as hashes:
        hashes.write("\n".join(staged) + "\n")
        hashes.flush()
        return subprocess.run([sys.executable, "-c", STAGE_SENDER, str(CHUNK), hashes.name, resumable.DIFFERS],
                              input=stream, capture_output=True, check=True).stdout


def test_a_host_stages_lands_reads_and_removes_in_its_own_folder(root):
    folder = root / "data"
    assert serve(root, stage("start", folder, KEY), resumable.manifest_text(MANIFEST).encode())[0] == 0
    assert serve(root, stage("land", folder, KEY), framed(STREAM))[0] == 0
    status, out, _ = serve(root, stage("read", folder, KEY))
    found = json.loads(out)
    assert status == 0 and found["keys"] == [KEY] and found["complete"]
    assert resumable.parse_manifest(found["manifest"]) == MANIFEST
    assert len(resumable.parse_chunk_hashes(found["hashes"])) == 4
    staging = folder / resumable.STAGING_FOLDER / KEY
    assert b"".join((staging / resumable.chunk_name(i)).read_bytes() for i in range(4)) == STREAM
    assert serve(root, stage("remove", folder, KEY))[0] == 0
    assert not (folder / resumable.STAGING_FOLDER).exists()


def test_the_stream_is_bounded_by_the_manifest_serve_keeps(root):
    folder = root / "data"
    small = MANIFEST._replace(stream_size=CHUNK + 10)  # two chunks at most
    serve(root, stage("start", folder, KEY), resumable.manifest_text(small).encode())
    status, _, err = serve(root, stage("land", folder, KEY), framed(STREAM))
    assert status != 0 and "announced size" in err
    staging = folder / resumable.STAGING_FOLDER / KEY
    assert sum(p.stat().st_size for p in staging.iterdir() if p.name.endswith(".chunk")) <= 2 * CHUNK


@pytest.mark.parametrize("words", [
    stage("start", "/etc", KEY),                               # outside the root
    stage("start", "{root}/../web2/data", KEY),                # another host's folder, spelled with ..
    stage("read", "{root}/data", "../../web2/data/x.full"),    # a key that is a path
    stage("remove", "{root}/data", KEY, "x/y.full"),
    stage("remove", "{root}/data", ".."),
    stage("land", "{root}/data", KEY, "extra"),                # a shape no source sends
    stage("format", "{root}/data", KEY),
    stage("receive", "{root}/data", KEY, "--chroot"),
])
def test_attacks_by_path_key_or_shape_are_refused(root, words):
    words = [w.format(root=root) for w in words]
    status, _, err = serve(root, words, resumable.manifest_text(MANIFEST).encode())
    assert status == EXIT_REFUSED and "refused" in err
    assert not (root / "data" / resumable.STAGING_FOLDER).exists()
    assert not (root.parent / "web2" / "data" / resumable.STAGING_FOLDER).exists()


def test_another_hosts_staging_is_out_of_reach(root):
    other = root.parent / "web2" / "data"
    status, _, err = serve(root, stage("start", other, KEY), resumable.manifest_text(MANIFEST).encode())
    assert status == EXIT_REFUSED and "outside" in err
    assert not (other / resumable.STAGING_FOLDER).exists()


def test_a_staging_folder_that_is_a_symlink_is_refused(root, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "data" / resumable.STAGING_FOLDER)
    status, _, err = serve(root, stage("start", root / "data", KEY), resumable.manifest_text(MANIFEST).encode())
    assert status == EXIT_REFUSED and "not a staging folder" in err
    assert os.listdir(tmp_path / "elsewhere") == []


def test_staging_verbs_are_no_batch_and_only_zstd_may_pipe_into_land(root):
    line = "%s; printf '\\n__btrfs_backup_%s__ %%d\\n' $?" % (
        " ".join(shlex.quote(w) for w in stage("read", root / "data", KEY)), "0" * 32)
    assert serve(root, line + "; " + line)[0] == EXIT_REFUSED
    land = " ".join(shlex.quote(w) for w in stage("land", root / "data", KEY))
    assert serve(root, "cat | " + land)[0] == EXIT_REFUSED


@pytest.mark.parametrize("manifest, key, room, reason", [
    (MANIFEST, KEY, None, None),
    (MANIFEST, KEY, len(STREAM), None),
    (MANIFEST, resumable.staging_key("20260102-000000", None), None, "not for the staging"),
    (MANIFEST._replace(chunk_size=8 << 30), KEY, None, "outside 1 MiB to 4 GiB"),
    (MANIFEST._replace(stream_size=None), KEY, None, "needs the stream's size"),
    (MANIFEST, KEY, len(STREAM) - 1, "quota: the stream of"),  # filling the disk: refused before a byte lands
])
def test_manifest_checks(manifest, key, room, reason):
    found = manifest_refusal(manifest, key, room)
    assert (found is None) if reason is None else (reason in found)


def test_a_bad_manifest_is_refused_and_nothing_staged(root):
    status, _, err = serve(root, stage("start", root / "data", KEY), b"{not json")
    assert status == EXIT_REFUSED and "not a staging manifest" in err
    assert not (root / "data" / resumable.STAGING_FOLDER).exists()
