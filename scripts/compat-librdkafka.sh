#!/usr/bin/env bash
# Runs librdkafka's own regression test suite against a ringlog broker.
#
# librdkafka's sources come from the rdkafka-sys crate on crates.io (it ships
# a copy of librdkafka, tests included). They are fetched into a throwaway
# cargo project, copied into a build directory, built once (cached), and the
# test-runner is run test by test against a fresh broker.
# Tests that call Kafka's CLI tools get stand-ins (scripts/lib/kafka-shim).
#
# Usage: scripts/compat-librdkafka.sh [--build-only] [TESTNUM[:SUBTEST]...]
#
# TESTNUM:SUBTEST runs only the sub-tests of TESTNUM whose name contains
# SUBTEST (librdkafka's SUBTESTS filter). A full run adds the SUBTEST_RUNS
# below: sub-tests that pass of tests that are known failures as a whole, so
# that they are checked (and count) on their own.
#
# Environment:
#   RINGLOG_BIN            broker binary (default: target/release/ringlog)
#   COMPAT_DIR             cache/build directory (default: target/compat)
#   COMPAT_PARALLEL        tests run at once, each in its own test-runner
#                          (default 3; most tests mostly wait on timers)
#   COMPAT_TEST_TIMEOUT    per-test wall-clock limit in seconds (default 720;
#                          0113, which alone runs ~10 minutes, gets 1000)
#   COMPAT_KNOWN_TIMEOUT   limit for tests on the known-failures list (default 60)
#   COMPAT_BUDGET          hard limit in seconds for the whole test run
#                          (default 1560): no test runs past it, and tests
#                          that could not run are reported as not run (and
#                          count as failed)
#   COMPAT_TIMEOUT_MULT    librdkafka test.timeout.multiplier (default 2)
#   COMPAT_JOBS            make -j (default: nproc)
#   COMPAT_KEEP            1 = keep the broker's data dir after the run
#   TEST_KAFKA_VERSION     broker version the tests assume (default 4.0.0:
#                          like Kafka 4.0, ringlog has no Produce < v3 and
#                          no Fetch < v4, so old-protocol variants are
#                          skipped)
#   COMPAT_QUICK           1 = librdkafka's quick mode (-Q); it skips most
#                          sub-tests, so it is for local smoke runs only
#
# Last line of output: "N passed, N failed". Tests listed in
# scripts/librdkafka-known-failures.txt that fail are reported as known
# failures and not counted as failed; exit status is non-zero only when a
# test not on that list fails.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

RDKAFKA_SYS_VERSION="4.10.0"
RINGLOG_BIN="${RINGLOG_BIN:-$REPO_ROOT/target/release/ringlog}"
COMPAT_DIR="${COMPAT_DIR:-$REPO_ROOT/target/compat}"
COMPAT_PARALLEL="${COMPAT_PARALLEL:-3}"
COMPAT_TEST_TIMEOUT="${COMPAT_TEST_TIMEOUT:-720}"
COMPAT_KNOWN_TIMEOUT="${COMPAT_KNOWN_TIMEOUT:-60}"
COMPAT_BUDGET="${COMPAT_BUDGET:-1560}"
COMPAT_TIMEOUT_MULT="${COMPAT_TIMEOUT_MULT:-2}"
COMPAT_JOBS="${COMPAT_JOBS:-$(nproc)}"
KNOWN_FILE="$REPO_ROOT/scripts/librdkafka-known-failures.txt"
export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"

build_only=0
QUICK=()
if [[ ${COMPAT_QUICK:-0} == 1 ]]; then
    QUICK=(-Q)
fi
selected=()
for arg in "$@"; do
    case "$arg" in
        --build-only) build_only=1 ;;
        -h | --help)
            sed -n '2,40p' "$0"
            exit 0
            ;;
        [0-9][0-9][0-9][0-9] | [0-9][0-9][0-9][0-9]:?*) selected+=("$arg") ;;
        *) die "unknown argument: $arg" ;;
    esac
done

mkdir -p "$COMPAT_DIR"
COMPAT_DIR="$(cd "$COMPAT_DIR" && pwd)"

# ---------------------------------------------------------------------------
# 1. Fetch librdkafka's sources through the rdkafka-sys crate.
# ---------------------------------------------------------------------------
fetch_sources() {
    local proj="$COMPAT_DIR/fetch"
    mkdir -p "$proj/src"
    cat >"$proj/Cargo.toml" <<EOF
[package]
name = "ringlog-compat-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = { version = "=$RDKAFKA_SYS_VERSION", default-features = false }

[workspace]
EOF
    echo 'fn main() {}' >"$proj/src/main.rs"
    log "fetching rdkafka-sys $RDKAFKA_SYS_VERSION (librdkafka sources)"
    cargo fetch --quiet --manifest-path "$proj/Cargo.toml" >&2
    local manifest
    manifest="$(cargo metadata --quiet --offline --format-version 1 \
        --manifest-path "$proj/Cargo.toml" |
        python3 -c 'import json, sys
d = json.load(sys.stdin)
print(next(p["manifest_path"] for p in d["packages"] if p["name"] == "rdkafka-sys"))')"
    local src
    src="$(dirname "$manifest")/librdkafka"
    [[ -f $src/tests/test.c ]] || die "no librdkafka test sources in $src"
    echo "$src"
}

SRC="$(fetch_sources)"
RDK_VERSION="$(basename "$(dirname "$SRC")")" # rdkafka-sys-X+LIBRDKAFKA
BUILD="$COMPAT_DIR/build/$RDK_VERSION"
TESTS_DIR="$BUILD/tests"
RUNNER="$TESTS_DIR/test-runner"
CONFIGURE_ARGS=(--disable-gssapi --disable-curl --disable-lz4-ext)
STAMP="$BUILD/.ringlog-build-ok"
stamp_content="$RDK_VERSION ${CONFIGURE_ARGS[*]}"

# ---------------------------------------------------------------------------
# 2. Build librdkafka and its test-runner (cached).
# ---------------------------------------------------------------------------
build_suite() {
    if [[ -x $RUNNER && -f $STAMP && "$(cat "$STAMP")" == "$stamp_content" ]]; then
        log "librdkafka test-runner is up to date ($RUNNER)"
        return 0
    fi
    log "building librdkafka + test-runner from $SRC in $BUILD"
    rm -rf "$BUILD"
    mkdir -p "$(dirname "$BUILD")"
    cp -a "$SRC" "$BUILD"
    chmod -R u+w "$BUILD"
    (
        cd "$BUILD"
        ./configure "${CONFIGURE_ARGS[@]}" >ringlog-configure.txt 2>&1 ||
            { tail -40 ringlog-configure.txt >&2; exit 1; }
        make -j"$COMPAT_JOBS" libs >ringlog-build.txt 2>&1 ||
            { tail -60 ringlog-build.txt >&2; exit 1; }
        make -C tests -j"$COMPAT_JOBS" build >ringlog-tests-build.txt 2>&1 ||
            { tail -60 ringlog-tests-build.txt >&2; exit 1; }
    )
    [[ -x $RUNNER ]] || die "test-runner was not built"
    echo "$stamp_content" >"$STAMP"
    log "built $RUNNER"
}

build_suite
if ((build_only)); then
    exit 0
fi

# ---------------------------------------------------------------------------
# 3. Known failures.
# ---------------------------------------------------------------------------
declare -A KNOWN=()
if [[ -f $KNOWN_FILE ]]; then
    while read -r num reason; do
        [[ -z $num || $num == \#* ]] && continue
        KNOWN[$num]="${reason:-known failure}"
    done <"$KNOWN_FILE"
fi


# ---------------------------------------------------------------------------
# 4. Broker.
# ---------------------------------------------------------------------------
[[ -x $RINGLOG_BIN ]] || die "broker binary not found: $RINGLOG_BIN (run cargo build --release)"

# Each run has its own directory (two runs at once must not share a data
# dir); logs stay there, and $COMPAT_DIR/last-run points at the newest.
mkdir -p "$COMPAT_DIR/runs"
RUN_DIR="$(mktemp -d "$COMPAT_DIR/runs/$(date +%Y%m%d-%H%M%S)-XXXX")"
ln -sfn "$RUN_DIR" "$COMPAT_DIR/last-run.tmp" && mv -T "$COMPAT_DIR/last-run.tmp" "$COMPAT_DIR/last-run"
# Keep the 5 newest runs.
find "$COMPAT_DIR/runs" -mindepth 1 -maxdepth 1 -type d | sort | head -n -5 | xargs -r rm -rf
DATA_DIR="$RUN_DIR/data"
BROKER_LOG="$RUN_DIR/broker.log"
BROKER_CONF="$RUN_DIR/broker.toml"
RESULTS_DIR="$RUN_DIR/results"
mkdir -p "$DATA_DIR" "$RESULTS_DIR"
PORT="$(free_port)"
BROKER_PID=""
BROKER_GEN=0 # bumped whenever the broker had to be restarted

cat >"$BROKER_CONF" <<'TOML'
# librdkafka's "default" test scenario: Kafka's defaults, auto-create on,
# 4 partitions per auto-created topic.
"auto.create.topics.enable" = true
"num.partitions" = 4
"message.max.bytes" = 1048588
"socket.request.max.bytes" = 104857600
TOML

start_broker() {
    "$RINGLOG_BIN" start --data-dir "$DATA_DIR" --listen "127.0.0.1:$PORT" \
        --advertised-listener "127.0.0.1:$PORT" --shards 2 \
        --config "$BROKER_CONF" --log-level info >>"$BROKER_LOG" 2>&1 &
    BROKER_PID=$!
    if ! wait_port 127.0.0.1 "$PORT" 30 "$BROKER_PID"; then
        tail -30 "$BROKER_LOG" >&2 || true
        die "broker did not start listening on 127.0.0.1:$PORT"
    fi
}

declare -A JOB_NUM=() # test job pid -> test number

cleanup() {
    local pid
    for pid in "${!JOB_NUM[@]}"; do
        kill -- "$pid" 2>/dev/null || true
    done
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        stop_pid "$BROKER_PID" 5 >/dev/null
    fi
    if [[ ${COMPAT_KEEP:-0} != 1 ]]; then
        rm -rf "$DATA_DIR"
    fi
    log "broker log and per-test output: $RUN_DIR"
}
trap cleanup EXIT

log "starting ringlog on 127.0.0.1:$PORT (data $DATA_DIR)"
start_broker

# librdkafka's test configuration, per run (RDKAFKA_TEST_CONF).
TEST_CONF="$RUN_DIR/test.conf"
cat >"$TEST_CONF" <<CONF
# Written by scripts/compat-librdkafka.sh
metadata.broker.list=127.0.0.1:$PORT
test.timeout.multiplier=$COMPAT_TIMEOUT_MULT
test.topic.random=true
CONF
rm -f "$TESTS_DIR"/stats_*.json

# Tests that shell out to Kafka's CLI tools (KAFKA_PATH/bin/kafka-topics.sh)
# get stand-ins that use the broker's admin API through confluent-kafka.
SHIM_PYTHON=""
for py in "$REPO_ROOT/.venv-test/bin/python" python3; do
    if "$py" -c 'import confluent_kafka' 2>/dev/null; then
        SHIM_PYTHON="$py"
        break
    fi
done
if [[ -z $SHIM_PYTHON ]]; then
    warn "no Python with confluent_kafka (run scripts/test.sh once): tests using kafka-topics.sh will fail"
fi

# ---------------------------------------------------------------------------
# 5. Run the tests, COMPAT_PARALLEL at a time, each in its own test-runner.
# ---------------------------------------------------------------------------
# Sub-tests run on their own although their test is a known failure as a
# whole (0081 is the omnibus admin test: its consumer-group and committed-
# offset sub-tests pass, while ACLs, AlterConfigs, DeleteRecords and SCRAM
# sub-tests wait for those features).
SUBTEST_RUNS=(0081:Group)
if ((${#selected[@]} == 0)); then
    mapfile -t selected < <(
        cd "$TESTS_DIR" &&
            find . -maxdepth 1 -name '[0-7][0-9][0-9][0-9]-*.c*' -printf '%f\n' |
            cut -c1-4 | sort -u
    )
    selected+=("${SUBTEST_RUNS[@]}")
fi

run_test() { # run_test NUM[:SUBTEST] TIMEOUT LOGFILE   (run in the background)
    local num=$1 tmo=$2 out=$3
    (
        cd "$TESTS_DIR"
        export LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        if [[ $num == *:* ]]; then
            export SUBTESTS="${num#*:}"
        else
            unset SUBTESTS
        fi
        export TESTS="${num%%:*}" TEST_MODE=bare RDKAFKA_GITVER="$RDK_VERSION" RDKAFKA_TEST_CONF="$TEST_CONF"
        if [[ -n $SHIM_PYTHON ]]; then
            export KAFKA_PATH="$REPO_ROOT/scripts/lib/kafka-shim"
            export BROKERS="127.0.0.1:$PORT" RINGLOG_SHIM_PYTHON="$SHIM_PYTHON"
        fi
        # Each test-runner runs one test: no CI-specific scaling.
        unset CI
        # -L: only tests that talk to a broker (local/mock-only tests say
        # nothing about ringlog). Not -Q: quick mode silently skips most
        # sub-tests, which would make tests pass vacuously.
        # (`|| exit`, not a plain last command: bash would exec it, and a
        # crash would then be reported here instead of into the test log.)
        timeout -k 10 "$tmo" ./test-runner -L "${QUICK[@]}" -p1 || exit $?
    ) >"$out" 2>&1
}

summary_states() {
    # Prints "NAME STATE" for each line of the test-runner summary table.
    sed 's/\x1b\[[0-9;]*m//g' "$1" |
        awk -F'|' '/^\|/ && NF >= 4 { n=$2; s=$3; gsub(/ /, "", n); gsub(/ /, "", s); if (n ~ /^[0-9][0-9][0-9][0-9]_/) print n, s }'
}

passed=() failed=() known_failed=() known_passed=() skipped=() not_run=()
declare -A DETAIL=() START=() TMO=() GEN=() RETRIED=()
budget_end=$((SECONDS + COMPAT_BUDGET))
# The longest tests (minutes of group-rebalance/session timers) start first,
# so that they overlap with the many short ones.
# Tests that need more than COMPAT_TEST_TIMEOUT: 0113 plays ~40 rebalance
# scenarios with fixed waits (~620 s on an idle 2-core machine).
declare -A LONG_TMO=([0113]=$((COMPAT_TEST_TIMEOUT > 1000 ? COMPAT_TEST_TIMEOUT : 1000)))
SLOW_FIRST=" 0113 0081:Group 0150 0089 0139 0045 0076 0026 0033 0091 0094 0102 0122 0050 "
queue=()
for num in "${selected[@]}"; do
    [[ $SLOW_FIRST == *" $num "* ]] && queue+=("$num")
done
for num in "${selected[@]}"; do
    [[ $SLOW_FIRST == *" $num "* ]] || queue+=("$num")
done
qi=0
retries_left=5
LAST_DEATH="" # why the broker last had to be restarted

# Is the broker still up? If not: note why, restart it, bump BROKER_GEN.
check_broker() {
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        return 0
    fi
    local status=0
    wait "$BROKER_PID" 2>/dev/null || status=$?
    if ((status == 0)); then
        LAST_DEATH="external" # a clean shutdown: someone sent SIGTERM/SIGINT
        warn "the broker was stopped by a signal from outside (clean shutdown); restarting it"
    else
        LAST_DEATH="crash, exit status $status"
        warn "the broker died (exit status $status); see $BROKER_LOG"
    fi
    echo "=== broker gone (${LAST_DEATH}); restarting ===" >>"$BROKER_LOG"
    BROKER_GEN=$((BROKER_GEN + 1))
    start_broker
}

finish_test() { # finish_test NUM RC
    local num=$1 rc=$2 out="$RESULTS_DIR/$1.log"
    local dur=$((SECONDS - START[$1])) tmo=${TMO[$1]}
    check_broker
    if ((GEN[$num] != BROKER_GEN)) && [[ $LAST_DEATH == external && -z ${RETRIED[$num]:-} ]] &&
        ((retries_left > 0)); then
        RETRIED[$num]=1
        retries_left=$((retries_left - 1))
        printf '%s  RETRY (the broker was stopped from outside during the test)\n' "$num"
        queue+=("$num")
        return 0
    fi

    local states n_pass n_bad verdict reason broker_note=""
    states="$(summary_states "$out")"
    n_pass=$(grep -c ' PASSED$' <<<"$states" || true)
    n_bad=$(grep -cE ' (FAILED|RUNNING)$' <<<"$states" || true)
    if (((rc == 124 || rc == 137) && dur >= tmo)); then
        verdict=fail
        DETAIL[$num]="timed out after ${tmo}s"
    elif ((rc != 0 || n_bad > 0)); then
        verdict=fail
        reason="$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -m1 -A1 -E '^### Test ' | tail -1 || true)"
        DETAIL[$num]="exit $rc: ${reason:0:200}"
    elif ((n_pass > 0)); then
        verdict=pass
    else
        verdict=skip
    fi
    if ((GEN[$num] != BROKER_GEN)); then
        broker_note=" (BROKER DIED during this test: $LAST_DEATH)"
        verdict=fail
        DETAIL[$num]="${DETAIL[$num]:-}$broker_note"
    fi

    case "$verdict" in
        pass)
            if [[ -n ${KNOWN[$num]:-} ]]; then
                known_passed+=("$num")
                printf '%s  PASS (listed as known failure: %s)  %ss\n' "$num" "${KNOWN[$num]}" "$dur"
            else
                passed+=("$num")
                printf '%s  PASS  %ss\n' "$num" "$dur"
            fi
            ;;
        fail)
            if [[ -n ${KNOWN[$num]:-} && -z $broker_note ]]; then
                known_failed+=("$num")
                printf '%s  KNOWN-FAIL (%s)  %ss\n' "$num" "${KNOWN[$num]}" "$dur"
            else
                failed+=("$num")
                printf '%s  FAIL  %ss  %s\n' "$num" "$dur" "${DETAIL[$num]}"
                if [[ -n ${KNOWN[$num]:-} ]]; then
                    printf '      (listed as known failure: %s, but the broker died)\n' "${KNOWN[$num]}"
                fi
                # The tail of the failing test's output, for diagnosis.
                sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -v -e '^\s*$' -e 'test(s) running' |
                    tail -15 | sed 's/^/      | /'
            fi
            ;;
        skip)
            skipped+=("$num")
            ;;
    esac
}

reap_one() {
    local pid="" rc=0
    wait -n -p pid "${!JOB_NUM[@]}" || rc=$?
    if [[ -z $pid ]]; then
        return 0
    fi
    local num=${JOB_NUM[$pid]}
    unset "JOB_NUM[$pid]"
    finish_test "$num" "$rc"
}

while ((qi < ${#queue[@]} || ${#JOB_NUM[@]} > 0)); do
    if ((qi < ${#queue[@]} && ${#JOB_NUM[@]} < COMPAT_PARALLEL)); then
        num=${queue[qi]}
        qi=$((qi + 1))
        TMO[$num]=${LONG_TMO[$num]:-$COMPAT_TEST_TIMEOUT}
        if [[ -n ${KNOWN[$num]:-} ]]; then
            TMO[$num]=$COMPAT_KNOWN_TIMEOUT
        fi
        # Nothing runs past the overall budget.
        if ((budget_end - SECONDS < TMO[$num])); then
            TMO[$num]=$((budget_end - SECONDS))
        fi
        if ((TMO[$num] < 30)); then
            not_run+=("$num")
            continue
        fi
        check_broker
        START[$num]=$SECONDS
        GEN[$num]=$BROKER_GEN
        run_test "$num" "${TMO[$num]}" "$RESULTS_DIR/$num.log" &
        JOB_NUM[$!]=$num
        continue
    fi
    reap_one
done

sorted() { printf '%s\n' "$@" | sort | tr '\n' ' '; }

echo
echo "librdkafka $RDK_VERSION compat results (broker $RINGLOG_BIN, TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION):"
echo "  passed:                 ${#passed[@]}  $(sorted "${passed[@]}")"
echo "  skipped (local/n.a.):   ${#skipped[@]}"
if ((${#known_failed[@]})); then
    echo "  known failures (not counted as failed): ${#known_failed[@]}"
    for n in $(sorted "${known_failed[@]}"); do
        echo "    $n  ${KNOWN[$n]}"
    done
fi
if ((${#known_passed[@]})); then
    echo "  KNOWN FAILURES THAT NOW PASS (remove them from $(basename "$KNOWN_FILE")):"
    for n in $(sorted "${known_passed[@]}"); do
        echo "    $n  ${KNOWN[$n]}"
    done
fi
if ((${#not_run[@]})); then
    echo "  NOT RUN (budget of ${COMPAT_BUDGET}s exhausted): ${not_run[*]}"
fi
if ((${#failed[@]})); then
    echo "  UNEXPECTED FAILURES (logs in $RESULTS_DIR):"
    for n in $(sorted "${failed[@]}"); do
        echo "    $n  ${DETAIL[$n]:-}"
    done
fi
n_pass=$((${#passed[@]} + ${#known_passed[@]}))
n_fail=$((${#failed[@]} + ${#not_run[@]}))
echo "$n_pass passed, $n_fail failed"
if ((n_fail > 0)); then
    exit 1
fi
