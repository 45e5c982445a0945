#!/usr/bin/env bash
# Install what the demo, the tests and the benchmarks need (Debian/Ubuntu, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# sudo: the --ssh-sudo tests; btrbk and strace: the benchmarks (btrbk is compared, strace counts processes);
# prometheus: promtool checks the metrics and tests the alert rules; snapper: the jobs that send its snapshots;
# borgbackup, restic, rclone: archive destinations, and rclone's append-only REST server for restic.
APT_PACKAGES=(btrfs-progs openssh-server openssh-client pv zstd mbuffer sudo btrbk strace
              python3 python3-venv python3-pip util-linux coreutils prometheus snapper
              borgbackup restic rclone)

./scripts/apt-install-missing.sh install-deps "${APT_PACKAGES[@]}"

# sshd needs host keys and its privilege-separation directory; tests start their own sshd.
ssh-keygen -A >/dev/null
mkdir -p /run/sshd

if [ ! -x .venv/bin/python ] || ! cmp -s requirements-test.txt .venv/.requirements; then
    echo "install-deps: creating .venv from requirements-test.txt"
    python3 -m venv .venv
    # A pip configured with find-links folders that do not exist warns once per package: drop that noise.
    quiet_pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
    quiet_pip install -q --upgrade pip
    quiet_pip install -q -r requirements-test.txt
    cp requirements-test.txt .venv/.requirements
fi
