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
# SUBTEST (librdkafka's SUBTESTS filter).
#
# Known failures (scripts/librdkafka-known-failures.txt) name whole tests
# ("0077  reason") or sub-tests ('0081:"do_test_CreateAcls"  reason': the
# sub-tests of 0081 whose name contains the quoted text; a sub-test name is
# "<function>:<line>[: <parameters>]", or, for the tests that mark their
# parts by hand, the text of the "[ ... ]" line that starts the part). A
# test with listed sub-tests runs once without them (a build-time patch of
# librdkafka's test framework adds RINGLOG_SUBTESTS_SKIP, the negation of
# SUBTESTS; scripts/lib/patch-librdkafka-tests.py), and that run must pass
# and counts like any test. Then each listed entry runs on its own and must
# still fail: an entry that passes, or that matches no sub-test any more,
# fails the run, so the list cannot go stale. A whole test that is listed
# and passes fails the run too. A sub-test entry whose reason starts with
# "flaky:" is a known race: passing or failing are both accepted.
#
# Environment:
#   RINGLOG_BIN            broker binary (default: target/release/ringlog)
#   COMPAT_DIR             cache/build directory (default: target/compat)
#   COMPAT_PARALLEL        tests run at once, each in its own test-runner
#                          (default 3; most tests mostly wait on timers)
#   COMPAT_TEST_TIMEOUT    per-test wall-clock limit in seconds (default 720;
#                          0113, which alone runs ~10 minutes, gets 1000)
#   COMPAT_KNOWN_TIMEOUT   limit for the runs of known-failure entries (whole
#                          tests and sub-tests on their own; default 60)
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
# Last line of output: "N passed, N failed, N skipped" (skipped: tests the
# test-runner skipped, e.g. local/mock-only ones). Known failures that
# still fail are listed but not counted; exit status is non-zero when
# anything failed, including a known failure that now passes.
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
PATCHER="$REPO_ROOT/scripts/lib/patch-librdkafka-tests.py"
SECTIONS="$REPO_ROOT/scripts/lib/compat-sections.py"
stamp_content="$RDK_VERSION ${CONFIGURE_ARGS[*]} patch:$(sha256sum "$PATCHER" | cut -c1-16)"

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
    python3 "$PATCHER" "$BUILD/tests" || die "could not patch librdkafka's test framework"
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
# KNOWN[NUM]: reason, for a test listed as a whole.
# Sub-test entries: ENTRY_NUM[i], ENTRY_SUB[i] (the quoted text),
# ENTRY_REASON[i]; SUBKNOWN[NUM]: "i j ..." (its entries).
declare -A KNOWN=() SUBKNOWN=()
ENTRY_NUM=() ENTRY_SUB=() ENTRY_REASON=()
if [[ -f $KNOWN_FILE ]]; then
    lineno=0
    while IFS= read -r line || [[ -n $line ]]; do
        lineno=$((lineno + 1))
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ $line =~ ^([0-9]{4}):\"([^\"]+)\"[[:space:]]*(.*)$ ]]; then
            i=${#ENTRY_NUM[@]}
            ENTRY_NUM+=("${BASH_REMATCH[1]}")
            ENTRY_SUB+=("${BASH_REMATCH[2]}")
            ENTRY_REASON+=("${BASH_REMATCH[3]:-known failure}")
            SUBKNOWN[${BASH_REMATCH[1]}]+="$i "
        elif [[ $line =~ ^([0-9]{4})([[:space:]]+(.*))?$ ]]; then
            KNOWN[${BASH_REMATCH[1]}]="${BASH_REMATCH[3]:-known failure}"
        else
            die "$KNOWN_FILE:$lineno: not '<test>  reason' nor '<test>:\"<sub-test>\"  reason': $line"
        fi
    done <"$KNOWN_FILE"
    for num in "${!SUBKNOWN[@]}"; do
        [[ -z ${KNOWN[$num]:-} ]] || die "$KNOWN_FILE: $num is listed both as a whole and by sub-tests"
    done
fi

# skip_list NUM: the '|'-separated sub-test entries of NUM.
skip_list() {
    local i out=""
    for i in ${SUBKNOWN[$1]:-}; do
        out+="${out:+|}${ENTRY_SUB[i]}"
    done
    printf '%s' "$out"
}


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
# Not the *_mock tests: -L does not exclude all of them (0139, 0150), yet
# they run librdkafka against its own in-process mock cluster and never
# reach the broker under test (0150's telemetry timing only fails when the
# machine is busy).
if ((${#selected[@]} == 0)); then
    mapfile -t selected < <(
        cd "$TESTS_DIR" &&
            find . -maxdepth 1 -name '[0-7][0-9][0-9][0-9]-*.c*' ! -name '*_mock.c*' -printf '%f\n' |
            cut -c1-4 | sort -u
    )
fi

# A job is "NUM" (a whole test; without its listed sub-tests, if any),
# "NUM:SUBTEST" (chosen on the command line) or "NUM~I" (known-failure
# entry I on its own, queued after NUM's run).
log_of() { printf '%s/%s.log' "$RESULTS_DIR" "${1//[^A-Za-z0-9_.-]/_}"; }

run_test() { # run_test JOB TIMEOUT LOGFILE   (run in the background)
    local job=$1 tmo=$2 out=$3 num=${1:0:4}
    (
        cd "$TESTS_DIR"
        export LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        unset SUBTESTS RINGLOG_SUBTESTS_SKIP
        if [[ $job == *~* ]]; then
            export SUBTESTS="${ENTRY_SUB[${job#*~}]}"
        else
            if [[ $job == *:* ]]; then
                export SUBTESTS="${job#*:}"
            fi
            RINGLOG_SUBTESTS_SKIP="$(skip_list "$num")"
            export RINGLOG_SUBTESTS_SKIP
        fi
        export TESTS="$num" TEST_MODE=bare RDKAFKA_GITVER="$RDK_VERSION" RDKAFKA_TEST_CONF="$TEST_CONF"
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

# sections JOB RC ENTRY_INDEX...: sets failed_section, sections_passed,
# sections_skipped and entry_<k> (k-th given entry) from the job's output.
sections() {
    local job=$1 rc=$2 i subs=()
    shift 2
    for i in "$@"; do
        subs+=("${ENTRY_SUB[i]}")
    done
    local out
    out="$(python3 "$SECTIONS" "$(log_of "$job")" "$rc" "${subs[@]}")" || die "$SECTIONS failed"
    eval "$out"
}

failed_section="" sections_passed=0 sections_skipped=0 entry_0=""

entry_name() { printf '%s:"%s"' "${ENTRY_NUM[$1]}" "${ENTRY_SUB[$1]}"; }

passed=() failed=() known_failed=() stale=() skipped=() not_run=()
declare -A DETAIL=() START=() TMO=() GEN=() RETRIED=()
budget_end=$((SECONDS + COMPAT_BUDGET))
# The longest tests (minutes of group-rebalance/session timers) start first,
# so that they overlap with the many short ones.
# Tests that need more than COMPAT_TEST_TIMEOUT: 0113 plays ~40 rebalance
# scenarios with fixed waits (~620 s on an idle 2-core machine).
declare -A LONG_TMO=([0113]=$((COMPAT_TEST_TIMEOUT > 1000 ? COMPAT_TEST_TIMEOUT : 1000)))
SLOW_FIRST=" 0113 0081 0089 0045 0076 0026 0033 0091 0094 0102 0122 0050 0061 0137 "
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

show_tail() { # the tail of a job's output, for diagnosis
    sed 's/\x1b\[[0-9;]*m//g' "$(log_of "$1")" | grep -v -e '^\s*$' -e 'test(s) running' |
        tail -15 | sed 's/^/      | /'
}

finish_test() { # finish_test JOB RC
    local job=$1 rc=$2 num=${1:0:4}
    local dur=$((SECONDS - START[$1])) tmo=${TMO[$1]}
    check_broker
    if ((GEN[$job] != BROKER_GEN)) && [[ $LAST_DEATH == external && -z ${RETRIED[$job]:-} ]] &&
        ((retries_left > 0)); then
        RETRIED[$job]=1
        retries_left=$((retries_left - 1))
        printf '%s  RETRY (the broker was stopped from outside during the test)\n' "$job"
        queue+=("$job")
        return 0
    fi

    local states n_pass n_bad verdict reason broker_note="" kind=run
    if [[ $job == *~* ]]; then
        kind=entry
    elif [[ -n ${KNOWN[$num]:-} && $job != *:* ]]; then
        kind=whole-known
    elif [[ -n ${SUBKNOWN[$num]:-} ]]; then
        kind=partial
    fi
    states="$(summary_states "$(log_of "$job")")"
    n_pass=$(grep -c ' PASSED$' <<<"$states" || true)
    n_bad=$(grep -cE ' (FAILED|RUNNING)$' <<<"$states" || true)
    if (((rc == 124 || rc == 137) && dur >= tmo)); then
        verdict=fail
        DETAIL[$job]="timed out after ${tmo}s"
    elif ((rc != 0 || n_bad > 0)); then
        verdict=fail
        reason="$(sed 's/\x1b\[[0-9;]*m//g' "$(log_of "$job")" | grep -m1 -A1 -E '^### Test ' | tail -1 || true)"
        DETAIL[$job]="exit $rc: ${reason:0:200}"
    elif ((n_pass > 0)); then
        verdict=pass
    else
        verdict=skip
    fi
    if ((GEN[$job] != BROKER_GEN)); then
        broker_note=" (BROKER DIED during this test: $LAST_DEATH)"
        DETAIL[$job]="${DETAIL[$job]:-}$broker_note"
    fi
    local frc=$rc
    if [[ $verdict == fail ]] && ((frc == 0)); then
        frc=1
    fi

    case "$kind" in
        run | partial)
            local note="" idx=() k=0 i
            if [[ $kind == partial ]]; then
                read -ra idx <<<"${SUBKNOWN[$num]}"
                sections "$job" "$frc" "${idx[@]}"
                local confirmed=() ran=()
                for i in "${idx[@]}"; do
                    local var="entry_$k"
                    case "${!var}" in
                        failed) confirmed+=("$i") ;;
                        passed) ran+=("$i") ;;
                    esac
                    k=$((k + 1))
                done
                if [[ $verdict == fail && -z $broker_note ]] && ((${#confirmed[@]})); then
                    # It failed in a listed section: that entry is confirmed,
                    # and everything before it passed.
                    verdict=pass
                    note=" (stopped in the known-failing part $(entry_name "${confirmed[0]}"): $failed_section)"
                    known_failed+=("${confirmed[0]}")
                fi
                for i in "${ran[@]}"; do
                    # A listed part ran (it could not be left out) and did
                    # not fail: the entry is stale (unless it is a race).
                    if is_flaky "$i"; then
                        known_failed+=("$i")
                        continue
                    fi
                    stale+=("$i")
                    DETAIL[$num~$i]="ran in the run of $job and did not fail"
                done
                # The entries left to check run next (they are short: each
                # runs only its sub-tests, with COMPAT_KNOWN_TIMEOUT).
                local next=()
                for i in "${idx[@]}"; do
                    [[ " ${confirmed[*]} ${ran[*]} " == *" $i "* ]] || next+=("$num~$i")
                done
                queue=("${queue[@]:0:qi}" "${next[@]}" "${queue[@]:qi}")
                note+=" ($sections_passed sub-tests passed, $sections_skipped skipped)"
            fi
            if [[ -n $broker_note ]]; then
                verdict=fail
            fi
            case "$verdict" in
                pass)
                    passed+=("$job")
                    printf '%s  PASS%s  %ss\n' "$job" "$note" "$dur"
                    ;;
                fail)
                    failed+=("$job")
                    printf '%s  FAIL  %ss  %s\n' "$job" "$dur" "${DETAIL[$job]}"
                    show_tail "$job"
                    ;;
                skip)
                    skipped+=("$job")
                    ;;
            esac
            ;;
        whole-known)
            if [[ -n $broker_note ]]; then
                failed+=("$job")
                printf '%s  FAIL  %ss  %s\n      (listed as known failure: %s, but the broker died)\n' \
                    "$job" "$dur" "${DETAIL[$job]}" "${KNOWN[$num]}"
                show_tail "$job"
            elif [[ $verdict == fail ]]; then
                known_failed+=("$job")
                printf '%s  KNOWN-FAIL (%s)  %ss\n' "$job" "${KNOWN[$num]}" "$dur"
            else
                stale+=("$job")
                if [[ $verdict == pass ]]; then
                    DETAIL[$job]="the whole test passes"
                else
                    DETAIL[$job]="the whole test is skipped"
                fi
                printf '%s  %s, BUT IT IS LISTED AS A KNOWN FAILURE (%s): remove it from %s  %ss\n' \
                    "$job" "${verdict^^}" "${KNOWN[$num]}" "$(basename "$KNOWN_FILE")" "$dur"
            fi
            ;;
        entry)
            local i=${job#*~}
            sections "$job" "$frc" "$i"
            if [[ -n $broker_note ]]; then
                failed+=("$job")
                printf '%s  FAIL  %ss  %s\n' "$(entry_name "$i")" "$dur" "${DETAIL[$job]}"
                show_tail "$job"
            elif [[ $entry_0 == failed ]]; then
                known_failed+=("$i")
                printf '%s  KNOWN-FAIL (%s)  %ss\n' "$(entry_name "$i")" "${ENTRY_REASON[i]}" "$dur"
            elif [[ $verdict == fail ]]; then
                failed+=("$job")
                printf '%s  FAIL outside the listed sub-test  %ss  %s\n' "$(entry_name "$i")" "$dur" "${DETAIL[$job]}"
                show_tail "$job"
            elif [[ $entry_0 == passed ]] && is_flaky "$i"; then
                known_failed+=("$i")
                printf '%s  KNOWN-FLAKY, passed this time (%s)  %ss\n' "$(entry_name "$i")" "${ENTRY_REASON[i]}" "$dur"
            else
                stale+=("$i")
                if [[ $entry_0 == passed ]]; then
                    DETAIL[$num~$i]="passes"
                else
                    DETAIL[$num~$i]="matches no sub-test that runs ($entry_0)"
                fi
                printf '%s  %s, BUT IT IS LISTED AS A KNOWN FAILURE (%s): update %s  %ss\n' \
                    "$(entry_name "$i")" "${DETAIL[$num~$i]^^}" "${ENTRY_REASON[i]}" \
                    "$(basename "$KNOWN_FILE")" "$dur"
            fi
            ;;
    esac
}

# is_flaky I: the sub-test entry I is a known race ("flaky:" reason): it
# may pass or fail; either is accepted (it never goes stale by passing).
is_flaky() { [[ ${ENTRY_REASON[$1]} == flaky:* ]]; }

reap_one() {
    local pid="" rc=0
    wait -n -p pid "${!JOB_NUM[@]}" || rc=$?
    if [[ -z $pid ]]; then
        return 0
    fi
    local job=${JOB_NUM[$pid]}
    unset "JOB_NUM[$pid]"
    finish_test "$job" "$rc"
}

while ((qi < ${#queue[@]} || ${#JOB_NUM[@]} > 0)); do
    if ((qi < ${#queue[@]} && ${#JOB_NUM[@]} < COMPAT_PARALLEL)); then
        job=${queue[qi]}
        qi=$((qi + 1))
        num=${job:0:4}
        TMO[$job]=${LONG_TMO[$job]:-$COMPAT_TEST_TIMEOUT}
        if [[ $job == *~* || (-n ${KNOWN[$num]:-} && $job != *:*) ]]; then
            TMO[$job]=$COMPAT_KNOWN_TIMEOUT
        fi
        # Nothing runs past the overall budget.
        if ((budget_end - SECONDS < TMO[$job])); then
            TMO[$job]=$((budget_end - SECONDS))
        fi
        if ((TMO[$job] < 30)); then
            not_run+=("$job")
            continue
        fi
        check_broker
        START[$job]=$SECONDS
        GEN[$job]=$BROKER_GEN
        run_test "$job" "${TMO[$job]}" "$(log_of "$job")" &
        JOB_NUM[$!]=$job
        continue
    fi
    reap_one
done

sorted() { printf '%s\n' "$@" | sort | tr '\n' ' '; }
# An entry index or a job, as the list names it.
listed() { if [[ $1 =~ ^[0-9]+$ && ${#1} -lt 4 ]]; then entry_name "$1"; else printf '%s' "$1"; fi; }
reason_of() { if [[ $1 =~ ^[0-9]+$ && ${#1} -lt 4 ]]; then printf '%s' "${ENTRY_REASON[$1]}"; else printf '%s' "${KNOWN[$1]}"; fi; }

echo
echo "librdkafka $RDK_VERSION compat results (broker $RINGLOG_BIN, TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION):"
echo "  passed:                 ${#passed[@]}  $(sorted "${passed[@]}")"
echo "  skipped (local/n.a.):   ${#skipped[@]}  $(sorted "${skipped[@]}")"
if ((${#known_failed[@]})); then
    echo "  known failures, still failing (not counted): ${#known_failed[@]}"
    for n in "${known_failed[@]}"; do
        printf '    %-40s %s\n' "$(listed "$n")" "$(reason_of "$n")"
    done
fi
if ((${#stale[@]})); then
    echo "  STALE KNOWN FAILURES (counted as failed; update $(basename "$KNOWN_FILE")):"
    for n in "${stale[@]}"; do
        if [[ $n =~ ^[0-9]+$ && ${#n} -lt 4 ]]; then
            printf '    %-40s %s\n' "$(listed "$n")" "${DETAIL[${ENTRY_NUM[n]}~$n]:-}"
        else
            printf '    %-40s %s\n' "$n" "${DETAIL[$n]:-}"
        fi
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
n_pass=${#passed[@]}
n_fail=$((${#failed[@]} + ${#not_run[@]} + ${#stale[@]}))
echo "${n_pass} passed, ${n_fail} failed, ${#skipped[@]} skipped"
if ((n_fail > 0)); then
    exit 1
fi
