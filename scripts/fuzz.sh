#!/usr/bin/env bash
# Build and run every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#   scripts/fuzz.sh --build-only              (install cargo-fuzz, build the
#                                             targets, run nothing; a later
#                                             run then starts fuzzing at once)
#
# Each target starts from its committed corpus (fuzz/corpus/<target>, read
# only: new inputs go to a scratch directory) plus fuzz/regressions/<target>.
# A crash, a hang (an input running longer than FUZZ_TIMEOUT seconds) or an
# allocation/RSS over 2 GB fails the run; the failing input's path is
# printed (fuzz/artifacts/<target>/...). Copy it to
# fuzz/regressions/<target>/ once fixed, so tests/fuzz_corpus.rs replays it.
#
# Needs nightly (used if rustup has it; otherwise stable with
# RUSTC_BOOTSTRAP=1) and cargo-fuzz (installed with `cargo install
# cargo-fuzz --locked` if missing).
#
# Environment:
#   FUZZ_TARGETS      space-separated subset of targets (default: all)
#   FUZZ_SANITIZER    address (default) or none (faster, no ASan)
#   FUZZ_TIMEOUT      seconds one input may take before it counts as a hang (30)
#   FUZZ_JOBS         parallel fuzzing processes per target (1)
#   FUZZ_KEEP_CORPUS  directory that keeps the grown corpus between runs
#                     (default: a temporary directory)
# Prints "fuzz: N passed, N failed" (one per target) and exits non-zero on
# any failure.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

build_only=0
if [[ ${1:-} == --build-only ]]; then
    build_only=1
    shift
fi
seconds="${1:-60}"
[[ $seconds =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh [--build-only | SECONDS_PER_TARGET]"
sanitizer="${FUZZ_SANITIZER:-address}"
timeout_s="${FUZZ_TIMEOUT:-30}"
jobs="${FUZZ_JOBS:-1}"

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    warn "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Per-target libFuzzer options: the largest input worth mutating.
max_len() {
    case $1 in
        group_records) echo 16384 ;;
        *) echo 65536 ;;
    esac
}

cd fuzz
if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
((${#targets[@]})) || die "no fuzz target found"

log "building ${targets[*]} (sanitizer: $sanitizer, debug assertions on)"
build_rc=0
cargo "${toolchain[@]}" fuzz build --debug-assertions --sanitizer "$sanitizer" || build_rc=$?
if ((build_rc != 0)); then
    echo "fuzz: 0 passed, ${#targets[@]} failed"
    die "the fuzz targets do not build"
fi
if ((build_only)); then
    log "built ${#targets[@]} fuzz targets"
    exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0
declare -a crashes=()
for t in "${targets[@]}"; do
    corpus="${FUZZ_KEEP_CORPUS:-$scratch}/$t"
    mkdir -p "$corpus" "artifacts/$t"
    seeds=()
    for d in "corpus/$t" "regressions/$t"; do
        [[ -d $d ]] && seeds+=("$d")
    done
    log "fuzzing $t for ${seconds}s"
    out="$scratch/$t.log"
    parallel=()
    if ((jobs > 1)); then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    rc=0
    cargo "${toolchain[@]}" fuzz run --debug-assertions --sanitizer "$sanitizer" "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout="$timeout_s" \
        -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${parallel[@]}" \
        >"$out" 2>&1 || rc=$?
    # Each job logs to fuzz-N.log when -jobs > 1.
    if ((jobs > 1)); then
        cat fuzz-*.log >>"$out" 2>/dev/null || true
        rm -f fuzz-*.log
    fi
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$out" || true
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n 1)"
    if ((rc == 0)) && [[ -z $artifact ]]; then
        passed=$((passed + 1))
        continue
    fi
    failed=$((failed + 1))
    tail -n 60 "$out" >&2
    if [[ -n $artifact ]]; then
        crashes+=("$t: fuzz/$artifact")
    else
        crashes+=("$t: failed with status $rc (no crashing input recorded; see output above)")
    fi
done

if ((${#crashes[@]})); then
    echo
    echo "crashing inputs (reproduce: cd fuzz && cargo +nightly fuzz run -a TARGET INPUT):"
    printf '  %s\n' "${crashes[@]}"
fi
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
