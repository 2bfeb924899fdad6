#!/usr/bin/env bash
# Builds and runs tokenmint's fuzz targets (fuzz/, cargo-fuzz + libFuzzer), one after another.
#   scripts/fuzz.sh [SECONDS]         every target for SECONDS each (default 15): CI and quick checks
#   scripts/fuzz.sh --long [RUNS]     every target for RUNS executions each (default 10000000), at
#                                     the lowest CPU priority, printing a result table (markdown)
# Environment:
#   FUZZ_TARGETS     the targets to run (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER   address | none (default none: tokenmint's parsers are safe Rust, so the
#                    sanitizer would only slow the run down; debug assertions and overflow checks
#                    stay on either way; use address when unsafe code enters a fuzzed path)
#   FUZZ_RESULTS     a file to append the --long table rows to
#   FUZZ_NICE        the --long run's niceness (default 19: it yields to everything else; 0 when
#                    it must finish beside builds)
# Seeds are read from fuzz/corpus/<target>/ (committed); what libFuzzer finds on the way goes to
# fuzz/work/<target>/ and crashes to fuzz/artifacts/<target>/ (both ignored by git). A crash fails
# the script, names the artifact, and is reproduced with
#   cargo +nightly fuzz run --sanitizer none <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

mode=short
if [ "${1:-}" = "--long" ]; then
  mode=long
  runs=${2:-10000000}
else
  seconds=${1:-15}
fi
sanitizer=${FUZZ_SANITIZER:-none}

if ! command -v cargo-fuzz > /dev/null; then
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly rustc flags: the nightly toolchain when installed, else stable told to
# accept them.
if rustup toolchain list 2> /dev/null | grep -q '^nightly'; then
  fuzz() { cargo +nightly fuzz "$@"; }
else
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi
# Its own target directory (gitignored), whatever CARGO_TARGET_DIR says: the sanitizer-coverage
# flags would otherwise invalidate the main build's artifacts.
build_flags=(--sanitizer "$sanitizer" --target-dir fuzz/target)

targets=${FUZZ_TARGETS:-$(cd fuzz && fuzz list)}
build_start=$(date +%s)
fuzz build "${build_flags[@]}"
echo "fuzz build: $(( $(date +%s) - build_start ))s"

failed=()
for target in $targets; do
  mkdir -p "fuzz/work/$target"
  if [ "$mode" = short ]; then
    limit=(-max_total_time="$seconds")
    run=(fuzz run)
  else
    limit=(-runs="$runs")
    run=(nice -n "${FUZZ_NICE:-19}" cargo)
    if rustup toolchain list 2> /dev/null | grep -q '^nightly'; then run+=(+nightly); fi
    run+=(fuzz run)
  fi
  log="fuzz/work/$target.log"
  start=$(date +%s)
  status=ok
  if ! "${run[@]}" "${build_flags[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
      "${limit[@]}" -timeout=30 -print_final_stats=1 > "$log" 2>&1; then
    status=CRASH
    failed+=("$target")
  fi
  elapsed=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$target: ${execs:-?} executions in ${elapsed}s: $status"
  if [ "$status" = CRASH ]; then
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written to|artifact_prefix' "$log" | head -20 || true
  fi
  if [ "$mode" = long ] && [ -n "${FUZZ_RESULTS:-}" ]; then
    printf '| `%s` | %s | %ss | %s |\n' "$target" "${execs:-?}" "$elapsed" \
      "$([ "$status" = ok ] && echo "0 crashes" || echo "CRASH (see fuzz/artifacts/$target)")" >> "$FUZZ_RESULTS"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (logs in fuzz/work/<target>.log)" >&2
  exit 1
fi
