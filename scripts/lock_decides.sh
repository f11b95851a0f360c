#!/usr/bin/env bash
# Shows that the lock, not the package index, decides what a fresh install gets (issue 16).
#
# Installs requirements.lock into two fresh venvs the way `make` does; before the second, the index changes: a
# newer release of PyYAML (99.0, built here) appears beside it. Both get the same versions (pip freeze is
# identical), while an install from pyproject.toml's range alone (PyYAML>=6) takes the newer release.
# Usage: bash scripts/lock_decides.sh   (about 4 minutes; network to the package index, or its cache)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}

mkdir -p "$work/newer/src/yaml"
printf '[project]\nname = "PyYAML"\nversion = "99.0"\n' > "$work/newer/pyproject.toml"
touch "$work/newer/src/yaml/__init__.py"
"$python" -m pip wheel -qq --no-deps -w "$work/index" "$work/newer" 2>/dev/null

install() {  # venv, extra pip arguments...
    "$python" -m venv "$1"
    "$1/bin/pip" install -qq --require-hashes --no-deps -r requirements.lock "${@:2}"
    "$1/bin/pip" freeze --all | sort > "$1.freeze"
}
install "$work/first"
install "$work/second" --find-links "$work/index"
"$python" -m venv "$work/ranges"
"$work/ranges/bin/pip" install -qq --no-deps "PyYAML>=6" --find-links "$work/index"

echo "locked PyYAML:            $(grep -i '^pyyaml==' requirements.lock | cut -d' ' -f1)"
echo "first install:            $(grep -i '^pyyaml==' "$work/first.freeze")  ($(wc -l < "$work/first.freeze") packages)"
echo "second, newer release on the index: $(grep -i '^pyyaml==' "$work/second.freeze")  ($(wc -l < "$work/second.freeze") packages)"
echo "the range alone:          $("$work/ranges/bin/pip" freeze | grep -i '^pyyaml==')"
if diff -q "$work/first.freeze" "$work/second.freeze" >/dev/null; then
    echo "same versions in both installs: the lock decides"
else
    diff "$work/first.freeze" "$work/second.freeze"; exit 1
fi
