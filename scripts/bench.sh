#!/usr/bin/env bash
# Runs benchmark workloads with `ringlog bench` and records the results.
#
# Usage: scripts/bench.sh WORKLOAD... [-- EXTRA ringlog bench FLAGS]
#        scripts/bench.sh all
#
# WORKLOAD is a name from workloads/ (max-throughput, fixed-rate-latency,
# fixed-rate-50, fixed-rate-200, small-messages, many-partitions,
# catch-up-read) or a path to a workload file. For each workload it:
#   1. builds the release binary (once),
#   2. starts ringlog on a fresh temporary data dir and a free port
#      (--shards $BENCH_SHARDS), unless BENCH_BOOTSTRAP names a broker,
#   3. runs the generator, sampling the broker's CPU time (utime+stime from
#      /proc/PID/stat) before and after and its peak RSS (VmHWM),
#   4. appends a row to docs/benchmark-results.md and keeps the raw output
#      (summary.json, .hgrm histograms, logs) in target/bench/WORKLOAD-TIME/.
#
# catch-up-read first writes BENCH_CATCHUP_BYTES with the generator, restarts
# the broker and drops the page cache (when /proc/sys/vm/drop_caches is
# writable), then reads everything back from the start.
# many-partitions also restarts the broker afterwards to time its start-up
# with 10,000 partitions and reads its idle RSS.
#
# Environment:
#   BENCH_BOOTSTRAP=HOST:PORT  use this broker instead of starting ringlog
#   BENCH_EXTERNAL_PID=PID     with BENCH_BOOTSTRAP: sample this process's CPU/RSS
#   BENCH_SHARDS               ringlog --shards (default 2)
#   BENCH_DURATION, BENCH_WARMUP  override the workloads' seconds
#   BENCH_CATCHUP_BYTES        data written for catch-up-read (default 10GiB)
#   BENCH_BROKER_CONFIG        broker TOML config file passed to ringlog start
#   BENCH_DATA_ROOT            where temporary data dirs go (default /tmp)
#   BENCH_KEEP_DATA=1          keep the broker's data dir
#   BENCH_NO_BUILD=1           do not run cargo build
#   BENCH_RESULTS              results file (default docs/benchmark-results.md)
#   BENCH_NOTE                 text added to the notes column
#   BENCH_QUIET_WAIT=SECONDS   first wait up to this long for an idle machine
#                              (CPU busy below BENCH_QUIET_BUSY, default 0.15)
#   BENCH_CLEANING_BYTES=SIZE  run the workload while the log cleaner works:
#                              first fill a compacted topic (cleaning-load, 4
#                              partitions, 128 MiB segments, BENCH_CLEANING_KEYS
#                              distinct keys, default 1000000) with SIZE with
#                              the cleaner off, then restart the broker with it
#                              on; the notes say what it cleaned during the run
#
# Exit status: 0 if every run succeeded.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
# shellcheck disable=SC1091
source "$REPO_ROOT/scripts/lib/bench-common.sh"
cd "$REPO_ROOT"

names=()
extra=()
while (($#)); do
    case "$1" in
        -h | --help)
            sed -n '2,45p' "$0"
            exit 0
            ;;
        --)
            shift
            extra=("$@")
            break
            ;;
        *) names+=("$1") ;;
    esac
    shift
done
((${#names[@]})) || die "usage: scripts/bench.sh WORKLOAD...|all [-- FLAGS]  (see --help)"

mapfile -t workloads < <(expand_workloads "${names[@]}")
bench_build
EXTERNAL="${BENCH_BOOTSTRAP:-}"

trap bench_cleanup EXIT

# run_generator OUT_DIR ARGS...: ringlog bench, progress to OUT_DIR/bench.log.
run_generator() {
    local out=$1
    shift
    mkdir -p "$out"
    local rc=0
    "$RINGLOG_BIN" bench "$@" --out "$out" 2> >(tee -a "$out/bench.log" >&2) | tee "$out/stdout.txt" || rc=$?
    return "$rc"
}

# broker_config_with LINE...: a broker config file of LINEs followed by
# BENCH_BROKER_CONFIG's contents (top-level keys before its tables).
broker_config_with() {
    local f
    f="$(mktemp "${TMPDIR:-/tmp}/ringlog-bench-config-XXXXXX.toml")"
    printf '%s\n' "$@" >"$f"
    if [[ -n ${BENCH_BROKER_CONFIG:-} ]]; then
        cat "$BENCH_BROKER_CONFIG" >>"$f"
    fi
    echo "$f"
}

# fill_cleaning_load OUT DATA: start the broker on DATA with the log cleaner
# off, write BENCH_CLEANING_BYTES of keyed records to the compacted topic
# cleaning-load, and restart the broker with the cleaner on, so the workload
# that follows runs while it compacts them.
fill_cleaning_load() {
    local out=$1 data=$2 user_config=${BENCH_BROKER_CONFIG:-} off on
    off="$(broker_config_with "log.cleaner.enable = false")"
    on="$(broker_config_with "log.cleaner.backoff.ms = 1000")"
    BENCH_BROKER_CONFIG=$off
    bench_start_broker "$data/data" "$out/broker-fill.log"
    log "cleaning load: writing $BENCH_CLEANING_BYTES to the compacted topic cleaning-load (cleaner off)"
    run_generator "$out/fill" --bootstrap "$BENCH_BOOTSTRAP_ADDR" --topic cleaning-load --partitions 4 \
        --key --key-space "${BENCH_CLEANING_KEYS:-1000000}" --topic-config cleanup.policy=compact \
        --topic-config segment.bytes=134217728 --producers 2 --consumers 0 --rate 0 \
        --total-bytes "$BENCH_CLEANING_BYTES" --duration 0 --warmup 0 --name cleaning-fill --quiet >/dev/null ||
        die "writing the cleaning load failed (see $out/fill)"
    local port=${BENCH_BOOTSTRAP_ADDR##*:}
    bench_stop_broker
    BENCH_BROKER_CONFIG=$on
    bench_start_broker "$data/data" "$out/broker.log" "$port"
    BENCH_BROKER_CONFIG=$user_config
    rm -f "$off" "$on"
}

# cleaning_note BEFORE AFTER OUT: what the cleaner did between two
# bench_cleaner_counters readings, for the notes column.
cleaning_note() {
    python3 - "$1" "$2" "$BENCH_CLEANING_BYTES" <<'PY' | tee -a "$3/bench.log"
import sys
try:
    r0, w0, p0 = map(int, sys.argv[1].split())
    r1, w1, p1 = map(int, sys.argv[2].split())
except ValueError:
    print(f"while cleaning {sys.argv[3]} (cleaner metrics unreadable)")
    sys.exit(0)
print(f"while cleaning {sys.argv[3]} of a compacted topic: the cleaner read {(r1 - r0) / 1e6:.0f} MB "
      f"and wrote {(w1 - w0) / 1e6:.0f} MB during the run, warmup included ({p1 - p0} passes finished)")
PY
}

broker_pid() {
    if [[ -n $EXTERNAL ]]; then
        echo "${BENCH_EXTERNAL_PID:-}"
    else
        echo "$BENCH_BROKER_PID"
    fi
}

run_one() {
    local name=$1
    local file
    file="$(workload_file "$name")"
    local out
    out="$BENCH_OUT_ROOT/$name-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    local notes=()
    [[ -n ${BENCH_NOTE:-} ]] && notes+=("$BENCH_NOTE")
    wait_quiet
    notes+=("$(load_note)")
    local bootstrap data="" cleaning0=""
    if [[ -n $EXTERNAL ]]; then
        bootstrap=$EXTERNAL
        notes+=("external broker $EXTERNAL")
        [[ -z ${BENCH_CLEANING_BYTES:-} ]] || warn "BENCH_CLEANING_BYTES ignored with an external broker"
    else
        data="$(mktemp -d "${BENCH_DATA_ROOT:-${TMPDIR:-/tmp}}/ringlog-bench-XXXXXX")"
        if [[ -n ${BENCH_CLEANING_BYTES:-} ]]; then
            fill_cleaning_load "$out" "$data"
            cleaning0="$(bench_cleaner_counters)"
        else
            bench_start_broker "$data/data" "$out/broker.log"
        fi
        bootstrap=$BENCH_BOOTSTRAP_ADDR
    fi
    log "workload $name against $bootstrap; output in $out"

    local flags=(--workload "$file" --bootstrap "$bootstrap")
    [[ -n ${BENCH_DURATION:-} ]] && flags+=(--duration "$BENCH_DURATION")
    [[ -n ${BENCH_WARMUP:-} ]] && flags+=(--warmup "$BENCH_WARMUP")

    if [[ $name == catch-up-read ]]; then
        local bytes=${BENCH_CATCHUP_BYTES:-10GiB}
        log "catch-up-read: writing $bytes first"
        run_generator "$out/write" --workload "$file" --bootstrap "$bootstrap" --producers 2 \
            --consumers 0 --total-bytes "$bytes" --duration 0 --warmup 0 \
            --name catch-up-write --quiet "${extra[@]}" >/dev/null ||
            die "writing the catch-up data failed (see $out/write)"
        if [[ -z $EXTERNAL ]]; then
            bench_stop_broker
            local dropped
            dropped="$(drop_page_cache)"
            bench_start_broker "$data/data" "$out/broker.log" "${bootstrap##*:}"
            notes+=("read $bytes written before a broker restart; page cache $dropped")
        else
            notes+=("read $bytes; external broker not restarted; page cache $(drop_page_cache)")
        fi
    fi

    local pid cpu0=0 cpu1=0 rc=0
    pid="$(broker_pid)"
    [[ -n $pid ]] && cpu0="$(proc_cpu_ticks "$pid")"
    run_generator "$out" "${flags[@]}" "${extra[@]}" || rc=$?
    if [[ -z $EXTERNAL ]]; then
        check_broker
        if [[ -n $BENCH_BROKER_DIED ]]; then
            warn "$BENCH_BROKER_DIED (see $out/broker.log)"
            notes+=("$BENCH_BROKER_DIED")
            pid=""
        fi
    fi
    if [[ -n $cleaning0 && -n $pid ]]; then
        notes+=("$(cleaning_note "$cleaning0" "$(bench_cleaner_counters)" "$out")")
    fi
    local cpu="" hwm=""
    if [[ -n $pid ]]; then
        cpu1="$(proc_cpu_ticks "$pid")"
        hwm="$(proc_status_kb "$pid" VmHWM)"
        cpu="$(cpu_seconds "$cpu0" "$cpu1")"
        echo "broker: ${cpu} CPU seconds during the run, VmHWM ${hwm} kB" | tee -a "$out/bench.log"
        local diag
        diag="$(bench_broker_diag)"
        if [[ -n $diag ]]; then
            echo "broker: $diag" | tee -a "$out/bench.log"
            notes+=("$diag")
        fi
    fi

    if [[ $name == many-partitions && -z $EXTERNAL && $rc -ne 2 ]]; then
        # Start-up with 10,000 partitions: until every partition has a leader.
        bench_stop_broker
        local t0 listen_s ready_s rss
        t0=$(date +%s.%N)
        bench_start_broker "$data/data" "$out/broker-restart.log" "${bootstrap##*:}"
        listen_s=$BENCH_LISTEN_SECONDS
        "$RINGLOG_BIN" bench --workload "$file" --bootstrap "$bootstrap" --prepare >/dev/null 2>&1 ||
            warn "metadata after restart failed"
        ready_s="$(seconds_since "$t0")"
        sleep 5
        rss="$(proc_status_kb "$BENCH_BROKER_PID" VmRSS)"
        notes+=("restart: listening after ${listen_s} s, all partitions led after ${ready_s} s; idle RSS $((rss / 1024)) MiB")
        echo "restart: listening after ${listen_s} s, ready after ${ready_s} s, idle RSS ${rss} kB" | tee -a "$out/bench.log"
    fi

    if [[ -f $out/summary.json ]]; then
        bench_record "$out/summary.json" ringlog-bench "$cpu" "$hwm" "${notes[@]}"
    else
        warn "$name: no summary written (generator exit status $rc)"
    fi
    bench_end_run "$data"
    return "$rc"
}

failed=()
for w in "${workloads[@]}"; do
    if ! run_one "$w"; then
        failed+=("$w")
    fi
done
if ((${#failed[@]})); then
    warn "failed: ${failed[*]}"
    exit 1
fi
log "done: ${workloads[*]} (results in ${BENCH_RESULTS#"$REPO_ROOT"/})"
