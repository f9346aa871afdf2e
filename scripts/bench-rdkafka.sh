#!/usr/bin/env bash
# Runs the benchmark workloads' shapes with librdkafka's rdkafka_performance
# as an independent load generator, and records the results next to
# ringlog bench's (generator=rdkafka_performance) in docs/benchmark-results.md.
#
# Usage: scripts/bench-rdkafka.sh WORKLOAD...|all
#
# rdkafka_performance is built from the librdkafka sources that the
# rdkafka-sys crate ships: the build directory of scripts/compat-librdkafka.sh
# (target/compat/build/) is reused when it exists; otherwise the sources are
# fetched through a throwaway cargo project and built under
# target/bench-rdkafka/. The binary goes to target/bench-rdkafka/.
#
# How the shapes map (rdkafka_performance has fewer knobs than ringlog bench):
#   - one producer process per producer (rate split evenly, -r msgs/s), each
#     with linger.ms, batch.size, max.in.flight and acks from the workload;
#     messages go to random partitions (librdkafka's default partitioner;
#     keyed workloads are run unkeyed: rdkafka_performance has a single key);
#   - one consumer process per consumer, partitions assigned round-robin
#     (-p ... -p ...), starting at the end (-o end), or at the beginning and
#     exiting at the end for catch-up-read;
#   - with several topics (many-partitions), one producer and one consumer
#     process per topic, the rate split over the topics;
#   - latency (-l): produce = message creation to delivery report, end-to-end
#     = creation to consumption (wall clock in the payload); per-message
#     values (-A) are turned into percentiles here. The first warmup
#     fraction of each file is dropped; throughput covers the whole run;
#   - its rate limiter (-r) busy-polls between messages when they are less
#     than 1 ms apart, so fixed-rate runs cost the generator a lot of CPU.
#
# Environment: as scripts/bench.sh (BENCH_BOOTSTRAP, BENCH_EXTERNAL_PID,
# BENCH_SHARDS, BENCH_DURATION, BENCH_WARMUP, BENCH_CATCHUP_BYTES,
# BENCH_BROKER_CONFIG, BENCH_DATA_ROOT, BENCH_KEEP_DATA, BENCH_NO_BUILD,
# BENCH_RESULTS, BENCH_NOTE), plus
#   BENCH_RDKAFKA_DIR   build/cache directory (default target/bench-rdkafka)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
# shellcheck disable=SC1091
source "$REPO_ROOT/scripts/lib/bench-common.sh"
cd "$REPO_ROOT"

RDK_DIR="${BENCH_RDKAFKA_DIR:-$REPO_ROOT/target/bench-rdkafka}"
PERF_BIN="$RDK_DIR/rdkafka_performance"
RDKAFKA_SYS_VERSION="4.10.0"

names=()
for arg in "$@"; do
    case "$arg" in
        -h | --help)
            sed -n '2,35p' "$0"
            exit 0
            ;;
        *) names+=("$arg") ;;
    esac
done
((${#names[@]})) || die "usage: scripts/bench-rdkafka.sh WORKLOAD...|all  (see --help)"

# ---------------------------------------------------------------------------
# rdkafka_performance
# ---------------------------------------------------------------------------
fetch_and_build_librdkafka() {
    local proj="$RDK_DIR/fetch"
    mkdir -p "$proj/src"
    cat >"$proj/Cargo.toml" <<EOF
[package]
name = "ringlog-bench-rdkafka-fetch"
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
    local manifest src
    manifest="$(cargo metadata --quiet --offline --format-version 1 --manifest-path "$proj/Cargo.toml" |
        python3 -c 'import json, sys
d = json.load(sys.stdin)
print(next(p["manifest_path"] for p in d["packages"] if p["name"] == "rdkafka-sys"))')"
    src="$(dirname "$manifest")/librdkafka"
    [[ -f $src/examples/rdkafka_performance.c ]] || die "no librdkafka sources in $src"
    local build
    build="$RDK_DIR/build/$(basename "$(dirname "$src")")"
    if [[ ! -f $build/src/librdkafka.a ]]; then
        log "building librdkafka in $build"
        rm -rf "$build"
        mkdir -p "$(dirname "$build")"
        cp -a "$src" "$build"
        chmod -R u+w "$build"
        (
            cd "$build"
            ./configure --disable-gssapi --disable-curl --disable-lz4-ext >configure.log 2>&1 ||
                { tail -40 configure.log >&2; exit 1; }
            make -j"$(nproc)" libs >build.log 2>&1 || { tail -60 build.log >&2; exit 1; }
        )
    fi
    echo "$build"
}

build_perf() {
    if [[ -x $PERF_BIN ]]; then
        return 0
    fi
    mkdir -p "$RDK_DIR"
    local build="" d
    for d in "$REPO_ROOT"/target/compat/build/rdkafka-sys-*; do
        if [[ -f $d/src/librdkafka.a && -f $d/Makefile.config && -f $d/examples/rdkafka_performance.c ]]; then
            build=$d
        fi
    done
    if [[ -n $build ]]; then
        log "using the librdkafka build of scripts/compat-librdkafka.sh: $build"
    else
        build="$(fetch_and_build_librdkafka)"
    fi
    local libs
    libs="$(sed -n 's/^LIBS+=//p' "$build/Makefile.config" | tr '\n' ' ')"
    log "compiling rdkafka_performance"
    # shellcheck disable=SC2086 # $libs is a list of linker flags
    cc -O2 -I"$build/src" "$build/examples/rdkafka_performance.c" -o "$PERF_BIN" \
        "$build/src/librdkafka.a" $libs || die "cannot compile rdkafka_performance"
}

# ---------------------------------------------------------------------------
# Runs (the process orchestration is in Python: timers, signals, parsing)
# ---------------------------------------------------------------------------
# rdk_phase MODE OUT_DIR: MODE is tailing | write | catchup
rdk_phase() {
    python3 - "$1" "$2" "$PERF_BIN" "$BOOTSTRAP" "${BENCH_CATCHUP_BYTES:-10GiB}" <<'PY'
import json, math, os, re, resource, signal, subprocess, sys, time

mode, out, perf, boot, catchup_bytes = sys.argv[1:6]
prep = json.load(open(os.path.join(os.path.dirname(out), "prepare", "settings.json")))
s, topics = prep["settings"], prep["topics"]
os.makedirs(out, exist_ok=True)

def parse_bytes(text):
    t = text.strip()
    units = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
             "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30}
    m = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]*)", t)
    return int(float(m.group(1)) * units[m.group(2).lower()])

size = s["message_size"]
warmup, duration = s["warmup"], s["duration"]
common = ["-b", boot, "-s", str(size)]
prod_conf = [
    "-a", str(s["acks"]), "-z", s["compression"],
    "-X", f"linger.ms={s['linger']}",
    "-X", f"batch.size={s['batch_bytes']}",
    "-X", f"max.in.flight.requests.per.connection={s['max_in_flight']}",
    "-X", "queue.buffering.max.kbytes=1048576",
]
procs = []

def start(name, args):
    log = open(os.path.join(out, name + ".log"), "w")
    p = subprocess.Popen([perf] + args, stdout=log, stderr=subprocess.STDOUT)
    procs.append((name, p, log))
    return p

def stop(names, grace=30):
    for n, p, _ in procs:
        if n in names and p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.time() + grace
    for n, p, _ in procs:
        if n in names:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

def last_match(name, pattern):
    found = None
    with open(os.path.join(out, name + ".log"), errors="replace") as f:
        for line in f:
            m = re.search(pattern, line)
            if m:
                found = m
    return found

PROD_RE = r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered .* in (\d+)ms: (\d+) msgs/s and ([0-9.]+) MB/s"
CONS_RE = r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([0-9.]+) MB/s\)"

def latencies(files, drop_fraction):
    vals = []
    for path in files:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            v = [int(x) for x in f if x.strip().isdigit()]
        vals.extend(v[int(len(v) * drop_fraction):])
    if not vals:
        return None
    vals.sort()
    n = len(vals)
    q = lambda p: vals[min(n - 1, max(0, math.ceil(p * n) - 1))] / 1000.0
    return {"count": n, "mean": sum(vals) / n / 1000.0, "p50": q(0.5), "p99": q(0.99),
            "p999": q(0.999), "p9999": q(0.9999), "max": vals[-1] / 1000.0}

producer_names, consumer_names = [], []
single = len(topics) == 1
parts_of = {t["name"]: list(range(t["partitions"])) for t in topics}

if mode in ("tailing", "write"):
    latency = mode == "tailing"
    if mode == "tailing" and s["consumers"] > 0:
        groups = []
        if single:
            t = topics[0]["name"]
            for c in range(s["consumers"]):
                groups.append((t, parts_of[t][c::s["consumers"]]))
        else:
            groups = [(t["name"], parts_of[t["name"]]) for t in topics]
        for i, (t, ps) in enumerate(groups):
            if not ps:
                continue
            args = common + ["-C", "-t", t, "-o", "end", "-l", "-A", os.path.join(out, f"consumer-{i}.lat")]
            for p in ps:
                args += ["-p", str(p)]
            name = f"consumer-{i}"
            start(name, args)
            consumer_names.append(name)
        time.sleep(3 + sum(len(v) for v in parts_of.values()) / 1000)  # consumers connect and position
    nprod = max(1, s["producers"]) if mode == "tailing" else 2
    targets = [(topics[0]["name"], nprod)] if single else [(t["name"], 1) for t in topics]
    nprocs = sum(n for _, n in targets)
    total_secs = warmup + duration
    t0 = time.time()
    i = 0
    for t, n in targets:
        for _ in range(n):
            args = common + prod_conf + ["-P", "-t", t]
            if mode == "write":
                total = parse_bytes(catchup_bytes) // size
                args += ["-c", str(total // nprocs + 1)]
            elif s["rate"] > 0:
                per = max(1, round(s["rate"] / size / nprocs))
                args += ["-r", str(per), "-c", str(int(per * total_secs))]
            else:
                args += ["-c", "2000000000"]
            if latency:
                args += ["-l", "-A", os.path.join(out, f"producer-{i}.lat")]
            name = f"producer-{i}"
            start(name, args)
            producer_names.append(name)
            i += 1
    if mode == "tailing":
        # Stop at the end of the measured time (fixed-rate producers usually
        # finish their count at about that time by themselves).
        while time.time() - t0 < total_secs + 5 and any(p.poll() is None for n, p, _ in procs if n in producer_names):
            time.sleep(0.2)
            if time.time() - t0 >= total_secs:
                stop(producer_names)
        stop(producer_names)
        time.sleep(3)  # consumers catch up
        stop(consumer_names)
    else:
        for n, p, _ in procs:
            p.wait()
    elapsed = time.time() - t0
elif mode == "catchup":
    groups = [(topics[0]["name"], parts_of[topics[0]["name"]][c::max(1, s["consumers"])]) for c in range(max(1, s["consumers"]))] \
        if single else [(t["name"], parts_of[t["name"]]) for t in topics]
    t0 = time.time()
    for i, (t, ps) in enumerate(groups):
        args = common + ["-C", "-t", t, "-o", "beginning", "-e"]
        for p in ps:
            args += ["-p", str(p)]
        name = f"consumer-{i}"
        start(name, args)
        consumer_names.append(name)
    for n, p, _ in procs:
        p.wait()
    elapsed = time.time() - t0

for _, _, log in procs:
    log.close()

errors = []
def tp(names, regex, kind):
    msgs = byts = 0
    rate_m = rate_b = 0.0
    secs = 0.0
    for n in names:
        m = last_match(n, regex)
        if not m:
            errors.append(f"{n}: no {kind} summary in {n}.log")
            continue
        if kind == "produce":
            msgs += int(m.group(3)); byts += int(m.group(3)) * size
            ms = int(m.group(4)); rate_m += float(m.group(5)); rate_b += float(m.group(6))
        else:
            msgs += int(m.group(1)); byts += int(m.group(2))
            ms = int(m.group(3)); rate_m += float(m.group(4)); rate_b += float(m.group(5))
        secs = max(secs, ms / 1000.0)
    if not names:
        return None
    return {"total_messages": msgs, "total_bytes": byts, "messages": msgs, "bytes": byts,
            "seconds": secs, "msgs_per_sec": rate_m, "mb_per_sec": rate_b}

produce = tp(producer_names, PROD_RE, "produce")
consume = tp(consumer_names, CONS_RE, "consume")
if mode == "catchup" and consume and consume["seconds"] > 0:
    # Consumers run in parallel: aggregate rate over the slowest one's time.
    consume["msgs_per_sec"] = consume["messages"] / consume["seconds"]
    consume["mb_per_sec"] = consume["bytes"] / consume["seconds"] / 1e6
for n, p, _ in procs:
    if p.returncode not in (0, None, -signal.SIGINT) and n in producer_names and mode != "tailing":
        errors.append(f"{n} exited with status {p.returncode}")
drop = warmup / (warmup + duration) if (warmup + duration) > 0 else 0.0
summary = {
    "workload": s["name"] if mode != "write" else "catch-up-write",
    "generator": "rdkafka_performance",
    "bootstrap": boot,
    "settings": s,
    "produce": produce,
    "consume": consume,
    "produce_latency_ms": latencies([os.path.join(out, f"{n}.lat") for n in producer_names], drop),
    "e2e_latency_ms": latencies([os.path.join(out, f"{n}.lat") for n in consumer_names], drop),
    "error_codes": {},
    "errors": errors,
    "elapsed_seconds": elapsed,
    "generator_cpu_seconds": sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f) for f in ("ru_utime", "ru_stime")),
    "ok": not errors,
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
# The per-message latency files are large; keep them compressed.
for n in producer_names + consumer_names:
    path = os.path.join(out, f"{n}.lat")
    if os.path.exists(path):
        subprocess.run(["gzip", "-f", path], check=False)
def show(name, t):
    if t:
        print(f"{name:<8} {t['msgs_per_sec']:>12,.0f} msg/s {t['mb_per_sec']:>10.2f} MB/s ({t['total_messages']:,} messages)")
show("produce", produce)
show("consume", consume)
for k, label in (("produce_latency_ms", "produce latency (ms)"), ("e2e_latency_ms", "end-to-end latency (ms)")):
    l = summary[k]
    if l:
        print(f"{label}: p50 {l['p50']:.3f}  p99 {l['p99']:.3f}  p99.9 {l['p999']:.3f}  p99.99 {l['p9999']:.3f}  max {l['max']:.3f}")
for e in errors:
    print("ERROR:", e)
sys.exit(0 if not errors else 1)
PY
}

EXTERNAL="${BENCH_BOOTSTRAP:-}"
BOOTSTRAP=""
mapfile -t workloads < <(expand_workloads "${names[@]}")
bench_build
build_perf

trap bench_cleanup EXIT

run_one() {
    local name=$1 file out data="" rc=0
    file="$(workload_file "$name")"
    out="$BENCH_OUT_ROOT/rdkafka-$name-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    local notes=()
    [[ -n ${BENCH_NOTE:-} ]] && notes+=("$BENCH_NOTE")
    wait_quiet
    notes+=("$(load_note)")
    if [[ -n $EXTERNAL ]]; then
        BOOTSTRAP=$EXTERNAL
        notes+=("external broker $EXTERNAL")
    else
        data="$(mktemp -d "${BENCH_DATA_ROOT:-${TMPDIR:-/tmp}}/ringlog-bench-XXXXXX")"
        bench_start_broker "$data/data" "$out/broker.log"
        BOOTSTRAP=$BENCH_BOOTSTRAP_ADDR
    fi
    log "rdkafka_performance: workload $name against $BOOTSTRAP; output in $out"
    local over=()
    [[ -n ${BENCH_DURATION:-} ]] && over+=(--duration "$BENCH_DURATION")
    [[ -n ${BENCH_WARMUP:-} ]] && over+=(--warmup "$BENCH_WARMUP")
    "$RINGLOG_BIN" bench --workload "$file" --bootstrap "$BOOTSTRAP" "${over[@]}" --prepare \
        --out "$out/prepare" >/dev/null || die "cannot create the topics of $name"
    local key
    key="$(workload_key "$file" key)"
    [[ $key == true ]] && notes+=("run unkeyed (random partitions)")

    local phase=tailing
    if [[ $name == catch-up-read ]]; then
        phase=catchup
        log "catch-up-read: writing ${BENCH_CATCHUP_BYTES:-10GiB} with rdkafka_performance"
        rdk_phase write "$out/write" || die "writing the catch-up data failed (see $out/write)"
        if [[ -z $EXTERNAL ]]; then
            bench_stop_broker
            notes+=("read ${BENCH_CATCHUP_BYTES:-10GiB} after a broker restart; page cache $(drop_page_cache)")
            bench_start_broker "$data/data" "$out/broker.log" "${BOOTSTRAP##*:}"
        fi
    fi
    local pid cpu0=0 cpu="" hwm=""
    # shellcheck disable=SC2153 # set by bench_start_broker (bench-common.sh)
    pid="$BENCH_BROKER_PID"
    [[ -n $EXTERNAL ]] && pid="${BENCH_EXTERNAL_PID:-}"
    [[ -n $pid ]] && cpu0="$(proc_cpu_ticks "$pid")"
    rdk_phase "$phase" "$out/run" | tee "$out/stdout.txt" || rc=$?
    if [[ -z $EXTERNAL ]]; then
        check_broker
        if [[ -n $BENCH_BROKER_DIED ]]; then
            warn "$BENCH_BROKER_DIED (see $out/broker.log)"
            notes+=("$BENCH_BROKER_DIED")
            pid=""
        fi
    fi
    if [[ -n $pid ]]; then
        cpu="$(cpu_seconds "$cpu0" "$(proc_cpu_ticks "$pid")")"
        hwm="$(proc_status_kb "$pid" VmHWM)"
    fi
    if [[ -f $out/run/summary.json ]]; then
        bench_record "$out/run/summary.json" rdkafka_performance "$cpu" "$hwm" "${notes[@]}"
    fi
    bench_end_run "$data"
    return "$rc"
}

failed=()
for w in "${workloads[@]}"; do
    run_one "$w" || failed+=("$w")
done
if ((${#failed[@]})); then
    warn "failed: ${failed[*]}"
    exit 1
fi
log "done: ${workloads[*]}"
