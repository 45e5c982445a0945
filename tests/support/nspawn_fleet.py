#!/usr/bin/env python3
"""A fleet of systemd-nspawn hosts on loopback, each with its own loop-backed btrfs and sshd.

    nspawn_fleet.py up   --state DIR --hosts srv1,src1,src2,src3   # prints the fleet as JSON
    nspawn_fleet.py down --state DIR                               # stops and removes everything

`up` boots one container per host from a cached Debian bookworm rootfs (debootstrap once per
package list, kept under /var/cache/btrfs-backup-test), each with:
  - its own sparse btrfs image on a private tmpfs, loop-mounted and bound at /srv/btrfs,
  - its own sshd on 127.A.B.N:PORT (the containers share the host's network namespace,
    so each one listens on its own loopback address), root login with the fleet's key only,
  - its own host keys and machine id.
Everything `up` makes is written to DIR/fleet.json as it is made, so `down` removes it all,
also after an `up` that failed half-way. Only processes this tool started are stopped, by PID.
"""

import argparse
import fcntl
import glob
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from procs import children  # beside this script (it runs as a script, not from the package)

SUITE = "bookworm"


def _machine_mirror():
    """The Debian mirror this machine's apt uses (its own sources): the fleet's packages come
    from where the machine's own come from."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path) as handle:
                for line in handle:
                    words = line.split()
                    if words[:1] == ["URIs:"] and len(words) > 1:
                        return words[1]
                    if words[:1] == ["deb"] and len(words) > 2:
                        return words[2] if not words[1].startswith("[") else words[3]
        except OSError:
            continue
    raise RuntimeError("no Debian mirror in this machine's apt sources: set BTRFS_BACKUP_TEST_MIRROR")


MIRROR = os.environ.get("BTRFS_BACKUP_TEST_MIRROR") or _machine_mirror()
# Everything the role would install is already in the image, so converge needs no network.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "btrfs-progs",
            "openssh-server", "openssh-client", "sudo", "iproute2", "pv", "zstd", "mbuffer",
            "prometheus-node-exporter")
CACHE_DIR = os.environ.get("BTRFS_BACKUP_TEST_CACHE", "/var/cache/btrfs-backup-test")
BOOT_TIMEOUT = int(os.environ.get("FLEET_BOOT_TIMEOUT", "90"))


def log(message):
    sys.stderr.write("nspawn_fleet: %s\n" % message)
    sys.stderr.flush()


def run(argv, check=True, **kwargs):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), proc.returncode,
                                                   proc.stderr.strip()))
    return proc


# -- the cached rootfs ----------------------------------------------------------------------

def cached_rootfs():
    """The path of a debootstrapped rootfs for PACKAGES, built once (under a lock) and reused."""
    key = hashlib.sha256(("%s %s %s" % (SUITE, MIRROR, " ".join(sorted(PACKAGES))))
                         .encode()).hexdigest()[:12]
    os.makedirs(CACHE_DIR, exist_ok=True)
    target = os.path.join(CACHE_DIR, "rootfs-%s-%s" % (SUITE, key))
    with open(os.path.join(CACHE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(target, ".complete")):
            return target
        building = tempfile.mkdtemp(prefix=".building-", dir=CACHE_DIR)
        log("building the %s rootfs once (debootstrap, about a minute) in %s" % (SUITE, target))
        try:
            run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                 SUITE, building, MIRROR])
            # Per-host identity is made at `up`; the cached image carries none.
            for name in os.listdir(os.path.join(building, "etc", "ssh")):
                if name.startswith("ssh_host_"):
                    os.unlink(os.path.join(building, "etc", "ssh", name))
            open(os.path.join(building, "etc", "machine-id"), "w").close()
            # node_exporter would listen on every address of the shared network at boot: it stays
            # off; a test starts it on its host's own loopback address.
            for wants in glob.glob(os.path.join(building, "etc", "systemd", "system", "*.wants",
                                                "prometheus-node-exporter*")):
                os.unlink(wants)
            shutil.rmtree(os.path.join(building, "var", "cache", "apt", "archives"),
                          ignore_errors=True)
            os.chmod(building, 0o755)  # mkdtemp made it 0700: it becomes the containers' /
            open(os.path.join(building, ".complete"), "w").close()
            if os.path.exists(target):
                shutil.rmtree(target)
            os.rename(building, target)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return target


# -- state ----------------------------------------------------------------------------------

class Fleet(object):
    """What `up` made, saved after every step so `down` can always undo it."""

    def __init__(self, state_dir):
        self.state_dir = os.path.abspath(state_dir)
        self.path = os.path.join(self.state_dir, "fleet.json")
        self.data = {"tmpfs": None, "hosts": {}}
        if os.path.exists(self.path):
            with open(self.path) as handle:
                self.data = json.load(handle)

    def save(self):
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(self.data, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def host(self, name):
        return self.data["hosts"].setdefault(name, {"name": name})


def pick_network():
    """A loopback /24 (127.A.B.0) and a port that nothing listens on, for this fleet."""
    rng = random.SystemRandom()
    for _attempt in range(50):
        base = "127.%d.%d" % (rng.randint(100, 250), rng.randint(1, 250))
        port = rng.randint(20000, 29999)
        try:
            for last in range(1, 10):
                with socket.socket() as sock:
                    sock.bind(("%s.%d" % (base, last), port))
        except OSError:
            continue
        return base, port
    raise RuntimeError("no free loopback address/port found")


def admin_key(state_dir):
    key = os.path.join(state_dir, "id_ed25519")
    if not os.path.exists(key):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "btrfs-backup-fleet", "-f", key])
    return key


# -- up -------------------------------------------------------------------------------------

def up(state_dir, names, image_size):
    fleet = Fleet(state_dir)
    if fleet.data["hosts"]:
        raise RuntimeError("%s already holds a fleet; run down first" % fleet.path)
    os.makedirs(fleet.state_dir, exist_ok=True)
    rootfs = cached_rootfs()
    key = admin_key(fleet.state_dir)
    base, port = pick_network()
    fleet.data.update(network=base, port=port, identity_file=key)
    tmpfs = tempfile.mkdtemp(prefix="btrfs-backup-fleet-")
    fleet.data["tmpfs"] = tmpfs
    fleet.save()
    run(["mount", "-t", "tmpfs", "-o", "size=6G,mode=0755", "tmpfs", tmpfs])
    fleet.data["tmpfs_mounted"] = True
    fleet.save()
    with open(key + ".pub") as handle:
        pubkey = handle.read()
    for index, name in enumerate(names, start=1):
        host = fleet.host(name)
        host["address"] = "%s.%d" % (base, index)
        host["port"] = port
        root = os.path.join(tmpfs, name, "root")
        host["root"] = root
        fleet.save()
        os.makedirs(os.path.dirname(root))
        run(["cp", "-a", rootfs, root])
        os.chmod(root, 0o755)
        _personalise(root, name, host["address"], port, pubkey)
        image = os.path.join(tmpfs, name, "btrfs.img")
        run(["truncate", "-s", image_size, image])
        run(["mkfs.btrfs", "-q", "-L", name, image])
        host["image"] = image
        loop = run(["losetup", "--find", "--show", image]).stdout.strip()
        host["loop"] = loop
        fleet.save()
        mnt = os.path.join(tmpfs, name, "btrfs")
        os.makedirs(mnt)
        run(["mount", loop, mnt])
        host["mount"] = mnt
        fleet.save()
        console = open(os.path.join(fleet.state_dir, "%s.console.log" % name), "w")
        proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "-D", root, "--boot", "--register=no", "--keep-unit",
             "--machine=" + name, "--hostname=" + name, "--bind=%s:/srv/btrfs" % mnt,
             "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True)
        console.close()
        host["pid"] = proc.pid
        fleet.save()
    for name in names:
        _wait_for_ssh(fleet, fleet.data["hosts"][name])
    return fleet


def _personalise(root, name, address, port, pubkey):
    """Give one copy its own host keys, machine id, sshd address and the fleet's login key."""
    run(["ssh-keygen", "-A", "-f", root])
    with open(os.path.join(root, "etc", "hostname"), "w") as handle:
        handle.write(name + "\n")
    with open(os.path.join(root, "etc", "machine-id"), "w"):
        pass
    with open(os.path.join(root, "etc", "hosts"), "w") as handle:
        handle.write("127.0.0.1 localhost\n%s %s\n" % (address, name))
    with open(os.path.join(root, "etc", "ssh", "sshd_config.d", "fleet.conf"), "w") as handle:
        handle.write("ListenAddress %s:%d\nPermitRootLogin prohibit-password\n"
                     "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                     "UseDNS no\n" % (address, port))
    ssh_dir = os.path.join(root, "root", ".ssh")
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(ssh_dir, "authorized_keys"), "w") as handle:
        handle.write(pubkey)
    os.chmod(os.path.join(ssh_dir, "authorized_keys"), 0o600)
    # Nothing in the fleet may reach a real network: no services that would try.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                 "fstrim.timer", "systemd-networkd.service", "systemd-resolved.service"):
        link = os.path.join(root, "etc", "systemd", "system", unit)
        if not os.path.lexists(link):
            os.symlink("/dev/null", link)


def _wait_for_ssh(fleet, host):
    deadline = time.monotonic() + BOOT_TIMEOUT
    argv = ["ssh", "-i", fleet.data["identity_file"], "-p", str(host["port"]),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3",
            "-o", "LogLevel=ERROR", "root@" + host["address"],
            "systemctl is-system-running"]
    last = ""
    while time.monotonic() < deadline:
        if _pid_alive(host.get("pid")) is False:
            raise RuntimeError("container %s exited while booting (see %s.console.log)"
                               % (host["name"], host["name"]))
        proc = run(argv, check=False, timeout=30)
        last = (proc.stdout + proc.stderr).strip()
        if proc.returncode in (0, 1) and last in ("running", "degraded"):
            host["state"] = last
            fleet.save()
            return
        time.sleep(0.5)
    raise RuntimeError("%s did not come up over ssh within %ds: %s"
                       % (host["name"], BOOT_TIMEOUT, last))


# -- down -----------------------------------------------------------------------------------

def _pid_alive(pid):
    if not pid:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A PID from an earlier boot could have been reused: it must still be our systemd-nspawn.
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().split(b"\0")[0].endswith(b"systemd-nspawn")
    except OSError:
        return False


def down(state_dir):
    fleet = Fleet(state_dir)
    problems = []
    hosts = list(fleet.data["hosts"].values())
    for host in hosts:
        if _pid_alive(host.get("pid")):
            # systemd-nspawn turns SIGTERM into an orderly poweroff of the container.
            os.kill(host["pid"], signal.SIGTERM)
    for host in hosts:
        pid = host.get("pid")
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            # No orderly poweroff in time. Killing systemd-nspawn alone would leave the container
            # running (its init is re-parented), and with it the mount namespace that keeps the
            # host's btrfs and loop device busy. Killing that init ends its whole PID namespace.
            log("%s: no poweroff after 30 s; killing the container (pid %d and its init)" % (host["name"], pid))
            inits = children(pid)
            for child in inits + [pid]:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while any(_exists(p) for p in inits + [pid]) and time.monotonic() < deadline:
                time.sleep(0.2)
        host.pop("pid", None)
        fleet.save()
    for host in hosts:
        mnt = host.get("mount")
        if mnt and _is_mounted(mnt):
            proc = run(["umount", mnt], check=False)
            if proc.returncode != 0:
                problems.append("umount %s: %s" % (mnt, proc.stderr.strip()))
                continue
        host.pop("mount", None)
        loop = host.get("loop")
        if loop and host.get("image") and _loop_backs(loop, host["image"]):
            proc = run(["losetup", "-d", loop], check=False)
            if proc.returncode != 0:
                problems.append("losetup -d %s: %s" % (loop, proc.stderr.strip()))
                continue
        host.pop("loop", None)
        fleet.save()
    tmpfs = fleet.data.get("tmpfs")
    if tmpfs and not problems:
        # A loop device detached while its btrfs was still going away is released a moment later.
        deadline = time.monotonic() + 10
        while _is_mounted(tmpfs):
            proc = run(["umount", tmpfs], check=False)
            if proc.returncode == 0:
                break
            if time.monotonic() > deadline:
                problems.append("umount %s: %s" % (tmpfs, proc.stderr.strip()))
                break
            time.sleep(0.5)
        if not _is_mounted(tmpfs) and os.path.isdir(tmpfs):
            shutil.rmtree(tmpfs, ignore_errors=True)
    if problems:
        fleet.save()
        raise RuntimeError("; ".join(problems))
    if os.path.exists(fleet.path):
        os.unlink(fleet.path)


def _exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == path for line in handle)


def _loop_backs(loop, image):
    out = run(["losetup", "-n", "-O", "BACK-FILE", loop], check=False).stdout.strip()
    return out.startswith(image)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "rootfs"])
    parser.add_argument("--state", help="folder for fleet.json, the login key and console logs")
    parser.add_argument("--hosts", default="srv1,src1,src2,src3")
    parser.add_argument("--image-size", default="2G")
    parser.add_argument("--instance-config",
                        help="also write molecule's instance config (a YAML list) to this file")
    options = parser.parse_args(argv)
    if options.action == "rootfs":
        print(cached_rootfs())
        return 0
    if not options.state:
        parser.error("--state is required")
    if options.action == "down":
        down(options.state)
        return 0
    names = [n for n in options.hosts.split(",") if n]
    try:
        fleet = up(options.state, names, options.image_size)
    except BaseException as err:
        log("up failed (%s); removing what was made" % err)
        try:
            down(options.state)
        except Exception as cleanup:  # report both, the first one matters most
            log("cleanup after the failed up also failed: %s" % cleanup)
        raise
    if options.instance_config:
        instances = [{"instance": name, "address": host["address"], "port": host["port"],
                      "user": "root", "identity_file": fleet.data["identity_file"]}
                     for name, host in sorted(fleet.data["hosts"].items())]
        with open(options.instance_config, "w") as handle:
            json.dump(instances, handle, indent=2)  # JSON is YAML
            handle.write("\n")
    json.dump(fleet.data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
