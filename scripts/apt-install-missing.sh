#!/usr/bin/env bash
# apt-install-missing.sh WHO PACKAGE...: install (as root) those Debian/Ubuntu packages that are not
# installed yet, saying which under the name WHO; with nothing missing, apt is not touched at all.
set -euo pipefail
who="${1:?usage: apt-install-missing.sh WHO PACKAGE...}"
shift
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "$who: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
