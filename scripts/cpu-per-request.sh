#!/usr/bin/env bash
# Server CPU per request of one tokenmint binary under one load-generator scenario: the server
# pinned to core 0 on a fresh SQLite data directory, `tokenmint-bench` on core 1, CPU time read
# from /proc/<pid>/stat before and after the run and divided by the requests answered. On a
# shared VM whose throughput drifts by ±15% within minutes, CPU per request is much steadier;
# run it interleaved for two binaries (BENCHMARKS.md, "Server CPU per CreateToken").
#   scripts/cpu-per-request.sh BINARY [scenario, default create] [seconds, default 6]
# Environment: CPR_BENCH (the load generator; default: tokenmint-bench next to BINARY),
# CPR_SQL (SQL run on the database after bootstrap, before serving: an experiment's knob).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [scenario] [seconds]" >&2; exit 2; }
bin=$(realpath "$1"); scenario=${2:-create}; seconds=${3:-6}
bench=${CPR_BENCH:-$(dirname "$bin")/tokenmint-bench}
[ -x "$bench" ] || { echo "$0: no load generator at $bench (set CPR_BENCH)" >&2; exit 2; }
port=50098
scopes=user_manage,token_introspect,wallet_view,wallet_spend,wallet_create,trade_view,trade_trade
work=$(mktemp -d); server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT
token=$("$bin" bootstrap --data-dir "$work" --user bench --scopes "$scopes" --ttl 2h --label bench 2>/dev/null)
if [ -n "${CPR_SQL:-}" ]; then sqlite3 "$work/tokenmint.db" "$CPR_SQL"; fi
TOKENMINT__LOG__FILTER=warn taskset -c 0 "$bin" serve --data-dir "$work" --listen 127.0.0.1:$port 2>/dev/null &
server=$!
for _ in $(seq 1 100); do
  "$bench" --addr http://127.0.0.1:$port --scenario health --requests 1 --warmup 0s > /dev/null 2>&1 && break
  sleep 0.1
done
before=$(awk '{print $14 + $15}' "/proc/$server/stat")
report=$(taskset -c 1 "$bench" --addr http://127.0.0.1:$port --token "$token" \
  --scenario "$scenario" --warmup 0s --duration "${seconds}s" 2>/dev/null)
after=$(awk '{print $14 + $15}' "/proc/$server/stat")
line=$(echo "$report" | awk -v s="$scenario" '$1 ~ "^"s {print; exit}')
ok=$(echo "$line" | awk '{print $2}'); rate=$(echo "$line" | awk '{print $3}')
ticks=$(getconf CLK_TCK)
awk -v b="$before" -v a="$after" -v t="$ticks" -v n="$ok" -v r="$rate" -v name="$(basename "$bin")" \
  'BEGIN { printf "%s req/s=%s cpu_us_per_request=%.1f\n", name, r, (a - b) * 1e6 / t / n }'
