"""A node's cluster settings and identity (issue 10, milestone M1).

- Kafka's settings as flags and TOML keys (`node.id`,
  `controller.quorum.voters`, the controller listener, `broker.rack`), and
  the start-up refusals that wrong combinations get.
- `meta.properties`, Kafka's identity file: written at first start, a data
  dir never served under another node id or joined to another cluster, and
  a data dir from before the file existed migrated with its cluster id.
- Metadata, DescribeCluster and DescribeTopicPartitions answered from the
  multi-broker metadata model (node id, rack, replicas, ISR, leader), also
  through Kafka's own `kafka-topics.sh --describe` (Java admin client,
  which uses DescribeTopicPartitions).
- `scripts/cluster.sh`: N nodes on one host, pause / resume / kill / stop.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import free_port, ringlog_binary
from kafka_reference import KafkaReference
from kafkahelpers import create_topic
from tools import on_ci

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_props(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def run_start(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    """`ringlog start ARGS` that must exit on its own (a refused start)."""
    return subprocess.run(
        [str(ringlog_binary()), "start", *args], capture_output=True, text=True, timeout=timeout
    )


def test_meta_properties_is_written_and_guards_the_node_id(broker_factory, tmp_path):
    b = broker_factory(config={"node.id": 3})
    props = read_props(b.data_dir / "meta.properties")
    assert props["version"] == "1" and props["node.id"] == "3", props
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", props["directory.id"]), props
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    cluster = admin.describe_cluster().result(30)
    assert cluster.cluster_id == props["cluster.id"]
    assert [n.id for n in cluster.nodes] == [3] and cluster.controller.id == 3
    b.stop()

    # Another node id on this directory: refused, naming the owner.
    port = free_port()
    r = run_start(["--data-dir", str(b.data_dir), "--listen", f"127.0.0.1:{port}", "--node-id", "4"])
    assert r.returncode != 0
    assert "belongs to node 3" in r.stderr, r.stderr[-2000:]
    # Another cluster id: refused too.
    r = run_start(["--data-dir", str(b.data_dir), "--listen", f"127.0.0.1:{port}", "--node-id", "3",
                   "--cluster-id", "someotherclusterid"])
    assert r.returncode != 0 and "INCONSISTENT_CLUSTER_ID" in r.stderr, r.stderr[-2000:]
    # The right one starts, with the same identity.
    b.start()
    assert read_props(b.data_dir / "meta.properties") == props


def test_a_data_dir_from_before_meta_properties_keeps_its_cluster_and_topics(broker_factory):
    b = broker_factory()
    create_topic(b.bootstrap, "kept", 2)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce("kept", value=f"v{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    b.stop()
    # Make the directory look as an older ringlog left it: no identity
    # file, no broker table, partitions without replicas / ISR / leader.
    (b.data_dir / "meta.properties").unlink()
    meta_path = b.data_dir / "cluster-metadata.json"
    meta = json.loads(meta_path.read_text())
    cluster_id = meta["cluster_id"]
    meta.pop("brokers", None)
    for t in meta["topics"].values():
        for part in t["partitions"]:
            for k in ("replicas", "isr", "leader", "partition_epoch"):
                part.pop(k, None)
    meta_path.write_text(json.dumps(meta))

    b.start()
    assert read_props(b.data_dir / "meta.properties")["cluster.id"] == cluster_id
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=30)
    assert md.cluster_id == cluster_id
    parts = md.topics["kept"].partitions
    assert sorted(parts) == [0, 1]
    for part in parts.values():
        assert (part.leader, part.replicas, part.isrs) == (0, [0], [0])
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g", "enable.auto.commit": False})
    c.assign([TopicPartition("kept", i, 0) for i in range(2)])
    got = []
    while len(got) < 10:
        m = c.poll(10)
        assert m is not None, f"only {len(got)} of 10 records read back"
        assert m.error() is None, m.error()
        got.append(m.value())
    c.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(10))


def test_metadata_shows_the_node_id_rack_replicas_and_isr(broker_factory):
    b = broker_factory(config={"node.id": 7, "broker.rack": "rack-a"})
    create_topic(b.bootstrap, "placed", 3)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    md = admin.list_topics(timeout=30)
    assert list(md.brokers) == [7]
    for part in md.topics["placed"].partitions.values():
        assert (part.leader, part.replicas, part.isrs) == (7, [7], [7])
    cluster = admin.describe_cluster().result(30)
    assert [(n.id, n.rack) for n in cluster.nodes] == [(7, "rack-a")]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--controller-quorum-voters", "1@127.0.0.1:{c}", "--node-id", "1"], "needs --controller-listen"),
        (["--controller-listen", "127.0.0.1:{c}"], "only for a node listed"),
        (["--controller-quorum-voters", "1@127.0.0.1:{c},2@127.0.0.1:{d}", "--node-id", "1",
          "--controller-listen", "127.0.0.1:{c}"], "not available yet"),
        (["--controller-quorum-voters", "1@127.0.0.1", "--node-id", "1"], "ID@HOST:PORT"),
        (["--controller-quorum-voters", "1@127.0.0.1:{c},1@127.0.0.1:{d}", "--node-id", "1"], "listed twice"),
        (["--node-id=-2"], "node.id"),
        (["--replication-listen", "127.0.0.1:{p}"], "include the client port"),
    ],
)
def test_wrong_cluster_settings_are_refused_at_start(tmp_path, args, message):
    port, c, d = free_port(), free_port(), free_port()
    args = [a.format(p=port, c=c, d=d) for a in args]
    r = run_start(["--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", *args])
    assert r.returncode != 0, r.stderr[-2000:]
    assert message in r.stderr, r.stderr[-2000:]


def test_a_one_voter_quorum_is_a_single_node(broker_factory, tmp_path):
    """`controller.quorum.voters` naming only this node is Kafka's one-node
    combined mode: accepted without the experimental switch."""
    c = free_port()
    b = broker_factory(config={
        "node.id": 1,
        "controller.quorum.voters": f"1@127.0.0.1:{c}",
        "listeners": f"PLAINTEXT://127.0.0.1:{free_port()},CONTROLLER://127.0.0.1:{c}",
    }, start=False)
    b.start()
    create_topic(b.bootstrap, "solo", 1)
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=30)
    assert list(md.brokers) == [1]


@pytest.fixture(scope="module")
def kafka_jars(tmp_path_factory):
    ok, why = KafkaReference.available()
    if not ok:
        msg = f"Apache Kafka is not available: {why}"
        if on_ci():
            pytest.fail(f"{msg}: on CI this fails the test", pytrace=False)
        pytest.skip(msg)
    return KafkaReference(tmp_path_factory.mktemp("kafka-ref"))


def test_kafka_topics_describe_sees_leader_replicas_and_isr(broker_factory, kafka_jars):
    """Kafka 4's admin client describes topics with DescribeTopicPartitions
    (paging through them): `kafka-topics.sh --describe` against ringlog."""
    b = broker_factory(config={"node.id": 2})
    create_topic(b.bootstrap, "described", 3)
    create_topic(b.bootstrap, "other", 1)
    r = subprocess.run(
        ["java", "-cp", kafka_jars.classpath(), "org.apache.kafka.tools.TopicCommand",
         "--bootstrap-server", b.bootstrap, "--describe", "--topic", "described",
         "--partition-size-limit-per-response", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = re.findall(r"Partition: (\d+)\s+Leader: (\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]+)", r.stdout)
    assert rows == [(str(i), "2", "2", "2") for i in range(3)], r.stdout
    assert "PartitionCount: 3" in r.stdout and "ReplicationFactor: 1" in r.stdout, r.stdout


def test_cluster_script_runs_pauses_and_stops_nodes(tmp_path):
    env = dict(os.environ, RINGLOG_BIN=str(ringlog_binary()), RINGLOG_CLUSTER_DIR=str(tmp_path / "cluster"))
    script = str(REPO_ROOT / "scripts" / "cluster.sh")

    def run(*args, check=True):
        r = subprocess.run([script, *args], capture_output=True, text=True, env=env, timeout=120)
        if check:
            assert r.returncode == 0, r.stderr[-3000:]
        return r

    try:
        run("start", "3")
        bootstrap = run("bootstrap").stdout.strip().split(",")
        assert len(bootstrap) == 3
        for n, addr in enumerate(bootstrap, start=1):
            # Every node registers with the quorum: each one lists all three.
            deadline = time.time() + 40
            while True:
                md = AdminClient({"bootstrap.servers": addr}).list_topics(timeout=30)
                if sorted(md.brokers) == [1, 2, 3] or time.time() > deadline:
                    break
                time.sleep(0.3)
            assert sorted(md.brokers) == [1, 2, 3], (n, addr, md.brokers)
            props = read_props(tmp_path / "cluster" / str(n) / "data" / "meta.properties")
            assert props["node.id"] == str(n)
        run("pause", "2")
        assert re.search(r"^2\s+\d+\s+paused", run("status").stdout, re.M), run("status").stdout
        run("resume", "2")
        run("kill", "3")
        status = run("status").stdout
        assert re.search(r"^2\s+\d+\s+running", status, re.M) and re.search(r"^3\s+\S+\s+stopped", status, re.M), status
        run("restart", "3")
        assert re.search(r"^3\s+\d+\s+running", run("status").stdout, re.M)
    finally:
        run("stop", check=False)
    assert all("stopped" in line for line in run("status").stdout.splitlines()[1:])
