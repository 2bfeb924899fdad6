#!/usr/bin/env bash
# Runs the Python client's end-to-end check: a venv in clients/python/.venv (created if missing),
# the pinned requirements, fresh stubs from proto/ (generate.sh), then e2e.py against a real
# `tokenmint serve` started from the binary given as $1 (default: target/debug/tokenmint).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-"$here/../../target/debug/tokenmint"}
case $binary in /*) ;; *) binary="$PWD/$binary" ;; esac

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

PYTHON="$venv/bin/python" "$here/generate.sh"
(cd "$here" && "$venv/bin/python" -m unittest --quiet test_status_list)
exec "$venv/bin/python" "$here/e2e.py" --tokenmint "$binary"
