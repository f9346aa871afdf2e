"""kafka-python (pure-Python client) produce/consume round trip.

kafka-python negotiates its protocol versions itself (api_version=None means
auto-detect: it starts with ApiVersions at the newest version it knows).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kafkahelpers import create_topic, msg_headers, msg_key, msg_value

N_MESSAGES = 5000
PARTITIONS = 4


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_kafka_python_round_trip(broker, codec):
    topic = f"kpy-{codec or 'none'}"
    create_topic(broker.bootstrap, topic, PARTITIONS)

    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        api_version=None,  # auto-detect through ApiVersions
        acks="all",
        compression_type=codec,
        linger_ms=5,
        request_timeout_ms=30000,
    )
    try:
        futures = [
            producer.send(
                topic,
                key=msg_key(i).encode(),
                value=msg_value(i).encode(),
                headers=msg_headers(i, "kpy"),
            )
            for i in range(N_MESSAGES)
        ]
        producer.flush(timeout=120)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)
    acked = {i: (m.partition, m.offset) for i, m in enumerate(metas)}
    assert len({p for p, _ in acked.values()}) > 1, "keys should spread over partitions"

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        api_version=None,
        group_id=None,  # no consumer group: assign() only
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        assert sum(end.values()) == N_MESSAGES, end
        got = []
        idle_rounds = 0
        while len(got) < N_MESSAGES and idle_rounds < 10:
            batch = consumer.poll(timeout_ms=2000, max_records=5000)
            if not batch:
                idle_rounds += 1
            for recs in batch.values():
                got.extend(recs)
    finally:
        consumer.close()

    seen = defaultdict(list)
    for r in got:
        i = int(r.key[4:])
        assert r.value == msg_value(i).encode(), r
        assert list(r.headers) == msg_headers(i, "kpy"), r.headers
        seen[i].append((r.partition, r.offset))
    missing = [i for i in range(N_MESSAGES) if i not in seen]
    assert not missing, f"{len(missing)} missing, first {missing[:10]}"
    dups = {i: v for i, v in seen.items() if len(v) > 1}
    assert not dups, f"duplicates: {list(dups.items())[:5]}"
    wrong = {i: (seen[i][0], acked[i]) for i in seen if seen[i][0] != acked[i]}
    assert not wrong, f"records not at the acknowledged offsets: {list(wrong.items())[:5]}"
    per_part = defaultdict(list)
    for r in got:
        per_part[r.partition].append(r.offset)
    for p, offs in per_part.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {p}: offsets not contiguous"
        assert end[TopicPartition(topic, p)] == len(offs)
