"""Consumer groups end to end: real clients, real broker process.

What is asserted is what a user of the group sees: which partitions each
member owns, which messages each member receives (every message exactly
once in steady state), where a restarted group resumes, which rebalance
callbacks fire. Waits are bounded loops on those observations, never on
elapsed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)

from kafkahelpers import admin_client, create_topic, msg_key, produce_numbered

# Broker settings for group tests: no initial rebalance delay, small session
# timeouts and a quick KIP-848 heartbeat so groups settle fast.
GROUP_CONFIG = {
    "auto.create.topics.enable": True,
    "num.partitions": 3,
    "group.initial.rebalance.delay.ms": 0,
    "group.consumer.heartbeat.interval.ms": 500,
    "group.consumer.session.timeout.ms": 6000,
}

SESSION_TIMEOUT_MS = 6000
# Safety net for one "wait until the group looks like X" loop.
SETTLE_DEADLINE_S = 90.0

PROTOCOLS = ["classic", "consumer"]


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(config=GROUP_CONFIG)


def group_consumer(bootstrap: str, group: str, protocol: str = "classic", **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["session.timeout.ms"] = SESSION_TIMEOUT_MS
        conf["heartbeat.interval.ms"] = 500
    conf.update(extra)
    return Consumer(conf)


def assignment_of(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def poll_until(consumers, done, sink=None, what="the group to settle"):
    """Poll every consumer until ``done()``; messages go to ``sink[i]``."""
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.05)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(m.error())
                continue
            if sink is None:
                raise AssertionError(f"consumer {i} got a message while waiting for {what}")
            sink[i].append(m)
        if done():
            return
    raise AssertionError(
        f"timed out waiting for {what}; assignments: {[sorted(assignment_of(c)) for c in consumers]}"
    )


def balanced(consumers, partitions: int):
    def check():
        owned = [assignment_of(c) for c in consumers]
        union = set().union(*owned)
        return (
            union == set(range(partitions))
            and sum(len(o) for o in owned) == partitions
            and all(len(o) == partitions // len(consumers) for o in owned)
        )

    return check


def key_index(m) -> int:
    return int(m.key().decode()[4:])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_members_share_partitions_and_every_message_once(gbroker, protocol):
    topic, group, partitions, n = f"share-{protocol}", f"share-{protocol}", 6, 3000
    create_topic(gbroker.bootstrap, topic, partitions)
    consumers = [group_consumer(gbroker.bootstrap, group, protocol, **{"client.id": f"m{i}"}) for i in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic])
        # An empty topic: the group settles with two partitions per member.
        poll_until(consumers, balanced(consumers, partitions))
        owned = [assignment_of(c) for c in consumers]

        delivered = produce_numbered(gbroker.bootstrap, topic, n, tag="share")
        assert not delivered.errors
        by_partition = defaultdict(set)
        for seq, p, _ in delivered.acked:
            by_partition[p].add(seq)

        got = defaultdict(list)
        poll_until(consumers, lambda: sum(len(v) for v in got.values()) >= n, sink=got, what="all messages")
        # Steady state: every message exactly once, from its partition's owner.
        seen = [key_index(m) for ms in got.values() for m in ms]
        assert sorted(seen) == list(range(n)), "messages lost or duplicated"
        for i, ms in got.items():
            assert {m.partition() for m in ms} <= owned[i]
        for i in range(3):
            expected = set().union(*(by_partition[p] for p in owned[i]))
            assert {key_index(m) for m in got[i]} == expected
        assert all(got[i] for i in range(3)), "every member should get a share"
        assert [assignment_of(c) for c in consumers] == owned, "no rebalance in steady state"

        for c in consumers:
            c.commit(asynchronous=False)
        committed = consumers[0].committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        ends = {p: consumers[0].get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
        assert {tp.partition: tp.offset for tp in committed} == ends
    finally:
        for c in consumers:
            c.close()


CHILD = textwrap.dedent(
    """
    import os, sys
    from confluent_kafka import Consumer
    bootstrap, group, topic, protocol = sys.argv[1:5]
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": "doomed",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": %d, "heartbeat.interval.ms": 500})
    c = Consumer(conf)
    c.subscribe([topic])
    last = None
    while True:
        c.poll(0.05)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            print("ASSIGNED " + ",".join(map(str, now)), flush=True)
            last = now
    """
    % SESSION_TIMEOUT_MS
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dead_member_partitions_move_after_session_timeout(gbroker, protocol):
    topic, group, partitions = f"dead-{protocol}", f"dead-{protocol}", 6
    create_topic(gbroker.bootstrap, topic, partitions)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, gbroker.bootstrap, group, topic, protocol],
        stdout=subprocess.PIPE,
        text=True,
    )
    os.set_blocking(child.stdout.fileno(), False)
    child_owned: set[int] = set()
    survivors = [group_consumer(gbroker.bootstrap, group, protocol) for _ in range(2)]
    try:
        for c in survivors:
            c.subscribe([topic])

        def three_way_split():
            for line in (child.stdout.readline() for _ in range(100)):
                if not line:
                    break
                if line.startswith("ASSIGNED "):
                    child_owned.clear()
                    child_owned.update(int(p) for p in line[len("ASSIGNED ") :].strip().split(",") if p)
            owned = [assignment_of(c) for c in survivors] + [set(child_owned)]
            return sorted(p for o in owned for p in o) == list(range(partitions)) and all(len(o) == 2 for o in owned)

        poll_until(survivors, three_way_split, what="three members with two partitions each")
        doomed = set(child_owned)
        assert child.poll() is None, "the child consumer died early"

        # Gone without a LeaveGroup: only its session timeout removes it.
        child.send_signal(signal.SIGKILL)
        child.wait()
        poll_until(survivors, balanced(survivors, partitions), what="the dead member's partitions to move")
        owned = [assignment_of(c) for c in survivors]
        assert doomed <= owned[0] | owned[1]

        # The survivors now get everything, each message once.
        n = 600
        delivered = produce_numbered(gbroker.bootstrap, topic, n, tag="dead")
        assert not delivered.errors
        got = defaultdict(list)
        poll_until(survivors, lambda: sum(len(v) for v in got.values()) >= n, sink=got, what="all messages")
        seen = sorted(key_index(m) for ms in got.values() for m in ms)
        assert seen == list(range(n))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for c in survivors:
            c.close()


def consume_exactly(c: Consumer, count: int) -> list:
    out = []
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while len(out) < count and time.monotonic() < deadline:
        for m in c.consume(num_messages=count - len(out), timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            out.append(m)
    assert len(out) == count, f"got {len(out)} of {count} messages"
    return out


def commit_consumed(c: Consumer, messages: list) -> None:
    last = {}
    for m in messages:
        last[(m.topic(), m.partition())] = max(last.get((m.topic(), m.partition()), -1), m.offset())
    c.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_group_resumes_from_committed_offsets_across_broker_restart(gbroker, protocol):
    topic, group, partitions, n = f"resume-{protocol}", f"resume-{protocol}", 3, 900
    create_topic(gbroker.bootstrap, topic, partitions)
    assert not produce_numbered(gbroker.bootstrap, topic, n, tag="r").errors

    first = group_consumer(gbroker.bootstrap, group, protocol)
    first.subscribe([topic])
    part1 = consume_exactly(first, 400)
    commit_consumed(first, part1)
    first.close()

    # Same group, new consumer: continues where the group committed.
    second = group_consumer(gbroker.bootstrap, group, protocol)
    second.subscribe([topic])
    part2 = consume_exactly(second, n - 400)
    commit_consumed(second, part2)
    second.close()
    seen = sorted(key_index(m) for m in part1 + part2)
    assert seen == list(range(n)), "the second consumer must start exactly at the committed offsets"

    gbroker.restart()

    # After a restart the committed offsets are still there...
    probe = group_consumer(gbroker.bootstrap, group, protocol)
    committed = probe.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    assert {tp.partition: tp.offset for tp in committed} == ends
    # ... and the group reads only what came after them.
    assert not produce_numbered(gbroker.bootstrap, topic, 150, tag="r", start=n).errors
    probe.subscribe([topic])
    part3 = consume_exactly(probe, 150)
    assert sorted(key_index(m) for m in part3) == list(range(n, n + 150))
    probe.close()


def test_static_member_rejoins_without_rebalance(gbroker):
    topic, group, partitions = "static", "static", 4
    create_topic(gbroker.bootstrap, topic, partitions)
    events = []

    def other_on_assign(c, ps):
        events.append(("assign", sorted(p.partition for p in ps)))

    def other_on_revoke(c, ps):
        events.append(("revoke", sorted(p.partition for p in ps)))

    a = group_consumer(gbroker.bootstrap, group, **{"group.instance.id": "instance-a"})
    b = group_consumer(gbroker.bootstrap, group, **{"group.instance.id": "instance-b"})
    a.subscribe([topic])
    b.subscribe([topic], on_assign=other_on_assign, on_revoke=other_on_revoke)
    try:
        poll_until([a, b], balanced([a, b], partitions))
        a_owned, b_owned = assignment_of(a), assignment_of(b)
        # Let b finish its callbacks for the settled generation.
        settled = list(events)

        # A static member closes (no LeaveGroup for static members) and a
        # new process with the same instance id comes back in time.
        a.close()
        a = group_consumer(gbroker.bootstrap, group, **{"group.instance.id": "instance-a"})
        a.subscribe([topic])
        poll_until([a, b], lambda: assignment_of(a) == a_owned, what="the static member to get its partitions back")
        # Keep b polling for a while so a rebalance would be noticed.
        for _ in range(20):
            b.poll(0.1)
            a.poll(0.1)
        assert assignment_of(b) == b_owned
        assert events == settled, f"the other member saw a rebalance: {events[len(settled):]}"
    finally:
        a.close()
        b.close()


def test_cooperative_sticky_rebalance_is_incremental(gbroker):
    topic, group, partitions = "coop", "coop", 6
    create_topic(gbroker.bootstrap, topic, partitions)
    log = {"a": [], "b": []}

    def recorder(name):
        def on_assign(c, ps):
            log[name].append(("assign", {p.partition for p in ps}))

        def on_revoke(c, ps):
            log[name].append(("revoke", {p.partition for p in ps}))

        return on_assign, on_revoke

    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = group_consumer(gbroker.bootstrap, group, **conf)
    b = group_consumer(gbroker.bootstrap, group, **conf)
    try:
        on_assign, on_revoke = recorder("a")
        a.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        poll_until([a], lambda: assignment_of(a) == set(range(partitions)), what="a to own every partition")
        before = len(log["a"])

        on_assign, on_revoke = recorder("b")
        b.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        poll_until([a, b], balanced([a, b], partitions), what="an incremental rebalance")
        kept, given = assignment_of(a), assignment_of(b)
        revoked = set().union(*(ps for kind, ps in log["a"][before:] if kind == "revoke"))
        # Incremental: a gave up exactly what b got, and never its other partitions.
        assert revoked == given
        assert not revoked & kept
        assert set().union(*(ps for kind, ps in log["b"] if kind == "assign")) == given
    finally:
        a.close()
        b.close()


def test_kafka_python_group_consumer_round_trip(gbroker):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    topic, group, partitions, n = "kpy-group", "kpy-group", 3, 500
    create_topic(gbroker.bootstrap, topic, partitions)
    assert not produce_numbered(gbroker.bootstrap, topic, n, tag="kpy").errors

    def consumer():
        return KafkaConsumer(
            topic,
            bootstrap_servers=gbroker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=500,
            consumer_timeout_ms=3000,
        )

    c = consumer()
    keys = []
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while len(keys) < n and time.monotonic() < deadline:
        for m in c:
            keys.append(m.key.decode())
            if len(keys) == n:
                break
    c.commit()
    assert sorted(keys) == [msg_key(i) for i in range(n)]
    tps = [KTopicPartition(topic, p) for p in range(partitions)]
    ends = c.end_offsets(tps)
    assert {tp: c.committed(tp) for tp in tps} == ends
    c.close()

    # The group resumes at its committed offsets: nothing left to read.
    c = consumer()
    assert [m for m in c] == []
    assert {tp: c.committed(tp) for tp in tps} == ends
    c.close()


def test_admin_group_apis(gbroker):
    topic, group, partitions = "adm-groups", "adm-groups", 3
    create_topic(gbroker.bootstrap, topic, partitions)
    admin = admin_client(gbroker.bootstrap)
    c = group_consumer(gbroker.bootstrap, group, **{"client.id": "adm-member"})
    c.subscribe([topic])
    try:
        poll_until([c], lambda: assignment_of(c) == set(range(partitions)))
        c.commit(offsets=[TopicPartition(topic, p, 7) for p in range(partitions)], asynchronous=False)

        listed = admin.list_consumer_groups(request_timeout=30).result(timeout=60)
        assert group in {g.group_id for g in listed.valid}
        desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60)
        assert desc.state.name == "STABLE"
        assert [m.client_id for m in desc.members] == ["adm-member"]
        assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == set(range(partitions))

        # A group with members cannot be deleted.
        with pytest.raises(KafkaException) as ei:
            admin.delete_consumer_groups([group], request_timeout=30)[group].result(timeout=60)
        assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    finally:
        c.close()

    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=60)
    assert {tp.partition: tp.offset for tp in offsets.topic_partitions} == {p: 7 for p in range(partitions)}
    # Admin commits to an empty group (AlterConsumerGroupOffsets).
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3)])]
    )[group].result(timeout=60)
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]
    )[group].result(timeout=60)
    assert [tp.offset for tp in offsets.topic_partitions] == [3]

    admin.delete_consumer_groups([group], request_timeout=30)[group].result(timeout=60)
    listed = admin.list_consumer_groups(request_timeout=30).result(timeout=60)
    assert group not in {g.group_id for g in listed.valid}
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]
    )[group].result(timeout=60)
    assert [tp.offset for tp in offsets.topic_partitions] == [-1001]  # OFFSET_INVALID: nothing committed


def test_deleting_a_topic_removes_its_committed_offsets(gbroker):
    """Like Kafka, offsets committed for a deleted topic are removed (also
    after a broker restart), so a topic re-created under the same name is not
    consumed from stale positions; offsets of other topics stay."""
    group = "deleted-topic-group"
    create_topic(gbroker.bootstrap, "doomed", 2)
    create_topic(gbroker.bootstrap, "kept", 1)
    admin = admin_client(gbroker.bootstrap)
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition("doomed", 0, 5), TopicPartition("doomed", 1, 6),
                                              TopicPartition("kept", 0, 7)])]
    )[group].result(timeout=60)

    def committed():
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=60)
        return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}

    assert committed() == {("doomed", 0): 5, ("doomed", 1): 6, ("kept", 0): 7}
    admin.delete_topics(["doomed"])["doomed"].result(timeout=60)
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while committed() != {("kept", 0): 7}:
        assert time.monotonic() < deadline, committed()
        time.sleep(0.1)
    gbroker.restart()
    admin = admin_client(gbroker.bootstrap)
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while True:
        try:
            got = committed()
            break
        except KafkaException:  # groups still loading
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert got == {("kept", 0): 7}


def test_offsets_topic_is_internal_and_compacted(gbroker):
    admin = admin_client(gbroker.bootstrap)
    desc = admin.describe_topics(TopicCollection(["__consumer_offsets"]))["__consumer_offsets"].result(timeout=60)
    assert desc.is_internal
    assert len(desc.partitions) == 50
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.TOPIC, "__consumer_offsets")
    configs = admin.describe_configs([res])[res].result(timeout=60)
    assert configs["cleanup.policy"].value == "compact"

    # Clients cannot write to it (Kafka: INVALID_TOPIC_EXCEPTION); only the
    # coordinator appends there.
    errors = []
    p = Producer({"bootstrap.servers": gbroker.bootstrap, "enable.idempotence": False, "retries": 0})
    p.produce("__consumer_offsets", b"forged", key=b"forged", partition=0,
              on_delivery=lambda err, _msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION


def _cg_heartbeat_join(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """A raw ConsumerGroupHeartbeat v0 join (epoch 0): (error code, heartbeat
    interval the coordinator tells the member to use)."""
    import socket
    import struct

    def cstr(s):  # compact string (short)
        b = s.encode()
        return bytes([len(b) + 1]) + b

    header = struct.pack(">hhih", 68, 0, 7, 4) + b"test" + b"\x00"
    body = (cstr(group) + cstr("") + struct.pack(">i", 0) + b"\x00" + b"\x00" + struct.pack(">i", 30000)
            + b"\x02" + cstr(topic) + b"\x00" + b"\x01" + b"\x00")
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(header + body)) + header + body)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        resp = s.recv(size, socket.MSG_WAITALL)
    pos = 4 + 1 + 4  # correlation id, header tags, throttle
    (error_code,) = struct.unpack_from(">h", resp, pos)
    pos += 2
    for _ in range(2):  # error message, member id: compact nullable strings (short)
        n = resp[pos]
        pos += 1 + max(n - 1, 0)
    _epoch, interval = struct.unpack_from(">ii", resp, pos)
    return error_code, interval


def test_group_configs_apply_to_consumer_protocol_members(gbroker):
    """A KIP-848 group config set with IncrementalAlterConfigs is what the
    coordinator uses for that group (here the heartbeat interval it hands to
    members), other groups keep the broker's, and it holds after a restart."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    create_topic(gbroker.bootstrap, "gcfg", 1)
    admin = admin_client(gbroker.bootstrap)
    # (Both set: Kafka validates the group's combined settings against the
    # broker's group.consumer.min/max bounds, which this broker's own 6 s
    # session timeout is below.)
    res = ConfigResource(ResourceType.GROUP, "tuned-group", incremental_configs=[
        ConfigEntry("consumer.heartbeat.interval.ms", "7000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("consumer.session.timeout.ms", "45000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=30)
    assert _cg_heartbeat_join(gbroker.bootstrap, "tuned-group", "gcfg") == (0, 7000)
    assert _cg_heartbeat_join(gbroker.bootstrap, "plain-group", "gcfg") == (0, 500)  # broker's setting
    gbroker.restart()
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while True:
        code, interval = _cg_heartbeat_join(gbroker.bootstrap, "tuned-group", "gcfg")
        if code != 14:  # COORDINATOR_LOAD_IN_PROGRESS
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (code, interval) == (0, 7000)
