#!/usr/bin/env bash
# Install what is needed, then run every test: the engine's unit tests; the collection's checks
# on its built tarball (ansible-test sanity and units across the ansible-core matrix, ansible-lint,
# antsibull-docs, antsibull-changelog, galaxy-importer: scripts/check-collection.sh); then
# integration tests on real loop-backed btrfs and a private sshd on loopback, the CLI's and the
# modules'; then the role on a fleet of systemd-nspawn hosts (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/install-matrix.sh
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/python -m pytest -p no:cacheprovider tests/unit "$@"
./scripts/check-collection.sh
.venv/bin/python -m pytest -p no:cacheprovider tests/integration "$@"
./scripts/test-role.sh
