#!/usr/bin/env bash
# changelog.sh ARGS...: run `antsibull-changelog ARGS` (e.g. `release --version 1.1.0`, `generate`,
# `lint`) on a copy of the collection at TMP/ansible_collections/btrfs/backup, where ansible-doc
# finds its modules, and bring CHANGELOG.md and changelogs/ back into the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d /tmp/btrfs-backup-changelog.XXXXXX)"
trap 'rm -rf "$work"' EXIT
collection="$(scripts/copy-collection.sh "$work")"
(cd "$collection" && PATH="$OLDPWD/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$work" antsibull-changelog "$@") \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
rm -rf changelogs
cp -r "$collection/changelogs" "$collection/CHANGELOG.md" .
