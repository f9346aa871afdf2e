#!/usr/bin/env bash
# Apache Kafka as a reference broker for the tests (tests/python/kafka_reference.py).
#
# Usage: scripts/kafka-reference.sh fetch|start|stop|status|classpath [--port P] [--dir D] [--keep-data]
#
#   fetch      download org.apache.kafka:kafka_2.13 and its runtime
#              dependencies from Maven Central with mvn (a generated minimal
#              pom, dependency:copy-dependencies) into the cache directory;
#              nothing is downloaded when the cache is already complete
#   start      fetch, format a KRaft combined-mode data dir (broker and
#              controller, node.id=1) in D with kafka.tools.StorageTool and
#              start kafka.Kafka in the background (-Xmx512m) on port P (a
#              free port when not given); waits until it accepts connections
#              and prints "bootstrap=127.0.0.1:P" and "log_dir=D/data"
#   stop       stop the broker started in D (SIGTERM, SIGKILL after 20 s)
#   status     "running pid=... port=..." or "stopped" (exit status 1)
#   classpath  print the Java classpath (for kafka.tools.DumpLogSegments)
#
#   --dir D    work directory (default: target/kafka-reference); holds
#              server.properties, data/, kafka.log, kafka.pid, port
#   --port P   client port (the controller listens on another free port)
#   --join D2  start: a broker-only node (node.id from --node-id, default 2)
#              that joins the quorum of the Kafka started in D2 (its
#              controller, its cluster id): a multi-broker reference cluster
#   --node-id N  with --join: this broker's node.id
#   --keep-data  start: restart on the existing data dir of an earlier start
#              (same ports, no format), e.g. after swapping segment files
#
# Environment:
#   KAFKA_REF_VERSION  Kafka version (default 4.1.1)
#   KAFKA_REF_CACHE    jar directory (default
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/ringlog/kafka-VERSION)
#   KAFKA_REF_HEAP     -Xmx for the broker (default 512m)
set -euo pipefail

# shellcheck disable=SC1091 # helpers only; linted on their own
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

VERSION="${KAFKA_REF_VERSION:-4.1.1}"
CACHE="${KAFKA_REF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringlog/kafka-$VERSION}"
HEAP="${KAFKA_REF_HEAP:-512m}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

cmd="${1:-}"
[[ -n $cmd ]] || { usage >&2; exit 2; }
shift
port=""
keep=0
join=""
node_id=2
dir="$REPO_ROOT/target/kafka-reference"
while (($#)); do
    case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --keep-data) keep=1; shift ;;
    --join) join="$2"; shift 2 ;;
    --node-id) node_id="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# The cache is complete when the marker exists (written after a successful copy).
fetch() {
    # The marker names what the cache holds: the broker and the tools
    # (kafka-topics and the other command-line tools).
    if [[ -f $CACHE/.complete ]] && [[ $(cat "$CACHE/.complete") == "$VERSION+tools" ]]; then
        return 0
    fi
    need_tool java || die "java is needed to run Apache Kafka"
    need_tool mvn || die "mvn is needed to fetch Apache Kafka"
    log "fetching org.apache.kafka:kafka_2.13 and kafka-tools $VERSION with their dependencies into $CACHE"
    local pomdir start=$SECONDS
    pomdir="$(mktemp -d)"
    cat >"$pomdir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ringlog</groupId>
  <artifactId>kafka-reference</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$CACHE.tmp"
    mkdir -p "$CACHE.tmp"
    if ! (cd "$pomdir" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$CACHE.tmp"); then
        rm -rf "$pomdir" "$CACHE.tmp"
        die "mvn could not fetch Apache Kafka $VERSION"
    fi
    rm -rf "$pomdir" "$CACHE"
    mv "$CACHE.tmp" "$CACHE"
    echo "$VERSION+tools" >"$CACHE/.complete"
    log "fetched $(find "$CACHE" -name '*.jar' | wc -l) jars, $(du -sh "$CACHE" | cut -f1), in $((SECONDS - start)) s"
}

classpath() {
    printf '%s/*\n' "$CACHE"
}

pid_of() {
    local pid
    [[ -f $dir/kafka.pid ]] || return 1
    pid="$(cat "$dir/kafka.pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

start() {
    fetch
    if pid_of >/dev/null; then
        die "Kafka already runs in $dir (pid $(pid_of))"
    fi
    local cp
    cp="$(classpath)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if ((keep)); then
        [[ -f $dir/server.properties && -f $dir/data/meta.properties ]] ||
            die "--keep-data: no formatted Kafka data dir in $dir"
        port="$(cat "$dir/port")"
        run_kafka
        return
    fi
    [[ -n $port ]] || port="$(free_port)"
    if [[ -n $join ]]; then
        start_joining
        return
    fi
    local cport
    cport="$(free_port)"
    rm -rf "$dir/data"
    : >"$dir/kafka.log"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
EOF
    common_properties >>"$dir/server.properties"
    java -Xmx256m -cp "$cp" kafka.tools.StorageTool format \
        -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
        -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
        die "kafka.tools.StorageTool format failed: $(tail -n 5 "$dir/format.log")"
    echo "$port" >"$dir/port"
    run_kafka
}

# common_properties: what every node's server.properties has (uses port, dir).
common_properties() {
    cat <<EOF
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
EOF
}

# start_joining: a broker-only node in $dir that joins the quorum of the
# Kafka in $join (uses cp, dir, port, join, node_id).
start_joining() {
    local jdir voters cluster
    jdir="$(cd "$join" && pwd)"
    [[ -f $jdir/server.properties && -f $jdir/data/meta.properties ]] ||
        die "--join: no started Kafka in $join"
    voters="$(sed -n 's/^controller.quorum.voters=//p' "$jdir/server.properties")"
    cluster="$(sed -n 's/^cluster.id=//p' "$jdir/data/meta.properties")"
    [[ -n $voters && -n $cluster ]] || die "--join: cannot read the quorum of $join"
    rm -rf "$dir/data"
    : >"$dir/kafka.log"
    cat >"$dir/server.properties" <<EOF
process.roles=broker
node.id=$node_id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port
EOF
    common_properties >>"$dir/server.properties"
    java -Xmx256m -cp "$cp" kafka.tools.StorageTool format -t "$cluster" \
        -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
        die "kafka.tools.StorageTool format failed: $(tail -n 5 "$dir/format.log")"
    echo "$port" >"$dir/port"
    run_kafka
}

# run_kafka: start kafka.Kafka on $dir/server.properties (uses cp, dir, port).
run_kafka() {
    java "-Xmx$HEAP" -Xms128m -XX:+UseSerialGC -cp "$cp" kafka.Kafka "$dir/server.properties" \
        >>"$dir/kafka.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/kafka.pid"
    if ! wait_port 127.0.0.1 "$port" 90 "$pid"; then
        tail -n 30 "$dir/kafka.log" >&2
        stop_pid "$pid" 5 >/dev/null
        die "Kafka did not start on port $port (log: $dir/kafka.log)"
    fi
    echo "bootstrap=127.0.0.1:$port"
    echo "log_dir=$dir/data"
}

stop() {
    local pid
    if pid="$(pid_of)"; then
        stop_pid "$pid" 20 >/dev/null
    fi
    rm -f "$dir/kafka.pid"
}

status() {
    local pid
    if pid="$(pid_of)"; then
        echo "running pid=$pid port=$(cat "$dir/port")"
    else
        echo "stopped"
        return 1
    fi
}

case "$cmd" in
fetch) fetch; echo "$CACHE" ;;
start) start ;;
stop) stop ;;
status) status ;;
classpath) fetch; classpath ;;
-h | --help) usage ;;
*) die "unknown command: $cmd (see --help)" ;;
esac
