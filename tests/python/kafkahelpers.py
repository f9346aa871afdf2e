"""Client-side helpers for the end-to-end tests (confluent-kafka based)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# Overall limit for one consume-everything loop. Only a safety net against a
# hang: tests assert on what was received, never on how long it took.
CONSUME_DEADLINE_S = 240.0

FILLER = "the quick brown fox jumps over the lazy dog; ringlog end-to-end test payload "


def msg_key(i: int) -> str:
    return f"key-{i:07d}"


def msg_value(i: int) -> str:
    return f"value-{i:07d}|" + FILLER[: 40 + i % 37]


def msg_headers(i: int, tag: str) -> list[tuple[str, bytes]]:
    return [("idx", str(i).encode()), ("tag", tag.encode())]


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 30000})


def create_topic(bootstrap: str, name: str, partitions: int, config: dict | None = None) -> None:
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=30,
    )
    futures[name].result(timeout=60)
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Wait until metadata shows the topic with all partitions led."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        last = t
        if t is not None and t.error is None and len(t.partitions) == partitions:
            if all(p.leader >= 0 and p.error is None for p in t.partitions.values()):
                return
        time.sleep(0.2)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last}")


@dataclass
class Delivered:
    """Delivery reports of one producer run."""

    acked: list = field(default_factory=list)  # (seq, partition, offset)
    errors: list = field(default_factory=list)  # (seq, KafkaError)


def produce_numbered(
    bootstrap: str,
    topic: str,
    count: int,
    tag: str,
    extra_conf: dict | None = None,
    start: int = 0,
) -> Delivered:
    """Produce messages start..start+count-1 with keys, values and headers.

    Returns the delivery reports. The caller asserts on errors.
    """
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "queue.buffering.max.messages": 200000,
    }
    conf.update(extra_conf or {})
    errors: list = []
    conf["error_cb"] = lambda err: errors.append(("error_cb", err))
    p = Producer(conf)
    out = Delivered()

    def on_delivery(err, msg, seq):
        if err is not None:
            out.errors.append((seq, err))
        else:
            out.acked.append((seq, msg.partition(), msg.offset()))

    for i in range(start, start + count):
        while True:
            try:
                p.produce(
                    topic,
                    key=msg_key(i),
                    value=msg_value(i),
                    headers=msg_headers(i, tag),
                    on_delivery=lambda err, msg, seq=i: on_delivery(err, msg, seq),
                )
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(180)
    assert remaining == 0, f"{remaining} messages still undelivered after flush"
    out.errors.extend(errors)
    return out


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: tuple


def consumer_conf(bootstrap: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        # Consumer groups are not implemented by the broker yet: a group.id is
        # set (the client requires one) but only assign() is used and nothing
        # is ever committed.
        "group.id": "ringlog-e2e-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }
    conf.update(extra)
    return conf


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int | None = None, **extra) -> list[Record]:
    """Read every partition of ``topic`` from the beginning to its end."""
    c = Consumer(consumer_conf(bootstrap, **extra))
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records: list[Record] = []
        at_eof: set[int] = set()
        errors = []
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    errors.append(err)
                    continue
                at_eof.discard(m.partition())
                records.append(
                    Record(m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp())
                )
            done = len(at_eof) == partitions
            if expected is not None:
                done = done and len(records) >= expected
            if done:
                break
        assert not errors, f"consumer errors: {errors[:5]}"
        return records
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    c = Consumer(consumer_conf(bootstrap))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(partitions)}
    finally:
        c.close()


def verify_numbered(records: list[Record], count: int, tag: str, start: int = 0) -> None:
    """Every message start..start+count-1 present exactly once, intact;
    offsets contiguous from 0 in every partition; per-partition order equals
    production order."""
    by_idx: dict[int, list[Record]] = defaultdict(list)
    bad = []
    for r in records:
        key = (r.key or b"").decode()
        if not key.startswith("key-"):
            bad.append(("bad key", r))
            continue
        i = int(key[4:])
        by_idx[i].append(r)
        if r.value != msg_value(i).encode():
            bad.append(("bad value", r))
        if list(r.headers) != msg_headers(i, tag):
            bad.append(("bad headers", r))
    assert not bad, f"{len(bad)} corrupted messages, first: {bad[:3]}"
    expected = set(range(start, start + count))
    missing = sorted(expected - by_idx.keys())
    assert not missing, f"{len(missing)} messages missing, first: {missing[:10]}"
    extra = sorted(by_idx.keys() - expected)
    assert not extra, f"unexpected messages {extra[:10]}"
    dups = {i: [(r.partition, r.offset) for r in rs] for i, rs in by_idx.items() if len(rs) > 1}
    assert not dups, f"{len(dups)} duplicated messages, e.g. {list(dups.items())[:5]}"
    assert len(records) == count
    verify_offsets_contiguous(records)
    per_part: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        per_part[r.partition].append(r)
    for p, rs in per_part.items():
        rs.sort(key=lambda r: r.offset)
        idxs = [int(r.key[4:]) for r in rs]
        assert idxs == sorted(idxs), f"partition {p}: messages out of production order"


def verify_offsets_contiguous(records: list[Record]) -> None:
    per_part: dict[int, list[int]] = defaultdict(list)
    for r in records:
        per_part[r.partition].append(r.offset)
    for p, offs in per_part.items():
        offs.sort()
        assert offs == list(range(len(offs))), (
            f"partition {p}: offsets not contiguous from 0 "
            f"(n={len(offs)}, first={offs[:3]}, last={offs[-3:]})"
        )


def raise_if(err) -> None:
    if err is not None:
        raise KafkaException(err)
