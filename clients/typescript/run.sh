#!/usr/bin/env bash
# Runs the TypeScript client's end-to-end check: the locked dependencies (npm ci), fresh code from
# proto/ (generate.sh), a type check of it and of e2e.ts (tsc --noEmit), then e2e.ts under tsx
# against a real `tokenmint serve` started from the binary given as $1 (default:
# target/debug/tokenmint).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-"$here/../../target/debug/tokenmint"}
case $binary in /*) ;; *) binary="$PWD/$binary" ;; esac

cd "$here"
npm ci --silent --no-audit --no-fund
# Generation must need no network. Where a network namespace can be made (root on Linux, as in
# CI), generate inside one that has no interfaces, so that a remote plugin or a Buf Schema
# Registry dependency slipping into buf.gen.yaml fails here rather than going unnoticed.
if unshare --net true 2> /dev/null; then
  unshare --net ./generate.sh
  echo "generated without network access (unshare --net)"
else
  ./generate.sh
fi
node_modules/.bin/tsc --noEmit
echo "tsc --noEmit: ok"
exec node_modules/.bin/tsx e2e.ts --tokenmint "$binary"
