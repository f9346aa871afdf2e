#!/usr/bin/env bash
# The log cleaner's benchmark (issue 9): cleaning throughput (MB/s per core)
# and memory against the key count and the key map's size, from the
# compute-path benchmark examples/cleaner_bench.rs (one run per key count and
# map size, each printing its passes and a summary with MB/s and peak RSS).
#
#   scripts/bench-cleaner.sh [KEYS...]     default: 100000 1000000 10000000
#
# Environment: CLEANER_MAP_MIB (default "128 32": key map sizes to try),
# CLEANER_UPDATES (default 2: records per key), CLEANER_CODEC (default
# none). Results of a run on the 2-core machine: docs/benchmark-cleaner.md.
# The cleaner inside a serving broker (its pacing, produce latency while it
# runs): BENCH_CLEANING_BYTES=4GiB scripts/bench.sh fixed-rate-200.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

case "${1:-}" in
-h | --help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

keys=("$@")
((${#keys[@]})) || keys=(100000 1000000 10000000)
read -r -a maps <<<"${CLEANER_MAP_MIB:-128 32}"
updates=${CLEANER_UPDATES:-2}
codec=${CLEANER_CODEC:-none}

cargo build --release --example cleaner_bench
bin="$REPO_ROOT/target/release/examples/cleaner_bench"
for k in "${keys[@]}"; do
    for m in "${maps[@]}"; do
        log "cleaner: $k keys x $updates updates, $m MiB key map, codec $codec"
        "$bin" "$k" "$updates" "$m" "$codec"
    done
done
