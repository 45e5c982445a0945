#!/usr/bin/env bash
# Copy the collection's content to DIR/ansible_collections/btrfs/backup and print that path.
# ansible-test needs a real directory at that place (not a symlink); ansible and ansible-playbook
# find it with ANSIBLE_COLLECTIONS_PATH=DIR. Only what makes up the collection is copied: its
# metadata, plugins, roles, molecule scenarios, and the unit tests that ansible-test runs. The
# developer tooling (bin/, scripts, benchmarks, the pytest suites over real btrfs) stays out.
# New collection content goes into CONTENT, so that sanity and lint see it.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:?usage: copy-collection.sh DIR}/ansible_collections/btrfs/backup"
CONTENT=(galaxy.yml README.md CHANGELOG.md changelogs meta plugins roles playbooks extensions docs
         tests/unit/plugins tests/sanity .ansible-lint)
present=()
for item in "${CONTENT[@]}"; do
    [ -e "$item" ] && present+=("$item")
done
mkdir -p "$dest"
tar --create --exclude=__pycache__ --exclude='*.pyc' "${present[@]}" | tar --extract --directory "$dest"
echo "$dest"
