#!/usr/bin/env bash
# Measures how fast a revoke reaches other replicas (BENCHMARKS.md, "Revocation across replicas"):
# three release servers on one new PostgreSQL database, each under a paced VerifyToken load from
# its own `tokenmint-bench` (PROPAGATION_LOAD_SHARE percent of one server's measured maximum per
# replica, default 20; PROPAGATION_LOAD_CONCURRENCY requests in flight, default 4), and
# `tokenmint-propagation` revoking on the first and timing until the other two report REVOKED.
#   scripts/propagation.sh [revokes, default 200] [extra tokenmint-propagation flags…]
# The background load verifies a pool of PROPAGATION_LOAD_POOL tokens (default 100) per replica.
# PROPAGATION_SERVER runs another server binary (e.g. an older build, to compare).
# It first measures one server's verify maximum alone (3 s), to state the background load as a
# share of it. Server settings can be changed through TOKENMINT__* variables (e.g.
# TOKENMINT__BACKGROUND__CHANGE_POLL_INTERVAL_MS=3600000 to measure notifications alone).
set -euo pipefail
cd "$(dirname "$0")/.."
revokes=${1:-200}
shift || true
cargo build --release --quiet -p tokenmint -p tokenmint-bench
bin=${PROPAGATION_SERVER:-$PWD/target/release/tokenmint}
bench=$PWD/target/release/tokenmint-bench
propagation=$PWD/target/release/tokenmint-propagation
work=$(mktemp -d)
db=tokenmint_propagation
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$db" 2>/dev/null || true
  [ -n "${PROPAGATION_KEEP:-}" ] && echo "kept $work" >&2 && return 0
  rm -rf "$work"
}
trap cleanup EXIT
dropdb -h 127.0.0.1 -U postgres --if-exists "$db"
createdb -h 127.0.0.1 -U postgres "$db"
# PROPAGATION_SYNCHRONOUS_COMMIT=off tells a slow disk's fsync stalls apart from the mechanism's
# own delay (never how tokenmint should run: an acknowledged change must be durable).
if [ -n "${PROPAGATION_SYNCHRONOUS_COMMIT:-}" ]; then
  psql -q -h 127.0.0.1 -U postgres -c "ALTER DATABASE $db SET synchronous_commit = ${PROPAGATION_SYNCHRONOUS_COMMIT}"
fi
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
# One master key for the three servers (they share the signing keys in the database).
TOKENMINT__KEYS__MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export TOKENMINT__KEYS__MASTER_KEY
export TOKENMINT__LOG__FILTER=${TOKENMINT__LOG__FILTER:-warn}
scopes=user_manage,token_introspect,wallet_view,wallet_spend,wallet_create,trade_view,trade_trade
token=$("$bin" bootstrap --data-dir "$work" --user bench --scopes "$scopes" --ttl 2h --label propagation 2>/dev/null)
export TOKENMINT_BENCH_TOKEN=$token
ports=(50111 50112 50113)
for port in "${ports[@]}"; do
  "$bin" serve --data-dir "$work" --listen 127.0.0.1:$port 2> "$work/server-$port.log" &
  pids+=($!)
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    "$bench" --addr http://127.0.0.1:$port --scenario health --requests 1 --warmup 0s > /dev/null 2>&1 && break
    sleep 0.1
  done
done
rate() { python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["scenarios"][0]["requests_per_sec"]))' "$1"; }
"$bench" --addr http://127.0.0.1:${ports[0]} --scenario verify --duration 3s --warmup 1s --json "$work/max.json" > /dev/null 2>&1
concurrency=${PROPAGATION_LOAD_CONCURRENCY:-4}
share=${PROPAGATION_LOAD_SHARE:-20}
max=$(rate "$work/max.json")
per_replica=$((max * share / 100))
load=(--scenario verify --connections 1 --concurrency "$concurrency" --rate "$per_replica" --pool "${PROPAGATION_LOAD_POOL:-100}" --warmup 0s)
light_pids=()
for port in "${ports[@]}"; do
  "$bench" --addr http://127.0.0.1:$port "${load[@]}" --duration 3s --json "$work/light-$port.json" > /dev/null 2>&1 &
  light_pids+=($!)
done
wait "${light_pids[@]}"
light=$(for port in "${ports[@]}"; do rate "$work/light-$port.json"; done | tr '\n' ' ')
for port in "${ports[@]}"; do
  "$bench" --addr http://127.0.0.1:$port "${load[@]}" --duration 1h > /dev/null 2>&1 &
  pids+=($!)
done
echo "3 replicas on PostgreSQL, $(nproc) cores; one server alone verifies at most $max req/s;" \
  "background load during the measurement: VerifyToken paced at $per_replica req/s ($share%) per replica," \
  "$concurrency in flight, ${PROPAGATION_LOAD_POOL:-100} tokens each" \
  "(reached alone, all three at once: $light req/s)"
"$propagation" --origin http://127.0.0.1:${ports[0]} \
  --replica http://127.0.0.1:${ports[1]},http://127.0.0.1:${ports[2]} --revokes "$revokes" "$@"
