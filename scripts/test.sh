#!/usr/bin/env bash
# Install what is needed, then run every test: unit tests, then integration tests on real
# loop-backed btrfs and a private sshd on loopback (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/python -m pytest -p no:cacheprovider tests/unit "$@"
.venv/bin/python -m pytest -p no:cacheprovider tests/integration "$@"
