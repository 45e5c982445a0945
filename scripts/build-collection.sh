#!/usr/bin/env bash
# Build the collection tarball the way a user does from a clean clone: `ansible-galaxy
# collection build` over the files git tracks (a new file counts once it is `git add`ed), so local
# clutter (.venv, caches, test output, files never added) never ends up in it. Prints the tarball's path.
#   scripts/build-collection.sh OUTPUT_DIR
# With GALAXY_REPOSITORY=URL, the tarball's galaxy.yml names that repository (galaxy.yml has none
# until the project is published; scripts/check-collection.sh uses a reserved .invalid address so
# that galaxy-importer gets past that finding to its other checks).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mkdir -p "${1:?usage: build-collection.sh OUTPUT_DIR}" && cd "$1" && pwd)"
galaxy="${ANSIBLE_GALAXY:-ansible-galaxy}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
# --ignore-failed-read: a tracked file deleted in the work tree is simply left out.
git ls-files -z --cached \
    | tar --create --null --ignore-failed-read --files-from=- 2>/dev/null \
    | tar --extract --directory "$stage"
if [ -n "${GALAXY_REPOSITORY:-}" ]; then
    printf 'repository: %s\n' "$GALAXY_REPOSITORY" >>"$stage/galaxy.yml"
fi
"$galaxy" collection build --force --output-path "$out" "$stage" >/dev/null
ls -t "$out"/btrfs-backup-*.tar.gz | head -n 1
