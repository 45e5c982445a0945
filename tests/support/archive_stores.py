"""Archive stores on loopback for real-store tests: borg behind an append-only forced command over
sshd, restic's REST protocol from ``rclone serve restic --append-only``, and an S3 API from moto."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .procs import NotListening, ServerProcess, wait_listening
from .sshd import Sshd, free_port

BORG_TOOLS = ("borg",)
RESTIC_TOOLS = ("restic",)
REST_SERVER_TOOLS = ("restic", "rclone")
S3_SERVER_TOOLS = ("restic",)

# The repository passphrase every fixture's repository is made with: a test greps for it in logs
# and results, so it is long and appears nowhere by chance.
PASSPHRASE = "archive-passphrase-7f3c9e1d-never-in-a-log"
S3_ACCESS_KEY = "archive-s3-access-4b2d"
S3_SECRET_KEY = "archive-s3-secret-9a61e0c5-never-in-a-log"
REST_USER = "archiver"
REST_PASSWORD = "archive-rest-password-5c0f-never-in-a-log"


class StoreError(RuntimeError):
    """A store's server did not come up (message includes its log tail)."""


def write_secret(path: Path, text: str) -> Path:
    """Write *text* to *path* readable by its owner only (how a key or environment file is kept)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def write_env_file(path: Path, variables: Dict[str, str]) -> Path:
    """A KEY=VALUE file, one line each, mode 0600 (the ``archive_env_file`` format)."""
    return write_secret(path, "".join(f"{key}={value}\n" for key, value in variables.items()))


class _Server(ServerProcess):
    """A server process of our own on a loopback port, stopped by its PID."""

    def __init__(self, host: str = "127.0.0.1", start_timeout: float = 30.0) -> None:
        super().__init__()
        self.host = host
        self.port: Optional[int] = None
        self.start_timeout = start_timeout

    def argv(self) -> List[str]:
        raise NotImplementedError

    def start(self):
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        try:
            for attempt in range(3):
                # A picked port can be taken before the server binds it: pick again.
                self.port = free_port(self.host)
                self._launch(self.argv())
                try:
                    self._wait_ready()
                    return self
                except StoreError:
                    self._terminate()
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        try:
            wait_listening(self.process, self.host, self.port, self.start_timeout)
        except NotListening as err:
            raise StoreError(f"{self.name} {err}:\n{self.log_tail()}") from None


class RcloneRestServer(_Server):
    """``rclone serve restic`` on loopback: restic's REST protocol, append-only unless told,
    with a user and password (restic 0.14 reads REST credentials from the repository URL)."""

    name = "rclone-rest"

    def __init__(self, append_only: bool = True, user: str = REST_USER, password: str = REST_PASSWORD,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.append_only = append_only
        self.user = user
        self.password = password

    @property
    def data_dir(self) -> Path:
        """Where the repositories' files are (what the server's owner sees)."""
        return self.workdir / "data"

    def argv(self) -> List[str]:
        config = self.workdir / "rclone.conf"
        config.touch()  # an empty configuration of its own: never the user's remotes
        self.data_dir.mkdir(exist_ok=True)
        argv = ["rclone", "serve", "restic", "--config", str(config), "--addr", f"{self.host}:{self.port}",
                "--user", self.user, "--pass", self.password]
        if self.append_only:
            argv.append("--append-only")
        return argv + [str(self.data_dir)]

    def repository(self, name: str) -> str:
        """restic's repository string for the repository *name* on this server, with the credentials
        in it (how restic 0.14 itself takes them)."""
        user = urllib.parse.quote(self.user, safe="")
        password = urllib.parse.quote(self.password, safe="")
        return f"rest:http://{user}:{password}@{self.host}:{self.port}/{name}"

    def plain_repository(self, name: str) -> str:
        """The repository string without credentials: what a destination gives."""
        return f"rest:http://{self.host}:{self.port}/{name}"

    def environment(self) -> Dict[str, str]:
        """The credentials as an ``archive_env_file`` gives them."""
        return {"RESTIC_REST_USERNAME": self.user, "RESTIC_REST_PASSWORD": self.password}

    def delete_status(self, name: str, kind: str, blob_id: str) -> int:
        """The HTTP status of a DELETE of one file of repository *name* (403 when append-only)."""
        request = urllib.request.Request(
            f"http://{self.host}:{self.port}/{name}/{kind}/{blob_id}", method="DELETE")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


class MotoS3Server(_Server):
    """moto's S3 API on loopback (``python -m moto.server``), for ``restic:s3:http://…/bucket``."""

    name = "moto-s3"

    def argv(self) -> List[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def repository(self, bucket: str) -> str:
        """restic's repository string for *bucket* (restic creates the bucket on init)."""
        return f"s3:http://{self.host}:{self.port}/{bucket}"

    def environment(self) -> Dict[str, str]:
        """The credentials a restic client gives the S3 API (what an ``archive_env_file`` holds)."""
        return {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}


class BorgSshServer:
    """A borg server over a private sshd on loopback: each repository made by :meth:`repository`
    has its own client key, forced by authorized_keys to
    ``borg serve --append-only --restrict-to-repository PATH`` with ``restrict``, as the role sets
    up on a backup server. The sshd's own key stays unrestricted for the test's inspection."""

    def __init__(self, host: str = "127.0.0.6") -> None:
        self.sshd = Sshd(host=host)
        self.repositories: Dict[str, Path] = {}

    def __enter__(self) -> "BorgSshServer":
        self.sshd.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.sshd.stop()

    @property
    def workdir(self) -> Path:
        return self.sshd.workdir

    def repository(self, name: str, passphrase: str = PASSPHRASE, encryption: str = "repokey-blake2",
                   append_only: bool = True) -> Path:
        """Make an encrypted repository *name* on the server and a client key for it alone; return its path."""
        path = self.workdir / "repos" / name
        path.parent.mkdir(exist_ok=True)
        # The repository is made on the server by its owner, as the role does; clients only serve.
        env = dict(os.environ, BORG_PASSPHRASE=passphrase, BORG_BASE_DIR=str(self.workdir / "server-borg"))
        done = subprocess.run(["borg", "init", "--encryption", encryption, str(path)], env=env, check=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise StoreError(f"borg init {path} failed: {done.stdout}")
        key = self.identity_file(name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"borg-{name}", "-f", str(key)],
                       check=True, stdout=subprocess.DEVNULL)
        serve = ["borg", "serve", "--restrict-to-repository", str(path)]
        if append_only:
            serve.insert(2, "--append-only")
        line = f'restrict,command="{shlex.join(serve)}" {key.with_suffix(".pub").read_text().strip()}\n'
        with open(self.sshd.workdir / "authorized_keys", "a") as handle:
            handle.write(line)
        self.repositories[name] = path
        return path

    def identity_file(self, name: str) -> Path:
        """The client key that may reach repository *name* only."""
        return self.workdir / f"borg_{name}_ed25519"

    def url(self, name: str) -> str:
        """borg's ``ssh://user@host:port/PATH`` for repository *name*."""
        return self.sshd.url(self.repositories[name])

    def destination(self, name: str) -> str:
        """Our destination string ``borg+ssh://user@host:port/PATH`` for repository *name*."""
        return "borg+" + self.url(name)

    def rsh(self, name: str) -> str:
        """``BORG_RSH`` for the client: plain ssh with the repository's key, isolated from ~/.ssh."""
        options = [o for o in self.sshd.ssh_options() if not o.startswith("IdentityFile=")]
        argv = ["ssh", "-F", "none", "-o", f"IdentityFile={self.identity_file(name)}"]
        for option in options:
            argv += ["-o", option]
        return shlex.join(argv)

    def client_environment(self, name: str) -> Dict[str, str]:
        """What an ``archive_env_file`` holds for a client of repository *name*."""
        return {"BORG_RSH": self.rsh(name)}

    def segment_files(self, name: str) -> List[Path]:
        """The repository's data segments as the server's owner sees them."""
        return sorted(p for p in (self.repositories[name] / "data").rglob("*") if p.is_file())


def borg_env(base_dir: Path, passphrase_file: Path, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A borg client's environment: its caches in *base_dir*, the passphrase read from a file."""
    env = dict(os.environ, BORG_BASE_DIR=str(base_dir), BORG_PASSCOMMAND=f"cat {shlex.quote(str(passphrase_file))}")
    env.update(extra or {})
    return env


def restic_env(cache_dir: Path, password_file: Path, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A restic client's environment: its cache in *cache_dir*, the password read from a file."""
    env = dict(os.environ, RESTIC_CACHE_DIR=str(cache_dir), RESTIC_PASSWORD_FILE=str(password_file))
    env.update(extra or {})
    return env


def run(argv: Sequence[str], env: Dict[str, str], stdin=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a store's client; output captured as bytes, never raising on failure."""
    return subprocess.run(list(argv), env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, check=False)
