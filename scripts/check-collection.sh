#!/usr/bin/env bash
# The collection's checks, on the built tarball as ansible-galaxy installs it (what Galaxy and users
# get): for each ansible-core of requirements-ansible-matrix.txt, ansible-test sanity (every test)
# and units; then ansible-lint --profile production, antsibull-docs lint-collection-docs, the docs
# site build (scripts/build-docsite.sh), antsibull-changelog lint and galaxy-importer. Run by
# scripts/test.sh after install-deps.sh and install-matrix.sh. Two ansible-core versions run at a
# time; each tool's output goes to a log that is shown when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
JOBS="${CHECK_JOBS:-2}"
started_all=$SECONDS

work="$(mktemp -d /tmp/btrfs-backup-checks.XXXXXX)"
trap 'rm -rf "$work"' EXIT
logs="$work/logs"
mkdir -p "$logs"
export ANSIBLE_GALAXY="$REPO/.venv/bin/ansible-galaxy"
tarball="$(scripts/build-collection.sh "$work/build")"
echo "check-collection: checking $(basename "$tarball") ($(tar tzf "$tarball" | grep -vc '/$') files)"

# install ROOT: install the tarball under ROOT; print the collection's folder there.
install() {
    "$ANSIBLE_GALAXY" collection install --offline --force -p "$1" "$tarball" >"$logs/install-$(basename "$1").log" 2>&1
    echo "$1/ansible_collections/btrfs/backup"
}

# check NAME DIR COMMAND...: run COMMAND in DIR; say how it went and how long it took.
check() {
    local name="$1" dir="$2" started=$SECONDS
    shift 2
    if (cd "$dir" && "$@") >"$logs/$name.log" 2>&1; then
        echo "check-collection: $name passed ($((SECONDS - started)) s)$(summary "$name")"
    else
        echo "check-collection: $name FAILED ($((SECONDS - started)) s); its output:" >&2
        # Without pip's install chatter from the venvs that ansible-test makes.
        grep -vE "^WARNING: Location 'file:|^(Looking in|Collecting|Installing collected|Successfully|Using cached pip|Processing) |^  (Downloading|Attempting|Found existing|Uninstalling|Successfully)|━" \
            "$logs/$name.log" | tail -n 150 >&2
        return 1
    fi
}

# summary NAME: the counts each tool reports, picked from its log.
summary() {
    local log="$logs/$1.log"
    case "$1" in
        sanity*) echo ": $(grep -c '^Running sanity test' "$log") test runs ($(grep -o '^Running sanity test "[a-z0-9-]*"' "$log" | sort -u | wc -l) tests$(
                    grep -o '^Running sanity test .* on Python [0-9.]*' "$log" | grep -o 'Python [0-9.]*' | sort -uV | awk '{v = v sep $2; sep = ", "} END {if (v) print "; Python " v}'))" ;;
        # ansible-test runs pytest once per kind of plugin (modules, module_utils): add them up.
        units*) echo ": $(grep -E '^=+ .* in [0-9.]+s' "$log" | grep -oE '[0-9]+ (passed|failed)' |
                          awk '{n[$2] += $1} END {printf "%d passed, %d failed", n["passed"], n["failed"]}')" ;;
        lint) echo ": $(grep -E '^(Passed|Failed)' "$log" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 1)" ;;
        docs) echo ": $(grep -v "^WARNING: Location" "$log" | grep -c . || true) findings" ;;
        changelog) echo ": no findings" ;;
        docsite) echo ": $(tail -n 1 "$log" | sed 's/^build-docsite: //')" ;;
    esac
}

# check_core PIN PYTHON SCOPE: ansible-test sanity and units with one ansible-core, in its own install.
check_core() {
    trap - EXIT  # run in the background: the folders are the main script's to remove
    local version="${1#ansible-core==}" python="$2" scope="$3"
    local bin="$REPO/.venvs/ansible-core-$version/bin" root="$work/core-$version" targets="$work/core-$version-pythons"
    local collection sanity_python=(--python "$python")
    # ansible-test bootstraps pip in each venv it makes with a script it downloads from a host that
    # is not reachable here; with a cached copy in place it uses that instead (see the stand-in's docstring).
    # Each ansible-core gets a home of its own: ansible-test keeps its sanity venvs in
    # ~/.ansible/test, and two versions building the same venv there at once break each other.
    export HOME="$work/home-core-$version"
    local pip_version
    pip_version="$(sed -n "s/^ *pip='\([0-9.]*\)',$/\1/p" "$("$bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")"
    [ -n "$pip_version" ] || { echo "check-collection: cannot tell which pip ansible-test $version bootstraps" >&2; return 1; }
    mkdir -p "$HOME/.ansible/test/cache" "$targets"
    cp scripts/ansible-test-get-pip.py "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    collection="$(install "$root")"
    if [ "$scope" = all ]; then
        # Every target Python this machine has (tests/config.yml and ansible-core narrow them down).
        sanity_python=()
        for minor in 8 9 10 11 12 13 14; do
            found="$(scripts/find-python.sh "3.$minor" 2>/dev/null)" && ln -sf "$found" "$targets/python3.$minor"
        done
    fi
    local tag="ansible-core $version on Python $python" status=0
    PATH="$targets:$bin:$PATH" check "sanity $tag" "$collection" \
        ansible-test sanity --venv "${sanity_python[@]}" --color no || status=1
    PATH="$bin:$PATH" check "units $tag" "$collection" \
        ansible-test units --venv --python "$python" --color no tests/unit/plugins/ || status=1
    return "$status"
}

# The matrix, JOBS versions at a time; every version runs to its end, then any failure fails the check.
pids=()
while read -r pin python scope; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    check_core "$pin" "$python" "$scope" &
    pids+=($!)
done < <(sed -n 's/^\(ansible-core==[0-9.]*\) *# python=\([0-9.]*\) sanity=\([a-z]*\).*/\1 \2 \3/p' requirements-ansible-matrix.txt)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done

# The other tools, with .venv's ansible-core, on one more install of the tarball.
export PATH="$REPO/.venv/bin:$PATH"
collection="$(install "$work/tools")"
# Every tool resolves btrfs.backup from this install only, never from a collection that an
# earlier run or the README's install left in a default collections path.
export ANSIBLE_COLLECTIONS_PATH="$work/tools"
check lint "$collection" ansible-lint --profile production --nocolor || failed=1
check docs "$collection" \
    antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs . || failed=1
# The docs site as the Ansible documentation builds it, from this install, offline; any warning
# fails it.
check docsite "$REPO" scripts/build-docsite.sh "$work/docsite" "$work/tools" || failed=1
check changelog "$collection" antsibull-changelog lint || failed=1
unset ANSIBLE_COLLECTIONS_PATH  # galaxy-importer installs the tarball where it wants it

# galaxy-importer: on the tarball as built, its one accepted finding is the missing repository URL
# (it stops there); a build that names a reserved .invalid address gets through all its checks.
printf '[galaxy-importer]\nRUN_ANSIBLE_TEST = False\n' >"$work/galaxy-importer.cfg"
export GALAXY_IMPORTER_CONFIG="$work/galaxy-importer.cfg"
importer() { python -m galaxy_importer.main "$1" 2>&1 | grep -v "^WARNING: Location 'file:"; }
expected="ERROR: The import failed for the following reason: Invalid collection metadata. 'repository' is required"
findings="$(cd "$work" && importer "$tarball" | grep -E '^(WARNING|ERROR)' || true)"
if [ "$findings" = "$expected" ]; then
    echo "check-collection: galaxy-importer on the tarball: only the expected finding: 'repository' is required"
else
    echo "check-collection: galaxy-importer on the tarball FAILED: findings other than the missing repository URL:" >&2
    echo "$findings" >&2
    failed=1
fi
placeholder="$(GALAXY_REPOSITORY=https://btrfs-backup.invalid/ scripts/build-collection.sh "$work/build-placeholder")"
started=$SECONDS
if (cd "$work" && importer "$placeholder") >"$logs/galaxy-importer.log" && ! grep -qE '^(WARNING|ERROR)' "$logs/galaxy-importer.log"; then
    echo "check-collection: galaxy-importer with a repository URL passed ($((SECONDS - started)) s): $(tail -n 1 "$logs/galaxy-importer.log"), no findings"
else
    echo "check-collection: galaxy-importer with a repository URL FAILED; its output:" >&2
    tail -n 60 "$logs/galaxy-importer.log" >&2
    failed=1
fi

echo "check-collection: $([ "$failed" = 0 ] && echo passed || echo FAILED) in $((SECONDS - started_all)) s"
exit "$failed"
