"""Log compaction (cleanup.policy=compact) against a real broker: many
updates per key end as exactly the latest value of every key at its
original offset, tombstoned keys disappear after delete.retention.ms, the
log end does not move, far less stays on disk, readers during cleaning see
a consistent log, and all of it survives a restart and a kill -9."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from kafkahelpers import create_topic
from test_retention import segment_files, wait_for, watermarks

SEGMENT_BYTES = 16384
KEYS = 50
UPDATES = 3000
DEAD = range(10)  # keys tombstoned at the end
FILLER = 200


def broker_config() -> dict:
    return {
        "log.cleaner.backoff.ms": 100,
        # The cleaner takes segments whose indexes a checkpoint has synced.
        "log.flush.offset.checkpoint.interval.ms": 200,
    }


def key(i: int) -> bytes:
    return f"key-{i:03d}".encode()


def produce_workload(bootstrap: str, topic: str) -> dict:
    """Write the updates, tombstones and filler; returns {key: latest value
    (None for a tombstone)} of the updated keys."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "batch.size": 4096})
    latest: dict = {}
    for n in range(UPDATES):
        k = key(n % KEYS)
        v = f"{n:06d}-".encode() + b"v" * 150
        p.produce(topic, key=k, value=v)
        latest[k] = v
    for i in DEAD:
        p.produce(topic, key=key(i), value=None)
        latest[key(i)] = None
    # Distinct keys after them, so that the updates leave the active segment.
    for n in range(FILLER):
        p.produce(topic, key=f"filler-{n:04d}".encode(), value=b"f" * 150)
    assert p.flush(60) == 0
    return latest


def read_all(bootstrap: str, topic: str, end: int) -> list:
    """Every record from the start to `end` (exclusive) as (offset, key, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 60
    try:
        while (not out or out[-1][0] < end - 1) and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def check_log(records: list, latest: dict, end: int, *, compacted: bool) -> None:
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets ascend, none twice"
    assert offsets[-1] == end - 1, "the log end is unchanged"
    last: dict = {}
    seen: dict = {}
    for _, k, v in records:
        last[k] = v
        seen[k] = seen.get(k, 0) + 1
    for k, v in latest.items():
        if v is not None:
            assert last.get(k) == v, f"{k!r}: latest value kept"
    fillers = [k for k in seen if k.startswith(b"filler-")]
    assert len(fillers) == FILLER and all(seen[k] == 1 for k in fillers)
    if compacted:
        for k, v in latest.items():
            assert seen.get(k, 0) <= 1, f"{k!r} appears {seen.get(k)} times"


def compacted_view(bootstrap: str, topic: str, latest: dict, end: int, *, tombstones_gone: bool):
    """The whole log once every updated key is down to one record (its
    latest value, or its tombstone until that may go), else None."""
    records = read_all(bootstrap, topic, end)
    keys = [k for _, k, _ in records if k in latest]
    if len(keys) != len(set(keys)):
        return None
    for _, k, v in records:
        if k in latest and latest[k] is None and (tombstones_gone or v is not None):
            return None
    return records


def test_compaction_keeps_the_latest_value_of_every_key(broker_factory):
    broker = broker_factory(broker_config())
    topic = "compacted"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "0",
        },
    )
    latest = produce_workload(broker.bootstrap, topic)
    end = UPDATES + len(DEAD) + FILLER
    assert watermarks(broker.bootstrap, topic) == (0, end)
    pdir = broker.data_dir / f"{topic}-0"
    before = sum(segment_files(pdir).values())

    # Readers during cleaning always see a consistent log.
    problems: list = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                check_log(read_all(broker.bootstrap, topic, end), latest, end, compacted=False)
            except AssertionError as e:  # pragma: no cover - reported below
                problems.append(e)
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        # Tombstones stay for this pass: none of the clean part is older
        # than them yet (Kafka's delete horizon).
        records = wait_for(
            "every key compacted to its latest value",
            lambda: compacted_view(broker.bootstrap, topic, latest, end, tombstones_gone=False),
            timeout=90,
        )
    finally:
        stop.set()
        t.join(60)
    assert not problems, problems[0]
    check_log(records, latest, end, compacted=True)
    after = sum(segment_files(pdir).values())
    assert after < before / 4, f"{before} bytes before, {after} after"
    assert watermarks(broker.bootstrap, topic) == (0, end)
    assert not list(pdir.glob("*.cleaned")) and not list(pdir.glob("*.swap"))

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (0, end)
    check_log(read_all(broker.bootstrap, topic, end), latest, end, compacted=True)
    broker.kill9()
    broker.start()
    broker.wait_ready()
    assert watermarks(broker.bootstrap, topic) == (0, end)
    check_log(read_all(broker.bootstrap, topic, end), latest, end, compacted=True)

    # More updates after the restart are compacted too.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, "batch.size": 4096})
    for n in range(500):
        k = key(KEYS - 1 - n % 5)
        v = f"again-{n}".encode()
        p.produce(topic, key=k, value=v)
        latest[k] = v
    for n in range(FILLER):
        p.produce(topic, key=f"filler2-{n:04d}".encode(), value=b"g" * 150)
    assert p.flush(60) == 0
    end2 = end + 500 + FILLER

    # The next pass also drops the tombstones (delete.retention.ms=0).
    records = wait_for(
        "the new updates compacted and the tombstones gone",
        lambda: compacted_view(broker.bootstrap, topic, latest, end2, tombstones_gone=True),
        timeout=90,
    )
    check_log(records, latest, end2, compacted=True)
    assert not any(k == key(i) for _, k, _ in records for i in DEAD)
