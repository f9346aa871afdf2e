"""Idempotent producers (the default of the Java client and kafka-python)."""

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def test_idempotent_producer_round_trip_survives_restart(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("idem", num_partitions=3, replication_factor=1)])["idem"].result(30)
    errors = []

    def produce(start, n):
        p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 2})
        for i in range(start, start + n):
            p.produce("idem", key=str(i).encode(), value=str(i).encode(),
                      on_delivery=lambda e, m: errors.append(e) if e else None)
        assert p.flush(60) == 0

    produce(0, 20000)
    broker.restart()
    # A new producer after a restart gets a new id and appends normally.
    produce(20000, 5000)
    assert errors == []

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "idem", "enable.auto.commit": False})
    c.assign([TopicPartition("idem", p, 0) for p in range(3)])
    seen = []
    while len(seen) < 25000:
        msgs = c.consume(5000, timeout=10)
        assert msgs, f"stalled after {len(seen)}"
        seen.extend(int(m.value()) for m in msgs if m.error() is None)
    c.close()
    assert sorted(seen) == list(range(25000)), "every message exactly once"
