#!/usr/bin/env bash
# Install what the role's molecule scenario needs on a fresh Debian 12 machine (as root):
# everything scripts/install-deps.sh installs, debootstrap and systemd-nspawn for the test fleet,
# and molecule (requirements-role.txt) into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

APT_PACKAGES=(debootstrap systemd-container btrfs-progs openssh-client tar util-linux)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-role-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cmp -s requirements-role.txt .venv/.requirements-role; then
    echo "install-role-deps: installing requirements-role.txt into .venv"
    .venv/bin/python -m pip install -q -r requirements-test.txt -r requirements-role.txt
    cp requirements-role.txt .venv/.requirements-role
fi
