#!/usr/bin/env bash
# Record the fuzz seed corpus (fuzz/corpus/<target>/) from the e2e tests.
#
#   scripts/fuzz-seeds.sh
#
# 1. builds the broker and the seed tool (examples/fuzz_seeds.rs);
# 2. runs a few e2e test files (tests/python) against brokers started with
#    RINGLOG_CAPTURE_FRAMES=DIR, which record each received request frame
#    (bounded per API and version, see src/server/capture.rs);
# 3. turns the recorded frames, the Produce record sets in them, built
#    batches of every codec and the tests' __consumer_offsets segments into
#    deduplicated seeds under byte budgets (< 2 MB in all), and adds the new
#    ones to fuzz/corpus/.
#
# Environment:
#   FUZZ_SEED_TESTS   the test files to run (default: a set covering every API)
#   FUZZ_SEED_FRESH=1 empty fuzz/corpus/ first (default: only add)
#   RINGLOG_VENV      the Python venv with the e2e test deps (.venv-test)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

VENV="${RINGLOG_VENV:-$REPO_ROOT/.venv-test}"
[[ -x $VENV/bin/python ]] || die "no test venv at $VENV: run scripts/test.sh once (it creates it)"

default_tests="tests/python/test_kcat.py tests/python/test_confluent.py tests/python/test_kafka_python.py
tests/python/test_admin.py tests/python/test_groups.py tests/python/test_idempotence.py
tests/python/test_bad_input.py tests/python/test_fetch_limits.py"
read -r -d '' -a tests <<<"${FUZZ_SEED_TESTS:-$default_tests}" || true

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "cargo build --release (broker and seed tool)"
cargo build --release --bin ringlog --example fuzz_seeds

log "running ${#tests[@]} e2e test files with RINGLOG_CAPTURE_FRAMES"
rc=0
RINGLOG_CAPTURE_FRAMES="$work/frames" RINGLOG_BIN="$REPO_ROOT/target/release/ringlog" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider --basetemp="$work/pytest" "${tests[@]}" || rc=$?
if ((rc != 0)); then
    warn "some e2e tests failed (exit $rc); seeding from what was recorded"
fi
[[ -d $work/frames ]] || die "no frame was recorded"
log "$(find "$work/frames" -type f | wc -l) frames recorded"

if [[ ${FUZZ_SEED_FRESH:-0} == 1 ]]; then
    rm -rf fuzz/corpus
fi
target/release/examples/fuzz_seeds "$work/frames" "$work/pytest" fuzz/corpus

total=$(du -sb fuzz/corpus | cut -f1)
log "fuzz/corpus: $total bytes"
for d in fuzz/corpus/*/; do
    printf '  %-16s %4d files %8d bytes\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)" "$(du -sb "$d" | cut -f1)"
done
((total < 2 * 1024 * 1024)) || die "the corpus is over 2 MB"
