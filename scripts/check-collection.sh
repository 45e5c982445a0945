#!/usr/bin/env bash
# The collection's own checks, on a copy at TMP/ansible_collections/btrfs/backup (ansible-test
# accepts nothing else): ansible-test sanity, ansible-test units, ansible-lint --profile production.
# Run by scripts/test.sh after install-deps.sh; each tool's output goes to a log that is shown
# when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
VENV_BIN="$REPO/.venv/bin"
PYTHON_VERSION="$("$VENV_BIN/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ansible-test bootstraps pip in each venv it makes with a script it downloads from a host that
# is not reachable here; with a cached copy in place it uses that instead (see the stand-in's docstring).
pip_version="$(sed -n "s/^ *pip='\([0-9.]*\)',$/\1/p" \
    "$("$VENV_BIN/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")"
if [ -z "$pip_version" ]; then
    echo "check-collection: cannot tell which pip ansible-test bootstraps" >&2
    exit 1
fi
mkdir -p "$HOME/.ansible/test/cache"
cp scripts/ansible-test-get-pip.py "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

work="$(mktemp -d /tmp/btrfs-backup-checks.XXXXXX)"
trap 'rm -rf "$work"' EXIT
collection="$(scripts/copy-collection.sh "$work")"
logs="$work/logs"
mkdir -p "$logs"

# check NAME COMMAND...: run COMMAND in the collection copy; say how it went and how long it took.
check() {
    local name="$1" started=$SECONDS
    shift
    if (cd "$collection" && "$@") >"$logs/$name.log" 2>&1; then
        echo "check-collection: $name passed ($((SECONDS - started)) s)$(summary "$name")"
    else
        echo "check-collection: $name FAILED ($((SECONDS - started)) s); its output:" >&2
        grep -v "^WARNING: Location 'file:" "$logs/$name.log" | tail -n 150 >&2
        return 1
    fi
}

# summary NAME: the counts each tool reports, picked from its log.
summary() {
    case "$1" in
        sanity) echo ": $(grep -c '^Running sanity test' "$logs/sanity.log") sanity tests" ;;
        # ansible-test runs pytest once per kind of plugin (modules, module_utils): add them up.
        units) echo ": $(grep -E '^=+ .* in [0-9.]+s' "$logs/units.log" | grep -oE '[0-9]+ (passed|failed)' |
                          awk '{n[$2] += $1} END {printf "%d passed, %d failed", n["passed"], n["failed"]}')" ;;
        lint) echo ": $(grep -E '^(Passed|Failed)' "$logs/lint.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 1)" ;;
    esac
}

export PATH="$VENV_BIN:$PATH"
check sanity ansible-test sanity --venv --python "$PYTHON_VERSION" --color no
check units ansible-test units --venv --python "$PYTHON_VERSION" --color no tests/unit/plugins/
check lint ansible-lint --profile production --nocolor
