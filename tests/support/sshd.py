"""A private sshd on a loopback address, with its own host key and client key, for real-ssh tests."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

from .procs import NotListening, ServerProcess, port_open, wait_listening

SSHD = "/usr/sbin/sshd"
REQUIRED_TOOLS = (SSHD, "ssh", "ssh-keygen")
SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
)

PathLike = Union[str, "os.PathLike[str]"]


def missing_tools(tools: Sequence[str] = REQUIRED_TOOLS) -> List[str]:
    """Return the tools in *tools* that cannot be found (absolute paths or names on PATH)."""
    return [tool for tool in tools if shutil.which(tool) is None]


def free_port(host: str) -> int:
    """A port that is free on *host* right now (the kernel picks it for a bind to port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SshdError(RuntimeError):
    """The private sshd did not come up (message includes its log tail)."""


class Sshd(ServerProcess):
    """Run ``/usr/sbin/sshd -D -e`` as root on a loopback address for the duration of a ``with``.

    Several instances may run at once on different addresses (127.0.0.2, 127.0.0.3, ...),
    each acting as a separate "host" with its own keys.
    """

    name = "sshd"

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: Optional[int] = None,
        user: str = "root",
        extra_config: Sequence[str] = (),
        start_timeout: float = 10.0,
        run_prefix: Sequence[str] = (),
        max_startups: Optional[str] = "100:30:200",
    ) -> None:
        """*run_prefix* goes before sshd's command and every ssh client's built here, e.g.
        ``nsenter --net=/run/netns/NAME`` to serve inside a network namespace (give a *port* then:
        the free-port pick and the port probe work in this process's own namespace).
        *max_startups* None leaves MaxStartups to *extra_config* (sshd keeps the first value)."""
        if not ipaddress.ip_address(host).is_loopback:
            # Network rule of the test bed: never listen on or talk to real addresses.
            raise ValueError(f"Sshd only runs on loopback addresses, not {host}")
        self.host = host
        self.port = port
        self.user = user
        self.extra_config = list(extra_config)
        self.start_timeout = start_timeout
        self.run_prefix = list(run_prefix)
        self.max_startups = max_startups
        super().__init__()

    # -- paths -----------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self.workdir is None:
            raise RuntimeError("Sshd is not started")
        return self.workdir / name

    @property
    def identity_file(self) -> Path:
        """Client private key (ed25519, no passphrase) authorized for ``user``."""
        return self._path("id_ed25519")

    @property
    def known_hosts_file(self) -> Path:
        """known_hosts with this server's host key for ``[host]:port``."""
        return self._path("known_hosts")

    @property
    def config_file(self) -> Path:
        return self._path("sshd_config")

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    # -- client side helpers --------------------------------------------

    def ssh_options(self) -> List[str]:
        """``-o`` values (without the ``-o``) that let a plain ``ssh`` reach this server non-interactively."""
        return [
            f"IdentityFile={self.identity_file}",
            f"UserKnownHostsFile={self.known_hosts_file}",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "ConnectTimeout=10",
        ]

    @property
    def destination(self) -> str:
        """``user@host`` as ssh wants it."""
        return f"{self.user}@{self.host}"

    def ssh_argv(self, *command: str) -> List[str]:
        """Full ``ssh`` argv (isolated from ~/.ssh/config) for running *command* remotely."""
        argv = self.run_prefix + ["ssh", "-F", "none"]
        for option in self.ssh_options():
            argv += ["-o", option]
        argv += ["-p", str(self.port), self.destination]
        return argv + list(command)

    def run(self, *command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run *command* on the "remote" side, capturing text output."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        return subprocess.run(self.ssh_argv(*command), check=check, **kwargs)

    def url(self, path: PathLike) -> str:
        """``ssh://user@host:port/abs/path`` for *path* on this server."""
        path = os.fspath(path)
        if not path.startswith("/"):
            raise ValueError(f"ssh URL needs an absolute path, got {path!r}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}:{self.port}{path}"

    def ansible_host_vars(self) -> dict:
        """Inventory variables that point Ansible at this server."""
        return {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.identity_file),
            "ansible_ssh_common_args": " ".join(
                f"-o {o}" for o in self.ssh_options() if not o.startswith("IdentityFile=")
            ),
        }

    # -- lifecycle -------------------------------------------------------

    def start(self) -> "Sshd":
        if self.process is not None:
            return self
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sshd-{self.host}-"))
        try:
            self._make_keys()
            # sshd refuses to start without its privilege-separation directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            fixed_port = self.port is not None
            # A picked port can be grabbed by someone else before sshd binds it: retry.
            for attempt in range(3):
                if not fixed_port:
                    self.port = free_port(self.host)
                self._write_config()
                # known_hosts depends on the port; the readiness probe already checks the key.
                self._write_known_hosts()
                self._launch(self.run_prefix + [SSHD, "-D", "-e", "-f", str(self.config_file)])
                try:
                    self._wait_ready()
                    break
                except SshdError:
                    in_use = "Address already in use" in self.log_tail(100)
                    self._terminate()
                    if fixed_port or not in_use or attempt == 2:
                        raise
            return self
        except BaseException:
            self.stop()
            raise

    # -- internals -------------------------------------------------------

    def _make_keys(self) -> None:
        for name, comment in (("ssh_host_ed25519_key", "test-host"), ("id_ed25519", "test-client")):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(self._path(name))],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        shutil.copyfile(self._path("id_ed25519.pub"), self._path("authorized_keys"))

    def _write_config(self) -> None:
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        lines = [
            f"ListenAddress {listen}",
            f"HostKey {self._path('ssh_host_ed25519_key')}",
            f"AuthorizedKeysFile {self._path('authorized_keys')}",
            f"PidFile {self._path('sshd.pid')}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            # The temp dir is not laid out the way StrictModes insists on.
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "MaxSessions 50",
            "LogLevel VERBOSE",
        ]
        if self.max_startups:
            # Tests and Ansible open many parallel / multiplexed sessions.
            lines.append(f"MaxStartups {self.max_startups}")
        sftp = next((p for p in SFTP_SERVERS if os.path.exists(p)), None)
        if sftp:
            # Ansible copies files over sftp.
            lines.append(f"Subsystem sftp {sftp}")
        lines += self.extra_config
        self.config_file.write_text("\n".join(lines) + "\n")

    def _wait_ready(self) -> None:
        try:
            wait_listening(self.process, self.host, self.port, self.start_timeout, ready=self._not_ready)
        except NotListening as err:
            raise SshdError(f"sshd {err}:\n{self.log_tail()}") from None

    def _not_ready(self, seconds_left: float) -> Optional[str]:
        """Why a client cannot log in yet (None once ``ssh true`` works)."""
        # In another network namespace, the port probe here would ask the wrong one: ssh alone tells.
        if not self.run_prefix and not port_open(self.host, self.port):
            return "port never accepted connections"
        try:
            probe = subprocess.run(self.ssh_argv("true"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=max(1.0, seconds_left), check=False)
        except subprocess.TimeoutExpired:
            return "ssh true timed out"
        return None if probe.returncode == 0 else f"ssh true failed: {probe.stderr.strip()}"

    def _write_known_hosts(self) -> None:
        host_key = self._path("ssh_host_ed25519_key.pub").read_text().split()
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        self.known_hosts_file.write_text(f"{name} {host_key[0]} {host_key[1]}\n")
