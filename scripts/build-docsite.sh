#!/usr/bin/env bash
# Build the collection's docs site the way the Ansible documentation builds a collection's site:
# `antsibull-docs sphinx-init --use-current` over the collection as installed from its built tarball,
# then the generated build.sh (Sphinx with warnings as errors). The build stays on this machine: the
# intersphinx inventories it would fetch are written locally (scripts/docsite-inventories.py), so
# the links into the Ansible docs resolve as they would online. Fails on any warning. The site ends
# up in DEST/site/build/html.
#   scripts/build-docsite.sh DEST [COLLECTIONS_ROOT]
# COLLECTIONS_ROOT: a folder in which the tarball is installed already (scripts/check-collection.sh
# passes its own); without it, the tarball is built and installed under DEST.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
dest="$(mkdir -p "${1:?usage: build-docsite.sh DEST [COLLECTIONS_ROOT]}" && cd "$1" && pwd)"
export PATH="$REPO/.venv/bin:$PATH"
# Plain text in the log, also where the caller asks for colours (FORCE_COLOR): it is read below.
export NO_COLOR=1
unset FORCE_COLOR
root="${2:-}"
if [ -z "$root" ]; then
    root="$dest/collections"
    tarball="$(ANSIBLE_GALAXY="$REPO/.venv/bin/ansible-galaxy" scripts/build-collection.sh "$dest/tarball")"
    ansible-galaxy collection install --offline --force -p "$root" "$tarball" >"$dest/install.log" 2>&1
fi
# antsibull-docs and ansible-doc find btrfs.backup in this install only.
export ANSIBLE_COLLECTIONS_PATH="$root"

site="$dest/site"
rm -rf "$site"
mkdir -m 0755 "$site"  # sphinx-init wants a folder only its owner can write
antsibull-docs sphinx-init --use-current --dest-dir "$site" btrfs.backup >"$dest/sphinx-init.log"
python3 scripts/docsite-inventories.py "$site"
status=0
(cd "$site" && ./build.sh) >"$dest/build.log" 2>&1 || status=$?

findings="$(grep -E '(WARNING|ERROR|CRITICAL|SEVERE):' "$dest/build.log" || true)"
if [ ! -f "$site/build/html/collections/btrfs/backup/index.html" ]; then
    echo "build-docsite: the site was not built (build.sh exited $status); its output:" >&2
    tail -n 60 "$dest/build.log" >&2
    exit 1
fi
if [ "$status" != 0 ] || [ -n "$findings" ]; then
    echo "build-docsite: the docs site build warns (build.sh exited $status):" >&2
    echo "${findings:-$(tail -n 5 "$dest/build.log")}" >&2
    exit 1
fi
pages="$(find "$site/build/html/collections/btrfs/backup" -name '*.html' | wc -l)"
echo "build-docsite: built $pages pages of btrfs.backup in $site/build/html with no warning"
