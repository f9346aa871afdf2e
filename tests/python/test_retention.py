"""Delete retention (retention.bytes, retention.ms) against a real broker:
old segments are deleted, the earliest offset advances, consumers that
start from the beginning continue at the new start, across restarts."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import free_port
from kafkahelpers import create_topic

SEGMENT_BYTES = 16384
# Bounded waits on observations (never on timing).
WAIT_S = 60.0


def produce(bootstrap: str, topic: str, start: int, count: int, timestamp: int | None = None) -> None:
    # Small batches so that segments fill up with several of them.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "batch.size": 4096})
    for i in range(start, start + count):
        kwargs = {"timestamp": timestamp} if timestamp is not None else {}
        p.produce(topic, key=str(i).encode(), value=value(i), **kwargs)
    assert p.flush(60) == 0


def value(i: int) -> bytes:
    return f"{i:06d}-".encode() + b"x" * 1000


def batches_length(path: Path) -> int:
    """Bytes of whole record batches at the start of a segment file (the
    active segment's file may carry O_DIRECT zero padding past them)."""
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos + 8 : pos + 12], "big")
        if length == 0 or pos + 12 + length > len(data):
            break
        pos += 12 + length
    return pos


def segment_files(partition_dir: Path) -> dict[int, int]:
    """Base offset -> bytes of every segment .log file (a file that retention
    renames between the listing and the read is left out)."""
    out = {}
    for f in partition_dir.glob("*.log"):
        try:
            out[int(f.name[:-4])] = batches_length(f)
        except FileNotFoundError:
            continue
    return out


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def wait_for(what: str, probe, timeout: float = WAIT_S):
    """Poll `probe` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not reached within {timeout}s (last: {last})")


def consume_from_beginning(bootstrap: str, topic: str, group: str, until: int) -> list:
    """Messages from the group's start (auto.offset.reset=earliest) up to
    offset `until` (exclusive)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + WAIT_S
    try:
        while (not got or got[-1].offset() < until - 1) and time.monotonic() < deadline:
            for m in c.consume(500, timeout=1):
                assert m.error() is None, m.error()
                got.append(m)
    finally:
        c.close()
    return got


def fetch_at(bootstrap: str, topic: str, offset: int):
    """First message when fetching from an explicit offset with
    auto.offset.reset=earliest."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "explicit",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, 0, offset)])
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None:
                assert m.error() is None, m.error()
                return m
    finally:
        c.close()
    raise AssertionError("no message")


def check_contiguous(msgs: list, low: int, high: int) -> None:
    assert msgs, "nothing consumed"
    assert msgs[0].offset() == low
    assert [m.offset() for m in msgs] == list(range(low, high))
    for m in msgs:
        assert m.value() == value(m.offset())


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_retention_bytes(broker_factory):
    metrics_port = free_port()
    broker = broker_factory(
        {
            "log.retention.check.interval.ms": 200,
            "log.segment.bytes": SEGMENT_BYTES,
            "ringlog.metrics.listen": f"127.0.0.1:{metrics_port}",
        }
    )
    topic = "retained-by-size"
    retention = 4 * SEGMENT_BYTES
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {"retention.bytes": str(retention), "file.delete.delay.ms": "0"},
    )
    n = 400  # ~400 KB: about 25 segments
    produce(broker.bootstrap, topic, 0, n)
    pdir = broker.data_dir / f"{topic}-0"

    def settled():
        low, high = watermarks(broker.bootstrap, topic)
        files = segment_files(pdir)
        if low == 0 or high != n or not files:
            return None
        oldest = min(files)
        total = sum(files.values())
        # Retention has caught up: the oldest file starts at the low
        # watermark, no renamed leftovers, and dropping the oldest would
        # take the log under retention.bytes.
        if oldest != low or list(pdir.glob("*.deleted")) or total - files[oldest] >= retention:
            return None
        return low, files

    low, files = wait_for("size retention", settled)
    assert 0 < low < n
    assert sum(files.values()) >= retention, "at least retention.bytes are kept"
    assert not (pdir / f"{0:020d}.log").exists()
    assert not (pdir / f"{0:020d}.index").exists()

    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "g1", n), low, n)
    # An explicit fetch below the log start is out of range; the client
    # resets to the earliest offset.
    assert fetch_at(broker.bootstrap, topic, 0).offset() == low

    text = scrape(metrics_port)
    deleted = sum(
        float(v) for v in re.findall(r'^ringlog_shard_retention_deleted_segments_total\{shard="\d+"\} (\S+)$', text, re.M)
    )
    assert deleted >= 1

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (low, n)
    assert segment_files(pdir) == files
    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "g2", n), low, n)

    # More data after the restart: retention keeps going.
    produce(broker.bootstrap, topic, n, 100)
    wait_for("retention after restart", lambda: watermarks(broker.bootstrap, topic)[0] > low)


def test_retention_ms(broker_factory):
    broker = broker_factory({"log.retention.check.interval.ms": 200, "log.segment.bytes": SEGMENT_BYTES})
    topic = "retained-by-time"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {"retention.ms": "600000", "file.delete.delay.ms": "0"},
    )
    now_ms = int(time.time() * 1000)
    n_old, n_new = 200, 100
    # Records an hour old (CreateTime), then current ones.
    produce(broker.bootstrap, topic, 0, n_old, timestamp=now_ms - 3_600_000)
    produce(broker.bootstrap, topic, n_old, n_new)
    n = n_old + n_new
    pdir = broker.data_dir / f"{topic}-0"

    def advanced():
        low, high = watermarks(broker.bootstrap, topic)
        files = segment_files(pdir)
        if high != n or low == 0 or not files or min(files) != low:
            return None
        # Wait for the end state, not a step on the way: a retention pass
        # that ran while the old records were still being written left the
        # then-active segment, which the next pass takes. Done when the first
        # segment left holds the first recent record.
        later = sorted(files)[1:]
        if later and later[0] <= n_old:
            return None
        return low, files

    low, files = wait_for("time retention", advanced)
    # Only segments whose newest record is old go: the segment holding the
    # first recent record (and everything after it) stays.
    assert 0 < low <= n_old
    assert not (pdir / f"{0:020d}.log").exists()
    msgs = consume_from_beginning(broker.bootstrap, topic, "t1", n)
    check_contiguous(msgs, low, n)
    assert all(m.timestamp()[1] >= now_ms for m in msgs if m.offset() >= n_old)

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (low, n)
    assert segment_files(pdir) == files
    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "t2", n), low, n)


def test_lowering_retention_ms_purges_the_topic(broker_factory):
    """The usual way to empty a Kafka topic: lower its retention.ms. Every
    segment goes, the active one too (rolled first, as Kafka does), the
    offsets go on where they were, also after a restart."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    from kafkahelpers import admin_client

    broker = broker_factory({"log.retention.check.interval.ms": 200, "log.segment.bytes": SEGMENT_BYTES})
    topic = "purged"
    create_topic(broker.bootstrap, topic, 1, {"file.delete.delay.ms": "0"})
    n = 60
    produce(broker.bootstrap, topic, 0, n, timestamp=int(time.time() * 1000) - 60_000)
    pdir = broker.data_dir / f"{topic}-0"
    assert watermarks(broker.bootstrap, topic) == (0, n)

    admin = admin_client(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=30)
    wait_for("the topic to be purged", lambda: watermarks(broker.bootstrap, topic) == (n, n))
    # Only the new, empty active segment is left; it names the log end.
    wait_for("the purged files to go", lambda: list(segment_files(pdir)) == [n])

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (n, n)
    produce(broker.bootstrap, topic, n, 1)
    low, high = watermarks(broker.bootstrap, topic)
    # (retention.ms is 1 s: the new record may already be purged too.)
    assert high == n + 1 and low in (n, n + 1)
