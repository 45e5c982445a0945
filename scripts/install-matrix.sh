#!/usr/bin/env bash
# Make a venv for each ansible-core of requirements-ansible-matrix.txt, at .venvs/ansible-core-VERSION,
# from the controller Python its line names (scripts/find-python.sh), unless it is there already.
# Prints nothing when every venv is ready.
set -euo pipefail
cd "$(dirname "$0")/.."
# A pip configured with find-links folders that do not exist warns once per package: drop that noise.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
while read -r pin python; do
    version="${pin#ansible-core==}"
    venv=".venvs/ansible-core-$version"
    [ -x "$venv/bin/ansible-test" ] && continue
    interpreter="$(scripts/find-python.sh "$python")" || {
        echo "install-matrix: ansible-core $version needs Python $python on the controller, and there is none" >&2
        exit 1
    }
    echo "install-matrix: $venv from $interpreter"
    rm -rf "$venv"
    "$interpreter" -m venv "$venv"
    quiet_pip "$venv/bin/python" -m pip install -q "$pin"
done < <(sed -n 's/^\(ansible-core==[0-9.]*\) *# python=\([0-9.]*\) .*/\1 \2/p' requirements-ansible-matrix.txt)
