#!/usr/bin/env bash
# Runs every fuzz target (or the TARGETs named) for SECONDS (default 600) with cargo-fuzz
# on the nightly toolchain (`cargo install cargo-fuzz`), one after the other, and prints how many
# executions each reached. New inputs go to target/corpus/<target> (not committed): the
# seeds in corpus/<target> are only read. A crash stops the script with libFuzzer's
# report and the input in artifacts/<target>/; add it to corpus/<target> once fixed.
set -euo pipefail
cd "$(dirname "$0")"
# Usage: fuzz/run-all.sh [SECONDS [TARGET...]]
seconds="${1:-600}"
shift || true
if [ "$#" -gt 0 ]; then
  targets="$*"
else
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^provision-fuzz$')
fi
summary=()
for t in $targets; do
  mkdir -p "target/corpus/$t" "corpus/$t"
  log="target/fuzz-$t.log"
  echo "fuzz: $t for ${seconds}s"
  cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || {
    tail -40 "$log"
    echo "fuzz: $t failed; see $log" >&2
    exit 1
  }
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  summary+=("$t: ${runs:-?} executions in ${seconds}s")
done
printf '%s\n' "${summary[@]}"
