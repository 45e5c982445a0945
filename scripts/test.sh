#!/usr/bin/env bash
# Install what is needed, then run every test: the engine's unit tests; the collection's checks
# on its built tarball (ansible-test sanity and units across the ansible-core matrix, ansible-lint,
# antsibull-docs and the docs site build, antsibull-changelog, galaxy-importer:
# scripts/check-collection.sh); then integration tests on real loop-backed btrfs and a private sshd
# on loopback, the CLI's and the modules'; then the role on a fleet of systemd-nspawn hosts (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/install-matrix.sh
# chromium: the integration test of the fleet report renders it headless (the role's scenario,
# whose own installer has it too, runs after the integration tests).
./scripts/apt-install-missing.sh test chromium
export PYTHONDONTWRITEBYTECODE=1
# The suite runs with a home folder of its own, so that nothing an earlier run or a user left in
# the real one (installed collections in ~/.ansible, ansible-lint's caches in ~/.cache) can make
# a check pass that would fail on a fresh machine. pyenv and pip keep their configuration.
export PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
if [ -z "${PIP_CONFIG_FILE:-}" ] && [ -f "$HOME/.config/pip/pip.conf" ]; then
    export PIP_CONFIG_FILE="$HOME/.config/pip/pip.conf"
fi
suite_home="$(mktemp -d /tmp/btrfs-backup-test-home.XXXXXX)"
trap 'rm -rf "$suite_home"' EXIT
export HOME="$suite_home"
.venv/bin/python -m pytest -p no:cacheprovider tests/unit "$@"
./scripts/check-collection.sh
.venv/bin/python -m pytest -p no:cacheprovider tests/integration "$@"
./scripts/test-role.sh
