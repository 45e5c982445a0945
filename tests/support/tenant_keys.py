"""One key per source host on a test sshd, each confined by its own `serve` forced command."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from .sshd import Sshd


def authorize_hosts(server: Sshd, cli: Path, roots: Mapping[str, Path],
                    serve_flags: Sequence[str] = ()) -> Dict[str, Path]:
    """Make a key per host and authorise each only with `serve [FLAGS] --root ROOT`, as the role
    installs them on a backup server (replacing the server's own client key). {host: private key}."""
    keys, lines = {}, []
    for host, root in roots.items():
        key = server.workdir / ("id_%s" % host)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "btrfs-backup@" + host,
                        "-f", str(key)], check=True, stdout=subprocess.DEVNULL)
        forced = " ".join([str(cli), "serve"] + list(serve_flags) + ["--root", str(root)])
        lines.append('restrict,command="%s" %s' % (forced, key.with_suffix(".pub").read_text().strip()))
        keys[host] = key
    (server.workdir / "authorized_keys").write_text("".join(line + "\n" for line in lines))
    return keys


def host_ssh_options(server: Sshd, key: Path) -> List[str]:
    """The server's client options with this host's key instead of the server's own."""
    return ["IdentityFile=%s" % key] + [o for o in server.ssh_options() if not o.startswith("IdentityFile=")]


def host_ssh_argv(server: Sshd, key: Path, command: str) -> List[str]:
    """`ssh` as the host holding `key`, asking for `command` (serve decides what runs)."""
    argv = ["ssh", "-F", "none"]
    for option in host_ssh_options(server, key):
        argv += ["-o", option]
    return argv + ["-p", str(server.port), server.destination, command]


def cli_ssh_flags(server: Sshd, key: Path) -> List[str]:
    """`--ssh-opt` flags for the CLI of the host holding `key`."""
    flags: List[str] = []
    for option in host_ssh_options(server, key):
        flags += ["--ssh-opt", option]
    return flags
