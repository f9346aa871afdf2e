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


def test_kill9_during_cleaning_loses_no_live_key(broker_factory):
    """kill -9 at random moments while the cleaner works (its IO slowed so
    that the kills land mid-pass): after every restart, every key still
    reads its last acknowledged value, offsets ascend and the log end
    holds; in the end the log compacts fully."""
    import random

    cfg = broker_config()
    cfg["log.cleaner.backoff.ms"] = 50
    cfg["log.cleaner.io.max.bytes.per.second"] = 400000
    broker = broker_factory(cfg)
    topic = "compacted-crash"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), "min.cleanable.dirty.ratio": "0.01"},
    )
    rng = random.Random(9)
    latest: dict = {}
    end = 0
    for round_ in range(6):
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, "batch.size": 4096})
        for n in range(1500):
            k = key(rng.randrange(40))
            v = f"r{round_}-{n:05d}-".encode() + b"x" * 120
            p.produce(topic, key=k, value=v)
            latest[k] = v
        for n in range(100):
            k = f"filler-{round_}-{n:04d}".encode()
            p.produce(topic, key=k, value=b"f" * 150)
            latest[k] = b"f" * 150
        assert p.flush(60) == 0
        end += 1600
        time.sleep(rng.uniform(0.2, 3.0))
        broker.kill9()
        broker.start()
        broker.wait_ready()
        assert watermarks(broker.bootstrap, topic) == (0, end)
        records = read_all(broker.bootstrap, topic, end)
        offsets = [o for o, _, _ in records]
        assert offsets == sorted(set(offsets)) and offsets[-1] == end - 1
        last = {k: v for _, k, v in records}
        for k, v in latest.items():
            assert last.get(k) == v, f"round {round_}: {k!r} lost its last acknowledged value"

    def fully_compacted():
        records = read_all(broker.bootstrap, topic, end)
        keys = [k for _, k, _ in records]
        return records if len(keys) == len(set(keys)) else None

    # Roll the last updates out of the active segment, then wait.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, "batch.size": 4096})
    for n in range(200):
        k = f"tail-{n:04d}".encode()
        p.produce(topic, key=k, value=b"t" * 150)
        latest[k] = b"t" * 150
    assert p.flush(60) == 0
    end += 200
    records = wait_for("full compaction after the crashes", fully_compacted, timeout=120)
    last = {k: v for _, k, v in records}
    for k, v in latest.items():
        assert last.get(k) == v
    problems = broker.log_problems()
    assert not [line for line in problems if "invariant" in line], problems


def test_offsets_topic_stays_small_under_a_commit_storm(broker_factory):
    """A commit storm on one group: __consumer_offsets is compacted, stays
    far smaller than what was written, and the committed offsets are right
    after restarts (and load fast)."""
    broker = broker_factory(
        {
            "offsets.topic.num.partitions": 1,
            "offsets.topic.segment.bytes": 1048576,
            "log.cleaner.backoff.ms": 100,
            "log.flush.offset.checkpoint.interval.ms": 200,
        }
    )
    create_topic(broker.bootstrap, "committed", 4)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "storm", "enable.auto.commit": False})
    commits = 40000
    try:
        for n in range(commits):
            c.commit(offsets=[TopicPartition("committed", n % 4, n)], asynchronous=True)
            if n % 5000 == 4999:
                c.commit(offsets=[TopicPartition("committed", n % 4, n)], asynchronous=False)
        final = [TopicPartition("committed", p, commits + p) for p in range(4)]
        c.commit(offsets=final, asynchronous=False)
    finally:
        c.close()
    odir = broker.data_dir / "__consumer_offsets-0"

    def small():
        files = segment_files(odir)
        total = sum(files.values())
        # Everything below the active segment compacted: a few records per
        # partition, so the sealed part is tiny.
        sealed = total - files[max(files)] if files else 0
        return (total, sealed) if len(files) > 1 and sealed < 64 * 1024 else None

    total, sealed = wait_for("the offsets topic compacted", small, timeout=120)
    written = commits * 60  # at least ~60 bytes per commit record
    assert total < written / 2, f"{total} bytes on disk after writing ~{written}"

    def committed():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "storm", "enable.auto.commit": False})
        try:
            got = c.committed([TopicPartition("committed", p) for p in range(4)], timeout=30)
            return {tp.partition: tp.offset for tp in got}
        finally:
            c.close()

    assert committed() == {p: commits + p for p in range(4)}
    broker.restart()
    assert committed() == {p: commits + p for p in range(4)}
    broker.kill9()
    broker.start()
    broker.wait_ready()
    assert committed() == {p: commits + p for p in range(4)}
