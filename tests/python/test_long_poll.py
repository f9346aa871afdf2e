"""Long polling: a consumer waiting on an empty partition gets a message that
is produced after it started waiting."""

from __future__ import annotations

import threading
import time

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from kafkahelpers import consumer_conf, create_topic

# Safety net against a hang only; nothing here asserts on latency.
WAIT_S = 60.0


def test_consumer_blocked_on_empty_partition_gets_later_message(broker):
    topic = "long-poll"
    create_topic(broker.bootstrap, topic, 1)
    # Long fetch waits: the broker has to answer a parked fetch when data
    # arrives (or when the wait expires, after which the client re-fetches).
    c = Consumer(consumer_conf(broker.bootstrap, **{"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1}))
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    try:
        # Wait until the consumer has reached the (empty) end of the partition.
        reached_end = False
        deadline = time.monotonic() + WAIT_S
        while not reached_end and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF, m.error()
                reached_end = True
        assert reached_end, "consumer never reached the end of the empty partition"

        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        p.produce(topic, key=b"late", value=b"produced while the consumer waits", partition=0)
        assert p.flush(30) == 0

        got = None
        deadline = time.monotonic() + WAIT_S
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or (m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert m.error() is None, m.error()
            got = m
        assert got is not None, "the consumer never received the message"
        assert (got.key(), got.value(), got.offset()) == (b"late", b"produced while the consumer waits", 0)
    finally:
        c.close()


def test_kafka_python_fetch_wakes_up(broker):
    """Same with kafka-python, whose fetch waits up to fetch_max_wait_ms; the
    message is produced from another thread while poll() is blocked."""
    topic = "long-poll-kpy"
    create_topic(broker.bootstrap, topic, 1)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=5000,
        api_version=None,
    )
    tp = KTopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_end(tp)
    assert consumer.position(tp) == 0

    def produce_later():
        time.sleep(1.0)
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        p.produce(topic, value=b"wake up", partition=0)
        p.flush(30)

    t = threading.Thread(target=produce_later)
    t.start()
    try:
        got = []
        deadline = time.monotonic() + WAIT_S
        while not got and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=10000).values():
                got.extend(recs)
        assert [r.value for r in got] == [b"wake up"]
    finally:
        t.join()
        consumer.close()
