"""Fetch size limits: a consumer whose fetch.max.bytes is smaller than the
data available must still read everything (the broker has to keep a Fetch
response within the request's max_bytes, except for a first batch that is
larger on its own)."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from kafkahelpers import consumer_conf, create_topic

PARTITIONS = 3
PER_PARTITION = 6
MSG_SIZE = 900 * 1024  # just under 1 MB: one record batch per message


def test_fetch_max_bytes_smaller_than_available_data(broker):
    topic = "fetch-max-bytes"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, key=f"{part}-{i}", value=bytes([65 + i]) * MSG_SIZE, partition=part)
        assert p.flush(60) == 0

    errors = []
    c = Consumer(
        consumer_conf(
            broker.bootstrap,
            **{
                # Same limits as librdkafka's test 0082: ask for up to 20 MB
                # per partition but at most ~1 MB per response.
                "fetch.max.bytes": 1000000,
                "receive.message.max.bytes": 1000512,
                "max.partition.fetch.bytes": 20000000,
                "error_cb": lambda e: errors.append(e),
            },
        )
    )
    try:
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(PARTITIONS)])
        got = []
        at_eof = set()
        deadline = time.monotonic() + 120
        while len(at_eof) < PARTITIONS and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                errors.append(m.error())
                continue
            at_eof.discard(m.partition())
            got.append((m.partition(), m.offset(), m.key(), len(m.value())))
    finally:
        c.close()
    assert not errors, f"consumer errors (first: {errors[0]})"
    assert sorted((q, o) for q, o, _, _ in got) == [(q, o) for q in range(PARTITIONS) for o in range(PER_PARTITION)]
    assert all(size == MSG_SIZE for _, _, _, size in got)
