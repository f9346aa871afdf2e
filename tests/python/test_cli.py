"""The `ringlog` command line (topic, produce, consume, cluster, group,
completion) end to end against a real broker process.

Most tests are parametrised over two brokers: ringlog itself and a real
Apache Kafka (KRaft, from scripts/kafka-reference.sh; skipped cleanly when
Java or the jars are unavailable), so the CLI is not tuned to ringlog's
quirks. Each broker is started once per module.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import Broker, ringlog_binary
from kafka_reference import KafkaReference
from tools import on_ci

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def ringlog_broker(tmp_path_factory):
    binary = ringlog_binary()
    if not binary.exists():
        pytest.fail(f"broker binary {binary} not found (run cargo build --release)")
    b = Broker(
        binary,
        tmp_path_factory.mktemp("ringlog-cli"),
        {"auto.create.topics.enable": False, "num.partitions": 3, "group.initial.rebalance.delay.ms": 0},
    )
    b.start()
    yield b
    b.stop()
    problems = b.log_problems()
    assert not problems, f"broker log problems: {problems[:3]}"


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    ok, why = KafkaReference.available()
    if not ok:
        msg = f"Apache Kafka is not available: {why}"
        if on_ci():
            pytest.fail(f"{msg}: on CI this fails the test", pytrace=False)
        pytest.skip(msg)
    ref = KafkaReference(tmp_path_factory.mktemp("kafka-cli"))
    ref.start()
    yield ref
    ref.stop()


@pytest.fixture(params=["ringlog", "kafka"])
def target(request) -> tuple[str, str]:
    """(kind, bootstrap) of the broker under test."""
    if request.param == "ringlog":
        return "ringlog", request.getfixturevalue("ringlog_broker").bootstrap
    return "kafka", request.getfixturevalue("kafka_broker").bootstrap


def rl(bootstrap: str, *args, input: bytes | str | None = None, check: bool = True, env=None, timeout=60):
    """Run ringlog ARGS with --bootstrap; returns the CompletedProcess (bytes)."""
    if isinstance(input, str):
        input = input.encode()
    cmd = [str(ringlog_binary()), *args]
    if bootstrap:
        cmd += ["--bootstrap", bootstrap]
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=env)
    if check:
        assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    return r


def out(r) -> str:
    return r.stdout.decode()


def jrun(bootstrap: str, *args):
    return json.loads(out(rl(bootstrap, *args, "--format", "json")))


def new_topic(bootstrap: str, partitions: int = 1, *extra) -> str:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    rl(bootstrap, "topic", "create", name, "-p", str(partitions), "-r", "1", *extra)
    wait_leaders(bootstrap, name)
    return name


def wait_leaders(bootstrap: str, name: str, deadline_s: float = 20.0) -> None:
    end = time.time() + deadline_s
    while True:
        r = rl(bootstrap, "topic", "describe", name, "--format", "json", check=False)
        if r.returncode == 0:
            d = json.loads(r.stdout)[0]
            if d["partitions"] and all(p["leader"] >= 0 and p["high_watermark"] is not None for p in d["partitions"]):
                return
        if time.time() > end:
            raise AssertionError(f"topic {name} has no leaders: {r.stderr!r}")
        time.sleep(0.2)


# --- topics ------------------------------------------------------------------------


def test_topic_commands(target):
    kind, bs = target
    name = f"cli-{uuid.uuid4().hex[:10]}"
    r = rl(bs, "topic", "create", name, "-p", "2", "-r", "1", "-c", "retention.ms=3600000", "--dry-run")
    assert "OK (dry run)" in out(r)
    assert name not in [t["name"] for t in jrun(bs, "topic", "list")]

    created = jrun(bs, "topic", "create", name, "-p", "2", "-r", "1", "-c", "retention.ms=3600000")
    assert created[0]["name"] == name and created[0]["error"] is None
    wait_leaders(bs, name)

    listed = {t["name"]: t for t in jrun(bs, "topic", "list")}
    assert listed[name]["partitions"] == 2 and listed[name]["replicas"] == 1
    assert listed[name]["internal"] is False
    text = out(rl(bs, "topic", "ls"))
    assert text.splitlines()[0].split() == ["NAME", "PARTITIONS", "REPLICAS"]
    assert any(line.split() == [name, "2", "1"] for line in text.splitlines())

    d = jrun(bs, "topic", "describe", name)[0]
    assert d["name"] == name and len(d["partitions"]) == 2
    for p in d["partitions"]:
        assert p["leader"] >= 0 and p["replicas"] == [p["leader"]] and p["isr"] == [p["leader"]]
        assert p["log_start_offset"] == 0 and p["high_watermark"] == 0
        assert p["leader_epoch"] >= 0
    configs = {c["name"]: c for c in d["configs"]}
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    text = out(rl(bs, "topic", "describe", name))
    for section in ("SUMMARY", "CONFIGS", "PARTITIONS", "LOG-START-OFFSET", "HIGH-WATERMARK"):
        assert section in text

    rl(bs, "topic", "alter-config", name, "--set", "retention.ms=60000", "--set", "cleanup.policy=compact")
    configs = {c["name"]: c for c in jrun(bs, "topic", "describe", name)[0]["configs"]}
    assert configs["retention.ms"]["value"] == "60000"
    assert configs["cleanup.policy"]["value"] == "compact"
    rl(bs, "topic", "alter-config", name, "--delete", "cleanup.policy")
    configs = {c["name"]: c for c in jrun(bs, "topic", "describe", name)[0]["configs"]}
    assert configs["cleanup.policy"]["value"] == "delete"
    assert configs["cleanup.policy"]["source"] != "DYNAMIC_TOPIC_CONFIG"

    assert "2 -> 3 partitions" in out(rl(bs, "topic", "add-partitions", name, "-n", "1"))
    wait_leaders(bs, name)
    assert len(jrun(bs, "topic", "describe", name)[0]["partitions"]) == 3

    # Errors: named codes, exit 1.
    r = rl(bs, "topic", "create", name, "-p", "1", check=False)
    assert r.returncode == 1 and b"TOPIC_ALREADY_EXISTS (36)" in r.stderr, r.stderr
    r = rl(bs, "topic", "create", name + "x", "-c", "retention.ms=banana", check=False)
    assert r.returncode == 1 and b"INVALID_CONFIG (40)" in r.stderr, r.stderr
    r = rl(bs, "topic", "describe", "no-such-topic-" + name, check=False)
    assert r.returncode == 1
    assert b'UNKNOWN_TOPIC_OR_PARTITION (3): topic "no-such-topic-' in r.stderr
    assert b"create it with ringlog topic create" in r.stderr

    assert "OK" in out(rl(bs, "topic", "delete", name))
    deadline = time.time() + 20
    while name in [t["name"] for t in jrun(bs, "topic", "list")]:
        assert time.time() < deadline, "topic still listed after delete"
        time.sleep(0.2)
    r = rl(bs, "topic", "delete", name, check=False)
    assert r.returncode == 1 and b"UNKNOWN_TOPIC_OR_PARTITION (3)" in r.stderr


def test_trim_prefix(target):
    _, bs = target
    name = new_topic(bs)
    rl(bs, "produce", name, input="".join(f"v{i}\n" for i in range(10)))
    assert "log start offset 4" in out(rl(bs, "topic", "trim-prefix", name, "-p", "0", "-o", "4"))
    p = jrun(bs, "topic", "describe", name)[0]["partitions"][0]
    assert (p["log_start_offset"], p["high_watermark"]) == (4, 10)
    assert out(rl(bs, "consume", name, "-e")).split() == [f"v{i}" for i in range(4, 10)]


# --- produce / consume ------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_keys_headers_codecs(target, codec):
    _, bs = target
    name = new_topic(bs, 3)
    lines = "".join(f"key-{i} value {i}\n" for i in range(50))
    r = rl(bs, "produce", name, "-f", "%k %v\\n", "-H", "src=cli", "-H", "n=1", "-z", codec, "-v", input=lines)
    produced = [line for line in out(r).splitlines() if line.startswith("Produced to partition")]
    assert len(produced) == 50
    got = out(rl(bs, "consume", name, "-e", "-f", "%k|%v|%h\\n")).splitlines()
    assert sorted(got) == sorted(f"key-{i}|value {i}|src=cli,n=1" for i in range(50))
    # Same key, same partition.
    by_key = {}
    for line in out(rl(bs, "consume", name, "-e", "-f", "%p %k\\n")).splitlines():
        p, k = line.split()
        assert by_key.setdefault(k, p) == p

    recs = [json.loads(line) for line in out(rl(bs, "consume", name, "-e", "--format", "json")).splitlines()]
    assert len(recs) == 50
    r0 = recs[0]
    assert set(r0) == {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "key_base64",
        "value",
        "value_base64",
        "headers",
    }
    assert r0["topic"] == name and r0["headers"][0]["key"] == "src" and r0["headers"][0]["value"] == "cli"
    assert base64.b64decode(r0["value_base64"]).decode() == r0["value"]
    assert abs(r0["timestamp"] - time.time() * 1000) < 120_000


def test_binary_values(target):
    _, bs = target
    name = new_topic(bs)
    values = [bytes(range(256)), b"\x00\n\r\t\xff", os.urandom(300_000)]
    payload = "".join(base64.b64encode(v).decode() + "\n" for v in values)
    rl(bs, "produce", name, "-f", "%v{base64}\\n", "-z", "zstd", input=payload)
    got = out(rl(bs, "consume", name, "-e", "-f", "%v{base64}\\n")).split()
    assert [base64.b64decode(g) for g in got] == values
    # Raw %v writes the bytes as they are.
    raw = rl(bs, "consume", name, "-n", "1", "-f", "%v").stdout
    assert raw == values[0]
    hexed = out(rl(bs, "consume", name, "-n", "1", "-o", "1", "-f", "%v{hex}"))
    assert hexed == values[1].hex()


def test_messages_up_to_the_broker_limit(target):
    _, bs = target
    name = new_topic(bs)
    # message.max.bytes is 1048588 on both brokers: a 1,000,000-byte value
    # (incompressible) fits in a batch of its own, even after smaller ones.
    big = [os.urandom(1000), os.urandom(1_000_000), os.urandom(900_000)]
    payload = "".join(base64.b64encode(v).decode() + "\n" for v in big)
    rl(bs, "produce", name, "-f", "%v{base64}\\n", input=payload, timeout=120)
    got = out(rl(bs, "consume", name, "-e", "-f", "%v{base64}\\n", timeout=120)).split()
    assert [base64.b64decode(g) for g in got] == big
    # Over the limit: the broker's error, named, and a failing exit status.
    r = rl(bs, "produce", name, "-f", "%v{base64}\\n", input=base64.b64encode(os.urandom(1_200_000)).decode() + "\n", check=False)
    assert r.returncode == 1 and b"MESSAGE_TOO_LARGE (10)" in r.stderr, r.stderr[-500:]


def test_offsets_and_timestamps(target):
    _, bs = target
    name = new_topic(bs)
    rl(bs, "produce", name, input="".join(f"a{i}\n" for i in range(5)))
    time.sleep(0.05)
    mid = int(time.time() * 1000)
    time.sleep(0.05)
    rl(bs, "produce", name, input="".join(f"b{i}\n" for i in range(5)))

    def consume(*args):
        return out(rl(bs, "consume", name, *args)).split()

    assert consume("-e") == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    assert consume("-o", "3", "-e") == ["a3", "a4"] + [f"b{i}" for i in range(5)]
    assert consume("-o", "-2", "-e") == ["b3", "b4"]
    assert consume("-o", "end", "-e") == []
    assert consume("-o", f"@{mid}", "-e") == [f"b{i}" for i in range(5)]
    assert consume("-n", "3") == ["a0", "a1", "a2"]
    assert consume("-o", "start", "-n", "2", "-f", "%o:%v\\n") == ["0:a0", "1:a1"]
    ts = consume("-n", "1", "-o", "5", "-f", "%d\\n")[0]
    assert int(ts) >= mid
    # Partition selection.
    assert consume("-p", "0", "-n", "1") == ["a0"]
    r = rl(bs, "consume", name, "-p", "7", "-e", check=False)
    assert r.returncode == 1 and b"UNKNOWN_TOPIC_OR_PARTITION (3)" in r.stderr


def test_produce_to_partition_and_acks(target):
    _, bs = target
    name = new_topic(bs, 3)
    r = rl(bs, "produce", name, "-p", "2", "-v", "--acks", "1", input="x\ny\n")
    assert out(r).splitlines() == ["Produced to partition 2 at offset 0", "Produced to partition 2 at offset 1"]
    rl(bs, "produce", name, "-p", "1", "--acks", "0", input="z\n")
    deadline = time.time() + 10
    while True:
        got = out(rl(bs, "consume", name, "-e", "-f", "%p:%v\\n")).split()
        if len(got) == 3 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert sorted(got) == ["1:z", "2:x", "2:y"]


def test_group_consume_commits(target):
    kind, bs = target
    name = new_topic(bs, 2)
    rl(bs, "produce", name, "-f", "%k %v\\n", input="".join(f"k{i} v{i}\n" for i in range(20)))
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = out(rl(bs, "consume", name, "-g", group, "-n", "8", timeout=90)).split()
    assert len(first) == 8
    desc = out(rl(bs, "group", "describe", group))
    assert name in desc
    rest = out(rl(bs, "consume", name, "-g", group, "-e", timeout=90)).split()
    assert sorted(first + rest) == sorted(f"v{i}" for i in range(20))
    # Everything committed: nothing left, lag 0.
    assert out(rl(bs, "consume", name, "-g", group, "-e", timeout=90)).split() == []
    desc = out(rl(bs, "group", "describe", group))
    lag_rows = [line.split() for line in desc.splitlines() if name in line.split()]
    assert len(lag_rows) == 2 and all(r[5] == "0" for r in lag_rows), desc
    d = jrun(bs, "group", "describe", group)
    assert set(d) == {"group", "type", "state", "protocol", "members", "offsets", "total_lag"}
    assert d["total_lag"] == 0 and d["members"] == []
    assert sorted((o["topic"], o["partition"], o["committed_offset"], o["lag"]) for o in d["offsets"]) == [
        (name, 0, d["offsets"][0]["log_end_offset"], 0),
        (name, 1, d["offsets"][1]["log_end_offset"], 0),
    ]
    assert sum(o["committed_offset"] for o in d["offsets"]) == 20
    listed = {g["group"]: g for g in jrun(bs, "group", "list")}
    assert set(listed[group]) == {"group", "type", "state", "protocol_type"}
    assert listed[group]["protocol_type"] == "consumer"

    r = rl(bs, "group", "offset-delete", group, "--topic", name, "-p", "0")
    assert "OK" in out(r)
    assert "OK" in out(rl(bs, "group", "delete", group))
    r = rl(bs, "group", "delete", group, check=False)
    assert r.returncode == 1 and b"GROUP_ID_NOT_FOUND (69)" in r.stderr, r.stderr
    r = rl(bs, "group", "describe", group, check=False)
    assert r.returncode == 1 and b"GROUP_ID_NOT_FOUND (69)" in r.stderr, r.stderr


def test_group_consumer_ctrl_c_commits_and_leaves(target):
    _, bs = target
    name = new_topic(bs, 2)
    rl(bs, "produce", name, input="".join(f"v{i}\n" for i in range(10)))
    group = f"g-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [str(ringlog_binary()), "consume", name, "-g", group, "--bootstrap", bs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        got = []
        deadline = time.time() + 60
        while len(got) < 10 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            got.append(line.decode().strip())
        assert sorted(got) == sorted(f"v{i}" for i in range(10))
        # Still following: a new record shows up.
        rl(bs, "produce", name, "-p", "0", input="late\n")
        assert proc.stdout.readline().decode().strip() == "late"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    d = jrun(bs, "group", "describe", group)
    assert d["members"] == [] and d["total_lag"] == 0
    assert sum(o["committed_offset"] for o in d["offsets"]) == 11


# --- cluster --------------------------------------------------------------------------


def test_cluster_info_and_config(target):
    kind, bs = target
    info = jrun(bs, "cluster", "info")
    assert set(info) == {"cluster_id", "controller", "brokers"}
    assert info["cluster_id"] and len(info["brokers"]) == 1
    b = info["brokers"][0]
    assert set(b) == {"id", "address", "rack", "fenced"} and b["address"] == bs
    text = out(rl(bs, "cluster", "info"))
    assert "CLUSTER" in text and "BROKERS" in text and bs in text

    configs = jrun(bs, "cluster", "config", "get")
    names = {c["name"] for c in configs}
    assert "log.retention.ms" in names or "log.retention.hours" in names
    one = jrun(bs, "cluster", "config", "get", "num.partitions")
    assert [c["name"] for c in one] == ["num.partitions"]
    assert set(one[0]) == {"name", "value", "source", "read_only", "sensitive"}
    assert "num.partitions" in out(rl(bs, "cluster", "config", "get", "num.partitions"))

    r = rl(bs, "cluster", "config", "set", "log.retention.ms=86400000", check=False)
    if kind == "kafka":
        assert r.returncode == 0, r.stderr
    else:
        # ringlog has no dynamic broker configs: refused, with the code named.
        assert r.returncode == 1 and b"INVALID_REQUEST (42)" in r.stderr, r.stderr


# --- ringlog only ------------------------------------------------------------------


def test_partitioner_matches_the_java_client(ringlog_broker):
    """Keyed records land where librdkafka's murmur2 partitioner (the Java
    client's default) puts them."""
    from confluent_kafka import Producer

    bs = ringlog_broker.bootstrap
    name = new_topic(bs, 5)
    keys = [f"user-{i}" for i in range(40)]
    rl(bs, "produce", name, "-f", "%k %v\\n", input="".join(f"{k} x\n" for k in keys))
    ours = dict(line.split() for line in out(rl(bs, "consume", name, "-e", "-f", "%k %p\\n")).splitlines())
    other = new_topic(bs, 5)
    p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random"})
    for k in keys:
        p.produce(other, key=k, value=b"x")
    assert p.flush(30) == 0
    theirs = dict(line.split() for line in out(rl(bs, "consume", other, "-e", "-f", "%k %p\\n")).splitlines())
    assert ours == theirs


def test_usage_errors_env_help_and_completion(ringlog_broker):
    bs = ringlog_broker.bootstrap
    r = rl("", "consume", check=False)
    assert r.returncode == 2
    r = rl(bs, "consume", "x", "-o", "soon", check=False)
    assert r.returncode == 1 and b"bad offset" in r.stderr
    r = rl(bs, "consume", "x", "-f", "%q", check=False)
    assert r.returncode == 1 and b"unknown field" in r.stderr
    r = rl(bs, "consume", "no-such-topic-xyz", "-e", check=False)
    assert r.returncode == 1
    assert b'error: UNKNOWN_TOPIC_OR_PARTITION (3): topic "no-such-topic-xyz" does not exist' in r.stderr
    r = rl(bs, "produce", "no-such-topic-xyz", input="a\n", check=False)
    assert r.returncode == 1 and b"UNKNOWN_TOPIC_OR_PARTITION (3)" in r.stderr
    r = rl("", "topic", "list", "--bootstrap", "127.0.0.1:1", check=False)
    assert r.returncode == 1 and b"127.0.0.1:1" in r.stderr

    env = dict(os.environ, RINGLOG_BOOTSTRAP=bs)
    name = new_topic(bs)
    assert name in out(rl("", "topic", "list", env=env))

    commands = [
        "start", "bench", "dump-log", "produce", "consume", "completion",
        "topic create", "topic list", "topic describe", "topic alter-config", "topic add-partitions",
        "topic delete", "topic trim-prefix", "cluster info", "cluster config", "cluster config get",
        "cluster config set", "group list", "group describe", "group reset-offsets", "group delete",
        "group offset-delete",
    ]  # fmt: skip
    for cmd in commands:
        h = out(rl("", *cmd.split(), "--help"))
        assert "Example" in h, cmd
    for shell, marker in (("bash", "complete"), ("zsh", "#compdef"), ("fish", "complete -c ringlog")):
        script = out(rl("", "completion", shell))
        assert marker in script and "consume" in script, shell


# --- several brokers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_two_brokers(tmp_path_factory):
    """A real two-broker Apache Kafka cluster (a combined node and a
    broker-only node), so that partitions and the group coordinator are
    spread over brokers the CLI must route to."""
    ok, why = KafkaReference.available()
    if not ok:
        msg = f"Apache Kafka is not available: {why}"
        if on_ci():
            pytest.fail(f"{msg}: on CI this fails the test", pytrace=False)
        pytest.skip(msg)
    first = KafkaReference(tmp_path_factory.mktemp("kafka-cli-1"))
    first.start()
    second = KafkaReference(tmp_path_factory.mktemp("kafka-cli-2"))
    try:
        second.start(join=first, node_id=2)
    except Exception:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()


def test_routes_to_the_leader_of_every_partition_on_several_brokers(kafka_two_brokers):
    first, second = kafka_two_brokers
    bs = first.bootstrap  # one address: the rest comes from Metadata
    info = jrun(bs, "cluster", "info")
    assert sorted(b["id"] for b in info["brokers"]) == [1, 2], info
    name = f"cli-{uuid.uuid4().hex[:10]}"
    rl(bs, "topic", "create", name, "-p", "6", "-r", "1")
    wait_leaders(bs, name)
    leaders = {p["partition"]: p["leader"] for p in jrun(bs, "topic", "describe", name)[0]["partitions"]}
    assert set(leaders.values()) == {1, 2}, leaders

    # Keyed records land on partitions of both brokers, each acknowledged
    # by its leader with dense offsets.
    lines = "".join(f"key{i} value{i}\n" for i in range(60))
    produced = out(rl(bs, "produce", name, "-f", "%k %v\\n", "-v", input=lines)).splitlines()
    acks = sorted((int(w[3]), int(w[6])) for w in (line.split() for line in produced))
    assert len(acks) == 60
    by_partition: dict[int, list[int]] = {}
    for p, o in acks:
        by_partition.setdefault(p, []).append(o)
    assert {leaders[p] for p in by_partition} == {1, 2}, by_partition
    assert all(offs == list(range(len(offs))) for offs in by_partition.values()), by_partition

    # Read back from every leader: each key on the partition it was acked on.
    got = out(rl(bs, "consume", name, "-e", "-f", "%p %o %k %v\\n", timeout=90)).splitlines()
    rows = sorted(tuple(line.split()) for line in got)
    assert len(rows) == 60
    assert sorted((int(p), int(o)) for p, o, _, _ in rows) == acks
    assert all(k.replace("key", "") == v.replace("value", "") for _, _, k, v in rows)

    # A group: the coordinator may be either broker; commits reach it.
    group = f"g-{uuid.uuid4().hex[:8]}"
    values = out(rl(bs, "consume", name, "-g", group, "-e", timeout=90)).split()
    assert sorted(values) == sorted(f"value{i}" for i in range(60))
    d = jrun(bs, "group", "describe", group)
    assert d["total_lag"] == 0 and len(d["offsets"]) == 6, d

    # DeleteRecords goes to the leader too: trim a partition of broker 2.
    p2 = next(p for p, lead in leaders.items() if lead == 2 and by_partition.get(p))
    rl(bs, "topic", "trim-prefix", name, "-p", str(p2), "-o", "1")
    parts = {p["partition"]: p for p in jrun(bs, "topic", "describe", name)[0]["partitions"]}
    assert parts[p2]["log_start_offset"] == 1, parts[p2]
    # Sizes on disk come from each partition's own broker.
    assert all(parts[p]["size_bytes"] > 0 for p in by_partition), parts


def test_progress_only_on_a_terminal(ringlog_broker):
    """A long produce shows its count and rate on stderr when stderr is a
    terminal, and nothing when it is a pipe."""
    import pty
    import threading

    bs = ringlog_broker.bootstrap
    name = new_topic(bs)

    def produce(stderr) -> subprocess.Popen:
        p = subprocess.Popen(
            [str(ringlog_binary()), "produce", name, "--bootstrap", bs],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

        def feed():
            for i in range(16):  # about 2 s of input, in bursts
                p.stdin.write(b"".join(b"record %d\n" % (i * 100 + j) for j in range(100)))
                p.stdin.flush()
                time.sleep(0.12)
            p.stdin.close()

        threading.Thread(target=feed, daemon=True).start()
        return p

    master, slave = pty.openpty()
    p = produce(slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert p.wait(timeout=60) == 0
    os.close(master)
    text = shown.decode(errors="replace")
    assert "produced 1600 records in" in text and "records/s" in text, text

    p = produce(subprocess.PIPE)
    err = p.stderr.read()  # until the producer exits (the feeder closes stdin)
    assert p.wait(timeout=60) == 0 and err == b"", err
    assert len(out(rl(bs, "consume", name, "-e")).split("\n")) - 1 == 3200
