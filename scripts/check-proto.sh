#!/usr/bin/env bash
# The proto contract checks of CI: buf lint (DEFAULT + COMMENTS), buf breaking (FILE) against the
# released image proto/tokenmint.binpb, and a self-test proving `buf breaking` does catch a break
# (a renamed field), so the check cannot silently pass.
set -euo pipefail
cd "$(dirname "$0")/.."
buf() { npx --no-install buf "$@"; }
quiet() { # buf prints a deprecation note for DEFAULT on stderr; show stderr only on failure
  local err; err=$(mktemp)
  if ! "$@" 2> "$err"; then cat "$err" >&2; rm -f "$err"; return 1; fi
  rm -f "$err"
}
quiet buf lint proto
echo "buf lint: ok"
quiet buf breaking proto --against proto/tokenmint.binpb
echo "buf breaking against proto/tokenmint.binpb: ok"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r proto "$scratch/"
sed -i 's/^  string label = 3;/  string title = 3;/' "$scratch/proto/tokenmint/v1/token.proto"
if buf breaking "$scratch/proto" --against proto/tokenmint.binpb > /dev/null 2>&1; then
  echo "buf breaking did not catch a renamed field" >&2
  exit 1
fi
echo "buf breaking self-test (renamed field is caught): ok"
