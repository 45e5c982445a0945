#!/usr/bin/env bash
# The role's tests, as root on Debian 12: ansible-lint (production profile) over the role and its
# molecule scenario, then the scenario itself: boot a fleet of systemd-nspawn hosts (three
# sources, one backup server), install the collection from its built tarball, converge,
# check idempotence, verify. The fleet is destroyed at the end, also when a step fails.
# Prints how long each step took, and the verify step's timer-to-landing figure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-role-deps.sh
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1
scenario=extensions/molecule/default

MOLECULE_EPHEMERAL_DIRECTORY="$(mktemp -d /tmp/btrfs-backup-molecule.XXXXXX)"
export MOLECULE_EPHEMERAL_DIRECTORY
log="$MOLECULE_EPHEMERAL_DIRECTORY/molecule.log"
cleanup() {
    status=$?
    if ! molecule destroy -s default >>"$log" 2>&1; then
        echo "test-role: molecule destroy FAILED; its output:" >&2
        tail -n 40 "$log" >&2
        status=1
    fi
    rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"
    exit "$status"
}
trap cleanup EXIT

# The linter resolves btrfs.backup.btrfs_backup from the built tarball, as the scenario does.
lint_collections="$MOLECULE_EPHEMERAL_DIRECTORY/lint-collections"
tarball="$(scripts/build-collection.sh "$MOLECULE_EPHEMERAL_DIRECTORY/lint-build")"
ansible-galaxy collection install --force -p "$lint_collections" "$tarball" >/dev/null 2>&1
echo "test-role: ansible-lint --profile production roles/btrfs_backup $scenario"
ANSIBLE_COLLECTIONS_PATH="$lint_collections" \
    ansible-lint --profile production --offline roles/btrfs_backup "$scenario"

started=$SECONDS
summary=()
for step in create prepare side-effect syntax converge idempotence verify; do
    t0=$SECONDS
    if ! molecule "$step" -s default >"$MOLECULE_EPHEMERAL_DIRECTORY/$step.log" 2>&1; then
        echo "test-role: molecule $step FAILED after $((SECONDS - t0)) s; its output:" >&2
        grep -v "^WARNING: Location 'file:" "$MOLECULE_EPHEMERAL_DIRECTORY/$step.log" | tail -n 120 >&2
        exit 1
    fi
    summary+=("$step $((SECONDS - t0))s")
    echo "test-role: molecule $step passed ($((SECONDS - t0)) s)"
done
if [ -f "$MOLECULE_EPHEMERAL_DIRECTORY/timer-to-landing.json" ]; then
    echo "test-role: timer fired -> backup landed on the server: $(tr -d '\n ' <"$MOLECULE_EPHEMERAL_DIRECTORY/timer-to-landing.json")"
fi
echo "test-role: ${summary[*]}; total $((SECONDS - started)) s (destroy follows)"
