"""State that must survive kill -9, not only a clean restart: committed
offsets, topic (and group) configs, idempotent producer state.

A clean shutdown writes everything out; kill -9 shows what was really made
durable before the broker acknowledged it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigSource, ResourceType

from kafkahelpers import admin_client, consume_all, create_topic, msg_key, msg_value, produce_numbered
from test_admin import described, incremental
from test_groups import GROUP_CONFIG, PROTOCOLS, commit_consumed, consume_exactly, group_consumer, key_index


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(config=GROUP_CONFIG)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_committed_offsets_survive_kill9(gbroker, protocol):
    """OffsetCommit acknowledged, then kill -9: OffsetFetch returns the
    committed offsets and the group resumes exactly there."""
    topic, group, partitions, n, first = f"k9-resume-{protocol}", f"k9-resume-{protocol}", 3, 900, 400
    create_topic(gbroker.bootstrap, topic, partitions)
    assert not produce_numbered(gbroker.bootstrap, topic, n, tag="k9").errors

    c = group_consumer(gbroker.bootstrap, group, protocol)
    c.subscribe([topic])
    part1 = consume_exactly(c, first)
    commit_consumed(c, part1)  # synchronous: acknowledged by the broker
    committed_before = {
        tp.partition: tp.offset
        for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    }
    gbroker.kill9()
    c.close()
    gbroker.start()

    probe = group_consumer(gbroker.bootstrap, group, protocol)
    try:
        committed = probe.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == committed_before, "committed offsets lost by kill -9"
        probe.subscribe([topic])
        rest = consume_exactly(probe, n - first)
        seen = sorted(key_index(m) for m in part1 + rest)
        assert seen == list(range(n)), "after kill -9 the group must resume exactly at its committed offsets"
    finally:
        probe.close()


def test_topic_and_group_configs_survive_kill9(broker):
    """IncrementalAlterConfigs acknowledged, then kill -9: DescribeConfigs
    shows the new values, and the topic's new limit is enforced."""
    topic = "k9-config"
    create_topic(broker.bootstrap, topic, 2)
    admin_ = admin(broker)
    incremental(admin_, ResourceType.TOPIC, topic, [
        ("max.message.bytes", AlterConfigOpType.SET, "2000"),
        ("retention.ms", AlterConfigOpType.SET, "7200000"),
    ]).result(timeout=30)
    incremental(admin_, ResourceType.GROUP, "k9-group",
                [("consumer.session.timeout.ms", AlterConfigOpType.SET, "50000")]).result(timeout=30)
    broker.kill9()
    broker.start()

    admin_ = admin(broker)
    d = described(admin_, ResourceType.TOPIC, topic)
    assert (d["max.message.bytes"].value, d["retention.ms"].value) == ("2000", "7200000"), "topic config lost"
    assert d["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    g = described(admin_, ResourceType.GROUP, "k9-group")
    assert g["consumer.session.timeout.ms"].value == "50000", "group config lost"
    # The limit is in force on both partitions (one per shard).
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    reports = []
    for part in (0, 1):
        p.produce(topic, value=b"x" * 5000, partition=part, on_delivery=lambda e, m: reports.append(e))
    p.flush(60)
    assert [e.code() if e else None for e in reports] == [KafkaError.MSG_SIZE_TOO_LARGE] * 2


def admin(broker):
    return admin_client(broker.bootstrap)


# -- idempotent producer across kill -9 -----------------------------------------

ACKS_PER_PHASE = 20_000


class IdempotentProducer:
    """One enable.idempotence=true producer, used for the whole test (so its
    producer id and sequence numbers carry across the broker's crashes)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic = topic
        self.partitions = partitions
        self.lock = threading.Lock()
        self.acked: list[tuple[int, int, int]] = []  # (seq, partition, offset)
        self.failed: list = []
        self.client_errors: list = []
        self.next_seq = 0
        self.p = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 180000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
            "queue.buffering.max.messages": 100000,
            "error_cb": self._on_error,
        })

    def _on_error(self, err):
        with self.lock:
            self.client_errors.append(err)

    def _on_delivery(self, err, msg, seq):
        with self.lock:
            if err is None:
                self.acked.append((seq, msg.partition(), msg.offset()))
            else:
                self.failed.append((seq, err))

    def produce(self, count: int, partitions: list[int] | None = None) -> None:
        parts = partitions or list(range(self.partitions))
        for _ in range(count):
            seq = self.next_seq
            self.next_seq += 1
            while True:
                try:
                    self.p.produce(self.topic, key=msg_key(seq), value=msg_value(seq), partition=parts[seq % len(parts)],
                                   on_delivery=lambda e, m, s=seq: self._on_delivery(e, m, s))
                    break
                except BufferError:
                    self.p.poll(0.01)
            if seq % 500 == 0:
                self.p.poll(0)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def fatal(self) -> list:
        with self.lock:
            return [e for e in self.client_errors if e.fatal()]


def test_idempotent_producer_keeps_producing_across_kill9(broker):
    """One idempotent producer: kill -9 while it produces (retried batches
    the broker had already written must not be appended twice), and kill -9
    after its last batches were rolled into an older segment by another
    producer (its state must not be forgotten). The same producer carries on
    each time: no fatal error, no OutOfOrderSequence, every acknowledged
    message exactly once at the offset its report named, no duplicates at
    all."""
    topic, partitions = "k9-idem", 2
    create_topic(broker.bootstrap, topic, partitions, config={"segment.bytes": "1048576"})
    ip = IdempotentProducer(broker.bootstrap, topic, partitions)

    # Phase 1: kill -9 in the middle of production.
    stop = threading.Event()

    def run():
        while not stop.is_set():
            ip.produce(200)
            ip.p.poll(0.001)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_for(lambda: ip.acked_count() >= ACKS_PER_PHASE, 120, "acks before the first kill -9")
        broker.kill9()
        time.sleep(0.5)  # the producer keeps queueing while the broker is down
        broker.start()
        base = ip.acked_count()
        wait_for(lambda: ip.acked_count() >= base + ACKS_PER_PHASE, 180, "acks after the restart")
    finally:
        stop.set()
        t.join(60)
    assert ip.p.flush(180) == 0

    # Phase 2: the producer's last batches end up in older segments (another
    # producer writes > 1 segment after them), then kill -9.
    ip.produce(100)
    assert ip.p.flush(60) == 0
    other = produce_numbered(broker.bootstrap, topic, 40_000, tag="filler", start=50_000_000,
                             extra_conf={"enable.idempotence": False, "acks": "all"})
    assert not other.errors, other.errors[:3]
    broker.kill9()
    broker.start()
    ip.produce(2000)
    assert ip.p.flush(180) == 0

    with ip.lock:
        acked, failed, client_errors = list(ip.acked), list(ip.failed), list(ip.client_errors)
    assert not ip.fatal(), f"fatal producer errors: {ip.fatal()[:3]}"
    oos = [e for e in client_errors if e.code() == KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER]
    oos += [e for _, e in failed if e.code() == KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER]
    assert not oos, f"OutOfOrderSequence errors: {oos[:3]}"
    assert not failed, f"{len(failed)} messages failed, first: {failed[:3]}"
    assert len(acked) == ip.next_seq

    records = consume_all(broker.bootstrap, topic, partitions)
    mine = [r for r in records if int(r.key[4:]) < 50_000_000]
    counts = Counter(int(r.key[4:]) for r in mine)
    dups = sorted(k for k, c in counts.items() if c > 1)
    assert not dups, f"{len(dups)} messages of the idempotent producer are in the log more than once: {dups[:10]}"
    at = {(r.partition, r.offset): int(r.key[4:]) for r in records}
    wrong = [(s, p, o) for s, p, o in acked if at.get((p, o)) != s]
    assert not wrong, f"{len(wrong)} acknowledged messages missing or elsewhere, e.g. {wrong[:5]}"
    for r in mine:
        assert r.value == msg_value(int(r.key[4:])).encode()


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
