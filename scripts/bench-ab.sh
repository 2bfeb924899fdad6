#!/usr/bin/env bash
# Compares two tokenmint server binaries on this machine, interleaved (A, B, A, B, …), each on a
# fresh SQLite data directory, server pinned to core 0 and load generator (the NEW side's, for
# both sides) to core 1. On a shared VM whose speed drifts by ±15% within minutes, this is how a
# change is measured (BENCHMARKS.md, "Old build against new").
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [rounds, default 3]
# The load generator is the `tokenmint-bench` next to NEW_BINARY (cargo builds both into the same
# target/release/), or AB_BENCH if set. A NEW build from before the load generator had its own
# binary has none next to it: then its `tokenmint bench` subcommand is used.
# Build both sides with the same command (bench.sh's: cargo build --release -p tokenmint
# -p tokenmint-bench): another -p set unifies dependency features differently and makes a
# different server binary out of the same code.
# Environment: AB_SCENARIOS (default health,verify,create), AB_DURATION (default 4s), AB_BENCH.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [rounds]" >&2; exit 2; }
old=$(realpath "$1"); new=$(realpath "$2"); rounds=${3:-3}
if [ -n "${AB_BENCH:-}" ]; then
  client=("$(realpath "$AB_BENCH")")
elif [ -x "$(dirname "$new")/tokenmint-bench" ]; then
  client=("$(dirname "$new")/tokenmint-bench")
elif "$new" bench --help > /dev/null 2>&1; then
  client=("$new" bench)
else
  echo "$0: no tokenmint-bench next to $new (copy it there, or set AB_BENCH)" >&2; exit 2
fi
echo "load generator: ${client[*]}" >&2
scopes=user_manage,token_introspect,wallet_view,wallet_spend,wallet_create,trade_view,trade_trade
port=50096
pin_server=""; pin_bench=""
if [ "$(nproc)" -ge 2 ]; then pin_server="taskset -c 0"; pin_bench="taskset -c 1"; fi
server=""; work=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$work" ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT
for round in $(seq 1 "$rounds"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    work=$(mktemp -d)
    token=$("$bin" bootstrap --data-dir "$work" --user bench --scopes "$scopes" --ttl 2h --label bench 2>/dev/null)
    TOKENMINT__LOG__FILTER=warn $pin_server "$bin" serve --data-dir "$work" --listen 127.0.0.1:$port 2>/dev/null &
    server=$!
    for _ in $(seq 1 100); do
      "${client[@]}" --addr http://127.0.0.1:$port --scenario health --requests 1 --warmup 0s > /dev/null 2>&1 && break
      sleep 0.1
    done
    report=$($pin_bench "${client[@]}" --addr http://127.0.0.1:$port --token "$token" \
      --scenario "${AB_SCENARIOS:-health,verify,create}" --warmup 1s --duration "${AB_DURATION:-4s}" 2>/dev/null)
    line="round $round $side:"
    while read -r name ok rate _; do
      line="$line $name=$rate"
    done < <(echo "$report" | awk '/^scenario /{t=1; next} t && NF==0 {t=0} t')
    echo "$line"
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    rm -rf "$work"; work=""
  done
done
