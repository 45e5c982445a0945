#!/usr/bin/env bash
# Install what the role's molecule scenario needs on a fresh Debian 12 machine (as root):
# everything scripts/install-deps.sh installs, debootstrap and systemd-nspawn for the test fleet,
# and molecule (requirements-role.txt) into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

# chromium: the fleet report is opened headless and a screenshot taken.
APT_PACKAGES=(debootstrap systemd-container btrfs-progs openssh-client tar util-linux chromium)
./scripts/apt-install-missing.sh install-role-deps "${APT_PACKAGES[@]}"

if ! cmp -s requirements-role.txt .venv/.requirements-role; then
    echo "install-role-deps: installing requirements-role.txt into .venv"
    .venv/bin/python -m pip install -q -r requirements-test.txt -r requirements-role.txt
    cp requirements-role.txt .venv/.requirements-role
fi
