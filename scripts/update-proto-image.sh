#!/usr/bin/env bash
# Records the current proto contract as the released one (proto/tokenmint.binpb), against which
# `buf breaking` checks every change in CI. Run it deliberately, when a release adds to the API.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint proto
npx buf build proto -o proto/tokenmint.binpb
echo "proto/tokenmint.binpb updated; commit it with the proto change"
