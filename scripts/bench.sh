#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: a release tokenmint pinned to core 0, the load generator
# (`tokenmint-bench`, built from bench/ into the same target/release/) pinned to core 1, every
# scenario plus the crypto floors in one run (measured on the server's core, between rounds, while
# it is idle), on SQLite or PostgreSQL.
#   scripts/bench.sh sqlite|postgres [extra tokenmint-bench flags…]
# Server settings can be changed through TOKENMINT__* variables (e.g. TOKENMINT__CACHE__VERIFIED_CAPACITY=1
# to measure verification without the verified-signature cache, or TOKENMINT__LOG__FILTER=info to
# include the per-RPC log line; default warn), the scenarios with BENCH_SCENARIOS (default
# health,verify,create,mixed), the rounds with BENCH_ROUNDS (default 3, interleaved, 5 s each:
# BENCH_DURATION).
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-sqlite}
shift || true
cargo build --release --quiet -p tokenmint -p tokenmint-bench
bin=$PWD/target/release/tokenmint
bench=$PWD/target/release/tokenmint-bench
work=$(mktemp -d)
port=50090
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ "$store" = postgres ] && dropdb -h 127.0.0.1 -U postgres --if-exists tokenmint_bench 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
case "$store" in
  sqlite) unset DATABASE_URL ;;
  postgres)
    dropdb -h 127.0.0.1 -U postgres --if-exists tokenmint_bench
    createdb -h 127.0.0.1 -U postgres tokenmint_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/tokenmint_bench ;;
  *) echo "usage: $0 sqlite|postgres" >&2; exit 2 ;;
esac
scopes=user_manage,token_introspect,wallet_view,wallet_spend,wallet_create,trade_view,trade_trade
token=$("$bin" bootstrap --data-dir "$work" --user bench --scopes "$scopes" --ttl 2h --label bench 2>/dev/null)
cores=$(nproc)
pin_server=""; pin_bench=""; floors_core=()
if [ "$cores" -ge 2 ]; then pin_server="taskset -c 0"; pin_bench="taskset -c 1"; floors_core=(--floors-core 0); fi
TOKENMINT__LOG__FILTER=${TOKENMINT__LOG__FILTER:-warn} $pin_server "$bin" serve --data-dir "$work" --listen 127.0.0.1:$port 2> "$work/server.log" &
server=$!
for _ in $(seq 1 100); do
  "$bench" --addr http://127.0.0.1:$port --scenario health --requests 1 --warmup 0s > /dev/null 2>&1 && break
  sleep 0.1
done
echo "store: $store; server: ${pin_server:-unpinned}; load generator: ${pin_bench:-unpinned}; $(nproc) cores"
$pin_bench "$bench" --addr http://127.0.0.1:$port --token "$token" --floors "${floors_core[@]}" \
  --scenario "${BENCH_SCENARIOS:-health,verify,create,mixed}" --rounds "${BENCH_ROUNDS:-3}" --duration "${BENCH_DURATION:-5s}" \
  --json "target/bench-$store.json" "$@"
echo "server resident set: $(ps -o rss= -p "$server") KiB"
