#!/usr/bin/env bash
# find-python.sh X.Y: print the path of a Python X.Y interpreter on this machine: /usr/bin/pythonX.Y,
# or else the newest pyenv-installed X.Y.*; with none, say so and exit 1.
set -euo pipefail
want="${1:?usage: find-python.sh X.Y}"
if [ -x "/usr/bin/python$want" ]; then
    echo "/usr/bin/python$want"
    exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
    version="$(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)"
    if [ -n "$version" ] && [ -x "$(pyenv root)/versions/$version/bin/python$want" ]; then
        echo "$(pyenv root)/versions/$version/bin/python$want"
        exit 0
    fi
fi
echo "find-python: no Python $want on this machine (neither /usr/bin/python$want nor a pyenv interpreter)" >&2
exit 1
