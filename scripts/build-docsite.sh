#!/usr/bin/env bash
# Build the collection's docs site the way the Ansible documentation builds a collection's site:
# `antsibull-docs sphinx-init --use-current` over the collection as installed from its built tarball,
# then the generated build.sh (Sphinx with warnings as errors). Fails on any warning except the one
# an offline machine cannot avoid: the intersphinx inventories of the Ansible, Python and Jinja docs
# cannot be fetched (and so the generated pages' links into the Ansible docs do not resolve). The
# site ends up in DEST/site/build/html.
#   scripts/build-docsite.sh DEST [COLLECTIONS_ROOT]
# COLLECTIONS_ROOT: a folder in which the tarball is installed already (scripts/check-collection.sh
# passes its own); without it, the tarball is built and installed under DEST.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
dest="$(mkdir -p "${1:?usage: build-docsite.sh DEST [COLLECTIONS_ROOT]}" && cd "$1" && pwd)"
export PATH="$REPO/.venv/bin:$PATH"
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
status=0
(cd "$site" && ./build.sh) >"$dest/build.log" 2>&1 || status=$?

# Every warning and error of the build, as Sphinx prints them (one line each, the unreachable
# inventories' details on the lines that follow theirs), less the unreachable inventories and,
# while they are unreachable, the references into the Ansible docs that only they resolve (labels
# such as common_return_values; a label of this collection is never excused).
unreachable="$(grep -c 'WARNING: failed to reach any of the inventories' "$dest/build.log" || true)"
excused='WARNING: failed to reach any of the inventories with the following issues:'
if [ "$unreachable" != 0 ]; then
    excused="$excused|WARNING: undefined label: '(?!ansible_collections\.btrfs\.backup\.)[^']*' \[ref\.ref\]$"
fi
findings="$(grep -E '(WARNING|ERROR|CRITICAL|SEVERE):' "$dest/build.log" | grep -vP "$excused" || true)"
if [ ! -f "$site/build/html/collections/btrfs/backup/index.html" ]; then
    echo "build-docsite: the site was not built (build.sh exited $status); its output:" >&2
    tail -n 60 "$dest/build.log" >&2
    exit 1
fi
if [ "$status" != 0 ] && [ -z "$findings" ] && [ "$unreachable" = 0 ]; then
    findings="build.sh exited $status: $(tail -n 5 "$dest/build.log")"
fi
if [ -n "$findings" ]; then
    echo "build-docsite: the docs site build warns (besides the unreachable intersphinx inventories):" >&2
    echo "$findings" >&2
    exit 1
fi
pages="$(find "$site/build/html/collections/btrfs/backup" -name '*.html' | wc -l)"
echo "build-docsite: built $pages pages of btrfs.backup in $site/build/html, no warning of its own" \
    "(build.sh exited $status: $unreachable intersphinx inventories unreachable," \
    "$(grep -c 'WARNING: undefined label' "$dest/build.log" || true) links into the Ansible docs unresolved)"
