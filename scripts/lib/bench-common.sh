# shellcheck shell=bash disable=SC2034 # variables are used by the sourcing scripts
# Helpers shared by scripts/bench.sh and scripts/bench-rdkafka.sh.
# Source after scripts/lib/common.sh; defines functions and variables only.

BENCH_RESULTS="${BENCH_RESULTS:-$REPO_ROOT/docs/benchmark-results.md}"
BENCH_OUT_ROOT="${BENCH_OUT_ROOT:-$REPO_ROOT/target/bench}"
BENCH_SHARDS="${BENCH_SHARDS:-2}"
RINGLOG_BIN="${RINGLOG_BIN:-$REPO_ROOT/target/release/ringlog}"
WORKLOADS_DIR="$REPO_ROOT/workloads"

# Broker state (set by bench_start_broker).
BENCH_BROKER_PID=""
BENCH_BOOTSTRAP_ADDR=""
BENCH_DATA_DIR=""
BENCH_LISTEN_SECONDS=""
BENCH_GIT_REV=""
BENCH_BROKER_DIED=""
BENCH_METRICS_ADDR=""

# bench_build: build the release binary (unless BENCH_NO_BUILD=1) and copy
# it aside, so that rebuilds by others during a long session do not change
# the binary under test. Sets RINGLOG_BIN and BENCH_GIT_REV.
bench_build() {
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        log "cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [[ -x $RINGLOG_BIN ]] || die "$RINGLOG_BIN does not exist"
    BENCH_GIT_REV="$(git_rev)"
    local copy="$BENCH_OUT_ROOT/bin/ringlog-$BENCH_GIT_REV-$$"
    mkdir -p "$(dirname "$copy")"
    cp "$RINGLOG_BIN" "$copy"
    RINGLOG_BIN=$copy
}

# bench_remove_binary: delete this session's copy of the binary.
bench_remove_binary() {
    if [[ $RINGLOG_BIN == "$BENCH_OUT_ROOT/bin/"* ]]; then
        rm -f "$RINGLOG_BIN"
    fi
}

# workload_file NAME: path of workloads/NAME.toml (or NAME itself if a file).
workload_file() {
    if [[ -f $1 ]]; then
        echo "$1"
    elif [[ -f $WORKLOADS_DIR/$1.toml ]]; then
        echo "$WORKLOADS_DIR/$1.toml"
    else
        die "no workload $1 (see $WORKLOADS_DIR)"
    fi
}

# workload_key FILE KEY: the value of a top-level key of a workload file
# (strings unquoted, arrays as space-separated words; empty if absent).
workload_key() {
    python3 - "$1" "$2" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    d = tomllib.load(f)
v = d.get(sys.argv[2], "")
if isinstance(v, list):
    print(" ".join(str(x) for x in v))
elif isinstance(v, bool):
    print("true" if v else "false")
else:
    print(v)
PY
}

# expand_workloads NAME...: workload names with suites expanded and "all"
# meaning every workload that is not part of a suite... in a fixed order.
expand_workloads() {
    local name file suite
    for name in "$@"; do
        if [[ $name == all ]]; then
            expand_workloads max-throughput fixed-rate-latency small-messages many-partitions catch-up-read
            continue
        fi
        file="$(workload_file "$name")"
        suite="$(workload_key "$file" suite)"
        if [[ -n $suite ]]; then
            # shellcheck disable=SC2086 # word splitting intended
            expand_workloads $suite
        else
            basename "$file" .toml
        fi
    done
}

# proc_cpu_ticks PID: utime + stime of a process (clock ticks).
proc_cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# proc_status_kb PID FIELD: a kB value from /proc/PID/status (VmHWM, VmRSS).
proc_status_kb() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# bench_start_broker DATA_DIR LOG [PORT]: start ringlog, wait until it
# listens. Sets BENCH_BROKER_PID, BENCH_BOOTSTRAP_ADDR and
# BENCH_LISTEN_SECONDS (how long it took to start listening).
bench_start_broker() {
    local data=$1 logf=$2 port=${3:-}
    [[ -n $port ]] || port="$(free_port)"
    mkdir -p "$data"
    local t0
    t0=$(date +%s.%N)
    local extra=()
    if [[ -n ${BENCH_BROKER_CONFIG:-} ]]; then
        extra=(--config "$BENCH_BROKER_CONFIG")
    fi
    BENCH_METRICS_ADDR="127.0.0.1:$(free_port)"
    "$RINGLOG_BIN" start --data-dir "$data" --listen "127.0.0.1:$port" \
        --advertised-listener "127.0.0.1:$port" --shards "$BENCH_SHARDS" \
        --metrics-listen "$BENCH_METRICS_ADDR" \
        --log-level "${BENCH_BROKER_LOG_LEVEL:-info}" "${extra[@]}" >>"$logf" 2>&1 &
    BENCH_BROKER_PID=$!
    BENCH_BOOTSTRAP_ADDR="127.0.0.1:$port"
    BENCH_DATA_DIR="$data"
    if ! wait_port 127.0.0.1 "$port" 120 "$BENCH_BROKER_PID"; then
        tail -30 "$logf" >&2 || true
        die "ringlog did not start listening on 127.0.0.1:$port"
    fi
    BENCH_LISTEN_SECONDS="$(seconds_since "$t0")"
}

# bench_broker_diag: one line of what the broker itself measured during the
# run, from its /metrics (fsync latency, how late the shards' timers fired,
# produce request time inside the broker), so a latency tail in the
# generator's figures can be told apart as disk, a held shard or queueing.
# Prints nothing when the metrics cannot be read.
bench_broker_diag() {
    [[ -n $BENCH_METRICS_ADDR ]] || return 0
    python3 - "$BENCH_METRICS_ADDR" <<'PY' || true
import re, sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
except OSError:
    sys.exit(0)
def q(name, quantile, labels=""):
    vals = []
    for line in text.splitlines():
        m = re.match(rf'{name}\{{([^}}]*)\}} (\S+)$', line)
        if m and f'quantile="{quantile}"' in m.group(1) and labels in m.group(1):
            vals.append(float(m.group(2)) * 1000)
    return max(vals) if vals else None
parts = []
f = [q("ringlog_fsync_latency_seconds", x) for x in ("0.5", "0.99", "0.999")]
if None not in f:
    parts.append("broker fsync p50/p99/p99.9 %.2f/%.2f/%.2f ms" % tuple(f))
t = q("ringlog_shard_task_queue_delay_seconds", "0.999")
if t is not None:
    parts.append("timer lateness p99.9 %.2f ms" % t)
p = [q("ringlog_request_latency_seconds", x, 'api="Produce"') for x in ("0.5", "0.999")]
if None not in p:
    parts.append("produce in broker p50/p99.9 %.2f/%.2f ms" % tuple(p))
print("; ".join(parts))
PY
}

# bench_cleaner_counters: the broker's log cleaner totals over all shards,
# "BYTES_READ BYTES_WRITTEN PASSES" (empty when the metrics cannot be read).
bench_cleaner_counters() {
    [[ -n $BENCH_METRICS_ADDR ]] || return 0
    python3 - "$BENCH_METRICS_ADDR" <<'PY' || true
import re, sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
except OSError:
    sys.exit(0)
def total(name):
    return sum(float(m.group(1)) for m in re.finditer(rf'^{name}(?:\{{[^}}]*\}})? (\S+)$', text, re.M))
print("%d %d %d" % (total("ringlog_shard_cleaner_read_bytes_total"),
                    total("ringlog_shard_cleaner_written_bytes_total"),
                    total("ringlog_shard_cleaner_passes_total")))
PY
}

# seconds_since T0: seconds elapsed since T0 (from date +%s.%N), 2 decimals.
seconds_since() {
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(date +%s.%N)"
}

# check_broker: sets BENCH_BROKER_DIED to how the broker ended if it is no
# longer running (empty while it runs).
check_broker() {
    BENCH_BROKER_DIED=""
    [[ -n $BENCH_BROKER_PID ]] || return 0
    if ! kill -0 "$BENCH_BROKER_PID" 2>/dev/null; then
        local st=0
        wait "$BENCH_BROKER_PID" 2>/dev/null || st=$?
        BENCH_BROKER_PID=""
        if ((st > 128)); then
            BENCH_BROKER_DIED="BROKER DIED during the run (signal $((st - 128)))"
        else
            BENCH_BROKER_DIED="BROKER EXITED during the run (status $st)"
        fi
    fi
}

bench_stop_broker() {
    if [[ -n $BENCH_BROKER_PID ]] && kill -0 "$BENCH_BROKER_PID" 2>/dev/null; then
        stop_pid "$BENCH_BROKER_PID" 30 >/dev/null
    fi
    BENCH_BROKER_PID=""
}

# bench_end_run DATA: after a run, stop the broker and remove its data dir
# DATA (unless DATA is empty or BENCH_KEEP_DATA=1).
bench_end_run() {
    bench_stop_broker
    if [[ -n $1 && ${BENCH_KEEP_DATA:-0} != 1 ]]; then
        rm -rf "$1"
    fi
    BENCH_DATA_DIR=""
}

# bench_cleanup: the bench scripts' EXIT trap. Stops the broker, removes the
# session's binary copy and the data dir of a broker it started (unless
# BENCH_KEEP_DATA=1).
bench_cleanup() {
    bench_stop_broker
    bench_remove_binary
    if [[ -n $BENCH_DATA_DIR && ${BENCH_KEEP_DATA:-0} != 1 && -z ${BENCH_BOOTSTRAP:-} ]]; then
        rm -rf "$BENCH_DATA_DIR"
    fi
}

# cpu_seconds TICKS0 TICKS1: CPU seconds between two proc_cpu_ticks
# readings, 2 decimals.
cpu_seconds() {
    python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]):.2f}')" \
        "$1" "$2" "$(getconf CLK_TCK)"
}

# drop_page_cache: flush and drop the page cache if this host lets us.
# Prints "dropped" or "not dropped (reason)".
drop_page_cache() {
    sync
    if [[ -w /proc/sys/vm/drop_caches ]] && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        echo "dropped"
    else
        echo "not dropped (/proc/sys/vm/drop_caches not writable)"
    fi
}

# cpu_busy SECONDS: fraction of all CPU time that was busy over SECONDS.
cpu_busy() {
    local a b
    a="$(head -1 /proc/stat)"
    sleep "$1"
    b="$(head -1 /proc/stat)"
    python3 - "$a" "$b" <<'PY'
import sys
a, b = ([int(x) for x in line.split()[1:]] for line in sys.argv[1:3])
d = [y - x for x, y in zip(a, b)]
idle = d[3] + (d[4] if len(d) > 4 else 0)
print(f"{1 - idle / max(1, sum(d)):.2f}")
PY
}

# wait_quiet: with BENCH_QUIET_WAIT=SECONDS, wait up to that long until the
# machine is idle (busy fraction below BENCH_QUIET_BUSY, default 0.15) so
# other work on a shared machine does not skew a run.
wait_quiet() {
    local limit=${BENCH_QUIET_WAIT:-0} threshold=${BENCH_QUIET_BUSY:-0.15}
    ((limit > 0)) || return 0
    local deadline=$((SECONDS + limit)) busy
    while :; do
        busy="$(cpu_busy 2)"
        if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$busy" "$threshold"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            warn "machine still busy (${busy}) after ${limit}s; running anyway"
            return 0
        fi
        log "waiting for a quiet machine (busy ${busy})"
        sleep 5
    done
}

# load_note: how busy the machine was just before the run (others may share
# it), for the notes column.
load_note() {
    echo "busy before run $(cpu_busy 1)"
}

git_rev() {
    local rev
    rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if ! git -C "$REPO_ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null; then
        rev="$rev-dirty"
    fi
    echo "$rev"
}

machine_summary() {
    local mem disk
    mem="$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    disk="$(df -h "${1:-$REPO_ROOT}" | awk 'NR == 2 { print $1 " " $2 }')"
    echo "$(nproc) cores, $mem RAM, $disk, kernel $(uname -r)"
}

# results_append SUMMARY_JSON GENERATOR CPU_SECONDS PEAK_RSS_KB NOTES:
# append one row to $BENCH_RESULTS (created with a header if missing).
# CPU_SECONDS / PEAK_RSS_KB may be empty (external broker).
results_append() {
    local summary=$1 generator=$2 cpu=$3 rss=$4 notes=$5
    local shards=$BENCH_SHARDS
    [[ -n ${BENCH_BOOTSTRAP:-} ]] && shards="–"
    mkdir -p "$(dirname "$BENCH_RESULTS")"
    if [[ ! -f $BENCH_RESULTS ]]; then
        cat >"$BENCH_RESULTS" <<'EOF'
# Benchmark results

Rows are appended by `scripts/bench.sh` (generator `ringlog-bench`) and
`scripts/bench-rdkafka.sh` (generator `rdkafka_performance`); see
[benchmarks.md](benchmarks.md) for what each workload does. MB = 10^6 bytes
of message payload; latencies in milliseconds; msgs/s and MB/s are produce
figures (consume figures for read-only workloads). Broker CPU is user +
system time of the broker process per GB (10^9 bytes) produced (read, for
read-only workloads); peak RSS is the broker's VmHWM.

| date | git rev | workload | generator | shards | msgs/s | MB/s | produce p50 | p99 | p99.9 | p99.99 | max | e2e p50 | p99 | p99.9 | broker CPU s/GB | peak RSS MiB | notes |
|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|
EOF
    fi
    python3 - "$summary" "$generator" "$cpu" "$rss" "$notes" "${BENCH_GIT_REV:-$(git_rev)}" "$shards" >>"$BENCH_RESULTS" <<'PY'
import json, sys, datetime
path, generator, cpu, rss, notes, rev, shards = sys.argv[1:8]
s = json.load(open(path))
prod, cons = s.get("produce"), s.get("consume")
main = prod if prod else cons
pl = s.get("produce_latency_ms") or {}
el = s.get("e2e_latency_ms") or {}
def f(v, fmt="{:.3f}"):
    return "–" if v is None else fmt.format(v)
gb = (prod or {}).get("total_bytes") or (cons or {}).get("total_bytes") or 0
cpu_per_gb = "–"
if cpu and gb:
    cpu_per_gb = "{:.2f}".format(float(cpu) / (gb / 1e9))
rss_mib = "–" if not rss else "{:.0f}".format(int(rss) / 1024)
gen_cpu = s.get("generator_cpu_seconds")
if gen_cpu and gb:
    notes = (notes + "; " if notes else "") + "generator {:.2f} core-s/GB".format(gen_cpu / (gb / 1e9))
if not s.get("ok", False):
    errs = "; ".join(s.get("errors", [])[:2] + [f"{k}: {v}" for k, v in s.get("error_codes", {}).items()][:2])
    notes = (notes + "; " if notes else "") + "FAILED: " + errs
row = [
    datetime.date.today().isoformat(), rev, s.get("workload", "?"), generator, shards,
    f(main.get("msgs_per_sec") if main else None, "{:,.0f}"),
    f(main.get("mb_per_sec") if main else None, "{:.1f}"),
    f(pl.get("p50")), f(pl.get("p99")), f(pl.get("p999")), f(pl.get("p9999")), f(pl.get("max")),
    f(el.get("p50")), f(el.get("p99")), f(el.get("p999")),
    cpu_per_gb, rss_mib, notes.replace("|", "/"),
]
print("| " + " | ".join(str(x) for x in row) + " |")
PY
    tail -1 "$BENCH_RESULTS"
}

# bench_record SUMMARY_JSON GENERATOR CPU_SECONDS PEAK_RSS_KB NOTE...:
# results_append with the notes joined by "; ".
bench_record() {
    local summary=$1 generator=$2 cpu=$3 rss=$4 joined
    shift 4
    joined="$(printf '%s; ' "$@")"
    results_append "$summary" "$generator" "$cpu" "$rss" "${joined%; }"
}
