"""`ringlog group list / describe / reset-offsets` against a real broker.

The CLI speaks the Kafka protocol like any client; these tests check what it
prints and that what it changes is what a consumer then sees.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import ringlog_binary
from kafkahelpers import create_topic, produce_numbered

GROUP_CONFIG = {
    "auto.create.topics.enable": True,
    "num.partitions": 3,
    "group.initial.rebalance.delay.ms": 0,
    "group.consumer.heartbeat.interval.ms": 500,
}
SETTLE_DEADLINE_S = 90.0


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(config=GROUP_CONFIG)


def cli(broker, *args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(ringlog_binary()), "group", *args, "--bootstrap", broker.bootstrap],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert r.returncode == 0, f"ringlog group {' '.join(args)} failed ({r.returncode}): {r.stderr}"
    return r


def rows(output: str, header_first: str) -> list[dict]:
    """The rows of the table whose header starts with ``header_first``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_first))
    header = lines[start].split()
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(dict(zip(header, line.split())))
    return out


def member(bootstrap: str, group: str, client_id: str, protocol: str = "classic") -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    return Consumer(conf)


def settle(consumers, partitions: int) -> None:
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                raise KafkaException(m.error())
        owned = [{tp.partition for tp in c.assignment()} for c in consumers]
        if sorted(p for o in owned for p in o) == list(range(partitions)) and all(owned):
            return
    raise AssertionError("group did not settle")


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_list_and_describe_show_members_offsets_and_lag(gbroker, protocol):
    topic, group, partitions = f"cli-{protocol}", f"cli-{protocol}", 3
    create_topic(gbroker.bootstrap, topic, partitions)
    delivered = produce_numbered(gbroker.bootstrap, topic, 300, tag="cli")
    assert not delivered.errors
    ends = {p: 0 for p in range(partitions)}
    for _, p, o in delivered.acked:
        ends[p] = max(ends[p], o + 1)

    members = [member(gbroker.bootstrap, group, f"cli-member-{i}", protocol) for i in range(2)]
    try:
        for c in members:
            c.subscribe([topic])
        settle(members, partitions)
        # Commit 10 on every partition through the member that owns it.
        for c in members:
            c.commit(offsets=[TopicPartition(topic, tp.partition, 10) for tp in c.assignment()], asynchronous=False)
        owners = {tp.partition: f"cli-member-{i}" for i, c in enumerate(members) for tp in c.assignment()}

        listed = rows(cli(gbroker, "list").stdout, "GROUP")
        mine = [r for r in listed if r["GROUP"] == group]
        assert mine == [{"GROUP": group, "TYPE": protocol, "STATE": "Stable", "PROTOCOL-TYPE": "consumer"}]

        out = cli(gbroker, "describe", group).stdout
        table = rows(out, "GROUP")
        assert [(r["TOPIC"], int(r["PARTITION"])) for r in table] == [(topic, p) for p in range(partitions)]
        for r in table:
            p = int(r["PARTITION"])
            assert int(r["CURRENT-OFFSET"]) == 10
            assert int(r["LOG-END-OFFSET"]) == ends[p]
            assert int(r["LAG"]) == ends[p] - 10
            assert r["CLIENT-ID"] == owners[p]
            assert r["HOST"] == "/127.0.0.1"
        assert f"TOTAL LAG: {sum(ends.values()) - 10 * partitions}" in out
        member_rows = rows(out, "CONSUMER-ID")
        assert sorted(r["CLIENT-ID"] for r in member_rows) == ["cli-member-0", "cli-member-1"]
        assert sum(int(r["#PARTITIONS"]) for r in member_rows) == partitions
    finally:
        for c in members:
            c.close()

    # Without members the group is Empty and keeps its offsets.
    out = cli(gbroker, "describe", group).stdout
    assert "state Empty" in out
    assert [int(r["CURRENT-OFFSET"]) for r in rows(out, "GROUP")] == [10] * partitions
    assert {r["CONSUMER-ID"] for r in rows(out, "GROUP")} == {"-"}


def test_describe_unknown_group_fails(gbroker):
    r = cli(gbroker, "describe", "no-such-group", check=False)
    assert r.returncode == 1
    assert "does not exist" in r.stderr


def test_reset_offsets(gbroker):
    topic, group, partitions = "cli-reset", "cli-reset", 2
    create_topic(gbroker.bootstrap, topic, partitions)
    # Ten records per partition with known timestamps: base, base+1000, ...
    base = 1_700_000_000_000
    p = Producer({"bootstrap.servers": gbroker.bootstrap, "acks": "all"})
    for part in range(partitions):
        for i in range(10):
            p.produce(topic, value=f"{part}-{i}", partition=part, timestamp=base + i * 1000)
    assert p.flush(60) == 0

    c = member(gbroker.bootstrap, group, "reset-member")
    c.subscribe([topic])
    try:
        settle([c], partitions)
        c.commit(offsets=[TopicPartition(topic, q, 4) for q in range(partitions)], asynchronous=False)

        # Dry run: shows the plan, changes nothing.
        out = cli(gbroker, "reset-offsets", group, "--topic", topic, "--to-earliest").stdout
        assert [(int(r["PARTITION"]), int(r["CURRENT-OFFSET"]), int(r["NEW-OFFSET"])) for r in rows(out, "GROUP")] == [
            (q, 4, 0) for q in range(partitions)
        ]
        assert "Dry run" in out
        assert committed(gbroker.bootstrap, group, topic, partitions) == {q: 4 for q in range(partitions)}

        # Executing requires an inactive group.
        r = cli(gbroker, "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute", check=False)
        assert r.returncode == 1
        assert "inactive" in r.stderr
        assert committed(gbroker.bootstrap, group, topic, partitions) == {q: 4 for q in range(partitions)}
    finally:
        c.close()

    def reset(*to):
        cli(gbroker, "reset-offsets", group, "--topic", topic, *to, "--execute")
        return committed(gbroker.bootstrap, group, topic, partitions)

    assert reset("--to-earliest") == {q: 0 for q in range(partitions)}
    assert reset("--to-latest") == {q: 10 for q in range(partitions)}
    assert reset("--to-offset", "6") == {q: 6 for q in range(partitions)}
    assert reset("--to-offset", "1000") == {q: 10 for q in range(partitions)}  # clamped to the end
    assert reset("--to-datetime", str(base + 3000)) == {q: 3 for q in range(partitions)}
    assert reset("--to-datetime", "2023-11-14T22:13:27.500Z") == {q: 8 for q in range(partitions)}

    # A consumer of the group starts where the reset put it.
    c = member(gbroker.bootstrap, group, "after-reset")
    c.subscribe([topic])
    try:
        got = []
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        while len(got) < 2 * partitions and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got.append(m.value().decode())
        assert sorted(got) == sorted(f"{q}-{i}" for q in range(partitions) for i in (8, 9))
    finally:
        c.close()

    r = cli(gbroker, "reset-offsets", group, "--topic", "no-such-topic", "--to-latest", check=False)
    assert r.returncode == 1
