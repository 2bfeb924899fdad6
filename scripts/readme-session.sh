#!/usr/bin/env bash
# Runs the grpcurl session of README.md exactly as written (the block between the
# `grpcurl-session` markers) against a fresh `tokenmint serve`, so the documentation cannot rot.
# Needs: a built tokenmint binary (target/debug or target/release), grpcurl and jq on PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/target/debug"
[ -x "$bin_dir/tokenmint" ] || bin_dir="$root/target/release"
[ -x "$bin_dir/tokenmint" ] || { echo "build tokenmint first (cargo build)" >&2; exit 1; }
export PATH="$bin_dir:$PATH"

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

tokenmint serve > server.log 2>&1 &
server=$!
for _ in $(seq 1 100); do
  grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check > /dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat server.log >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done

session=$(awk '/<!-- grpcurl-session:start -->/{on=1; next} /<!-- grpcurl-session:end -->/{on=0} on' "$root/README.md" \
  | sed '/^```/d')
[ -n "$session" ] || { echo "no grpcurl session found in README.md" >&2; exit 1; }
echo "$session" > session.sh
bash -euo pipefail session.sh
echo "README grpcurl session: ok"
