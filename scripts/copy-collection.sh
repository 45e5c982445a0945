#!/usr/bin/env bash
# Copy the collection's content to DIR/ansible_collections/btrfs/backup and print that path: a quick
# copy of the checkout for the integration tests and scripts/changelog.sh (the collection's checks
# run on the built tarball instead: scripts/check-collection.sh).
# ansible and ansible-playbook find it with ANSIBLE_COLLECTIONS_PATH=DIR. Only what makes up the
# collection is copied: its metadata, plugins, roles, docs, and the unit tests that ansible-test
# runs (with the fake host they share with the engine's tests); the developer tooling (bin/, scripts, benchmarks, the pytest suites over real btrfs) stays
# out, as galaxy.yml's build_ignore keeps it out of the tarball.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:?usage: copy-collection.sh DIR}/ansible_collections/btrfs/backup"
CONTENT=(galaxy.yml README.md CHANGELOG.md COPYING LICENSES bindep.txt changelogs meta plugins roles playbooks
         extensions docs tests/config.yml tests/unit/plugins tests/support/__init__.py tests/support/fake_host.py
         .ansible-lint)
present=()
for item in "${CONTENT[@]}"; do
    [ -e "$item" ] && present+=("$item")
done
mkdir -p "$dest"
tar --create --exclude=__pycache__ --exclude='*.pyc' "${present[@]}" | tar --extract --directory "$dest"
echo "$dest"
