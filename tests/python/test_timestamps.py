"""Produce timestamp bounds (KIP-937): on CreateTime topics a batch with a
record timestamp more than message.timestamp.after.max.ms ahead of the
broker's clock (or more than message.timestamp.before.max.ms behind it) is
refused with INVALID_TIMESTAMP, naming the records; nothing of it is stored.
Topic overrides, IncrementalAlterConfigs and the broker's log.* defaults
apply; LogAppendTime topics are not checked."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from kafkahelpers import admin_client, consume_all, create_topic, watermarks

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def now_ms() -> int:
    return int(time.time() * 1000)


def produce(bootstrap: str, topic: str, timestamps: list[int], linger_ms: int = 0) -> list:
    """Produce one record per timestamp to partition 0 (one batch with
    linger); the delivery error of each (None when stored)."""
    reports: dict[int, object] = {}
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "retries": 0,
                  "acks": "all", "linger.ms": linger_ms})
    for i, ts in enumerate(timestamps):
        p.produce(topic, b"v%d" % i, key=b"k%d" % i, partition=0, timestamp=ts,
                  on_delivery=lambda e, m, i=i: reports.__setitem__(i, e))
    assert p.flush(30) == 0
    assert len(reports) == len(timestamps)
    return [reports[i] for i in range(len(timestamps))]


def code(err) -> int | None:
    return None if err is None else err.code()


def test_far_future_timestamp_is_refused(broker):
    """Default after.max.ms (1 hour): two hours ahead is refused, a minute
    ahead and a month behind are stored; the refused batch leaves nothing."""
    topic = "ts-default"
    create_topic(broker.bootstrap, topic, 1)
    assert code(produce(broker.bootstrap, topic, [now_ms() + 2 * HOUR_MS])[0]) == KafkaError.INVALID_TIMESTAMP
    assert produce(broker.bootstrap, topic, [now_ms() + 60_000]) == [None]
    assert produce(broker.bootstrap, topic, [now_ms() - 30 * DAY_MS]) == [None]
    assert watermarks(broker.bootstrap, topic, 1)[0] == (0, 2)
    records = consume_all(broker.bootstrap, topic, 1, expected=2)
    assert [r.value for r in records] == [b"v0", b"v0"]


def test_one_bad_record_fails_its_batch(broker):
    """Kafka checks every record, not the batch header: one far-future record
    fails the whole batch (the broker names it in per-record errors,
    KIP-467); nothing of the batch is stored."""
    topic = "ts-batch"
    create_topic(broker.bootstrap, topic, 1)
    now = now_ms()
    stamps = [now + i for i in range(10)]
    stamps[4] = now + 3 * HOUR_MS
    errors = produce(broker.bootstrap, topic, stamps, linger_ms=500)
    assert code(errors[4]) == KafkaError.INVALID_TIMESTAMP
    # (librdkafka reports the batch's other records with the partition's
    # error or _INVALID_DIFFERENT_RECORD depending on its version.)
    assert all(code(e) in (KafkaError.INVALID_TIMESTAMP, KafkaError._INVALID_DIFFERENT_RECORD) for e in errors), \
        [code(e) for e in errors]
    assert watermarks(broker.bootstrap, topic, 1)[0] == (0, 0)


def test_topic_overrides_and_alter(broker):
    """Per-topic before/after.max.ms, changed at run time with
    IncrementalAlterConfigs; a LogAppendTime topic takes any producer time."""
    strict = "ts-strict"
    create_topic(broker.bootstrap, strict, 1, {"message.timestamp.before.max.ms": "60000",
                                               "message.timestamp.after.max.ms": "60000"})
    assert code(produce(broker.bootstrap, strict, [now_ms() - HOUR_MS])[0]) == KafkaError.INVALID_TIMESTAMP
    assert code(produce(broker.bootstrap, strict, [now_ms() + 10 * 60_000])[0]) == KafkaError.INVALID_TIMESTAMP
    assert produce(broker.bootstrap, strict, [now_ms()]) == [None]

    lenient = "ts-lenient"
    create_topic(broker.bootstrap, lenient, 1, {"message.timestamp.after.max.ms": str(30 * DAY_MS)})
    assert produce(broker.bootstrap, lenient, [now_ms() + 10 * DAY_MS]) == [None]

    admin = admin_client(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, strict, incremental_configs=[
        ConfigEntry("message.timestamp.before.max.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=30)
    assert produce(broker.bootstrap, strict, [now_ms() - 10 * DAY_MS]) == [None]
    assert code(produce(broker.bootstrap, strict, [now_ms() + 10 * 60_000])[0]) == KafkaError.INVALID_TIMESTAMP

    # Negative bounds are not valid values (Kafka: at least 0).
    bad = ConfigResource(ResourceType.TOPIC, strict, incremental_configs=[
        ConfigEntry("message.timestamp.after.max.ms", "-1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as ei:
        admin.incremental_alter_configs([bad], request_timeout=30)[bad].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG

    lat = "ts-log-append"
    create_topic(broker.bootstrap, lat, 1, {"message.timestamp.type": "LogAppendTime"})
    before = now_ms()
    assert produce(broker.bootstrap, lat, [before + 10 * DAY_MS]) == [None]
    (r,) = consume_all(broker.bootstrap, lat, 1, expected=1)
    assert before - 60_000 <= r.timestamp[1] <= now_ms() + 60_000, r.timestamp


def test_broker_defaults(broker_factory):
    """log.message.timestamp.after.max.ms sets the default of every topic."""
    b = broker_factory(config={"auto.create.topics.enable": True, "num.partitions": 1,
                               "log.message.timestamp.after.max.ms": 1000})
    topic = "ts-broker-default"
    create_topic(b.bootstrap, topic, 1)
    assert code(produce(b.bootstrap, topic, [now_ms() + 60_000])[0]) == KafkaError.INVALID_TIMESTAMP
    assert produce(b.bootstrap, topic, [now_ms()]) == [None]
