#!/usr/bin/env bash
# Run N ringlog nodes on this host for development and tests.
#
#   scripts/cluster.sh start N [-- EXTRA START FLAGS]   start nodes 1..N (N <= 5)
#   scripts/cluster.sh stop [NODE]       SIGTERM (all nodes, or one), wait for exit
#   scripts/cluster.sh kill [NODE]       kill -9
#   scripts/cluster.sh pause NODE        SIGSTOP (a node that stops answering)
#   scripts/cluster.sh resume NODE       SIGCONT
#   scripts/cluster.sh restart NODE      start one node again with its data
#   scripts/cluster.sh status            node, pid, state, client port
#   scripts/cluster.sh bootstrap         the client bootstrap list
#
# Node n listens for clients on 127.0.0.1:n9192, its controller on n9193
# and replication on n9300 + shard (docs/design/replication.md, 3.1);
# data, logs and each node's TOML config are under $RINGLOG_CLUSTER_DIR
# (default target/cluster/). Every node is a controller-quorum voter.
# Environment: RINGLOG_BIN (default target/release/ringlog),
# RINGLOG_CLUSTER_SHARDS (shards per node, default 1), RINGLOG_CLUSTER_CONFIG
# (extra TOML lines for every node's config).
#
# The nodes form one controller quorum (every node a voter) and register
# as brokers of one cluster (its id is chosen at the first start and kept
# in $RINGLOG_CLUSTER_DIR/cluster-id); topics are not replicated yet and
# stay on the node that created them (ringlog.cluster.experimental).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"

BIN="${RINGLOG_BIN:-$REPO_ROOT/target/release/ringlog}"
DIR="${RINGLOG_CLUSTER_DIR:-$REPO_ROOT/target/cluster}"
SHARDS="${RINGLOG_CLUSTER_SHARDS:-1}"

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

client_port() { echo "${1}9192"; }
controller_port() { echo "${1}9193"; }
replication_port() { echo "${1}9300"; }

# The nodes the cluster was started with (written by start).
nodes() {
    [[ -f $DIR/nodes ]] || die "no cluster in $DIR (scripts/cluster.sh start N)"
    seq 1 "$(cat "$DIR/nodes")"
}

pid_of() {
    local f="$DIR/$1.pid"
    [[ -f $f ]] && cat "$f"
}

alive() {
    local pid
    pid=$(pid_of "$1") || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

voters() {
    local n list=""
    for n in $(nodes); do
        list+="${list:+,}$n@127.0.0.1:$(controller_port "$n")"
    done
    echo "$list"
}

start_node() {
    local n=$1
    shift
    if alive "$n"; then
        log "node $n already running (pid $(pid_of "$n"))"
        return 0
    fi
    mkdir -p "$DIR/$n"
    {
        echo '"ringlog.cluster.experimental" = true'
        printf '%s\n' "${RINGLOG_CLUSTER_CONFIG:-}"
    } >"$DIR/$n.toml"
    local port cluster_id
    port=$(client_port "$n")
    cluster_id=$(cat "$DIR/cluster-id")
    "$BIN" start --node-id "$n" --data-dir "$DIR/$n/data" --shards "$SHARDS" \
        --listen "127.0.0.1:$port" --advertised-listener "127.0.0.1:$port" \
        --replication-listen "127.0.0.1:$(replication_port "$n")" \
        --controller-listen "127.0.0.1:$(controller_port "$n")" \
        --controller-quorum-voters "$(voters)" --cluster-id "$cluster_id" \
        --config "$DIR/$n.toml" "$@" >>"$DIR/$n/broker.log" 2>&1 &
    echo $! >"$DIR/$n.pid"
    if ! wait_port 127.0.0.1 "$port" 60 "$!"; then
        tail -n 20 "$DIR/$n/broker.log" >&2 || true
        die "node $n did not start (log: $DIR/$n/broker.log)"
    fi
    log "node $n: pid $(pid_of "$n"), 127.0.0.1:$port"
}

signal_nodes() {
    local sig=$1 n=${2:-}
    local list
    if [[ -n $n ]]; then list=$n; else list=$(nodes); fi
    for n in $list; do
        if alive "$n"; then
            kill "-$sig" "$(pid_of "$n")"
        fi
    done
}

cmd=${1:-}
[[ -n $cmd ]] || usage 2
shift
case $cmd in
start)
    count=${1:-3}
    shift || true
    [[ ${1:-} == "--" ]] && shift
    [[ $count =~ ^[1-5]$ ]] || die "N must be 1-5 (ports n9192 stay below 65536)"
    [[ -x $BIN ]] || die "broker binary $BIN not found (cargo build --release)"
    mkdir -p "$DIR"
    echo "$count" >"$DIR/nodes"
    # One cluster id for every node (Kafka formats each node's storage
    # with the same id); 22 URL-safe base64 characters like Kafka's.
    if [[ ! -s $DIR/cluster-id ]]; then
        head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$DIR/cluster-id"
    fi
    for n in $(seq 1 "$count"); do
        start_node "$n" "$@"
    done
    ;;
restart)
    [[ -n ${1:-} ]] || usage 2
    start_node "$1"
    ;;
stop)
    for n in ${1:-$(nodes)}; do
        if alive "$n"; then
            kill -CONT "$(pid_of "$n")" 2>/dev/null || true
            secs=$(stop_pid "$(pid_of "$n")" 30)
            log "node $n stopped (${secs}s)"
        fi
        rm -f "$DIR/$n.pid"
    done
    ;;
kill)
    signal_nodes KILL "${1:-}"
    # Gone once the kernel has torn the process down (its io_uring too).
    for n in ${1:-$(nodes)}; do
        for _ in $(seq 1 100); do
            alive "$n" || break
            sleep 0.1
        done
        alive "$n" && die "node $n still exists 10 s after kill -9"
        rm -f "$DIR/$n.pid"
    done
    ;;
pause)
    [[ -n ${1:-} ]] || usage 2
    signal_nodes STOP "$1"
    ;;
resume)
    [[ -n ${1:-} ]] || usage 2
    signal_nodes CONT "$1"
    ;;
status)
    printf '%-5s %-8s %-8s %s\n' node pid state client
    for n in $(nodes); do
        pid=$(pid_of "$n" || true)
        state=stopped
        if alive "$n"; then
            case $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) in
            T | t) state=paused ;;
            *) state=running ;;
            esac
        fi
        printf '%-5s %-8s %-8s 127.0.0.1:%s\n' "$n" "${pid:--}" "$state" "$(client_port "$n")"
    done
    ;;
bootstrap)
    list=""
    for n in $(nodes); do
        list+="${list:+,}127.0.0.1:$(client_port "$n")"
    done
    echo "$list"
    ;;
-h | --help) usage 0 ;;
*) usage 2 ;;
esac
