#!/usr/bin/env bash
# Install what is needed, then run the demo on scratch loop-backed btrfs (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec .venv/bin/python scripts/demo.py
