"""Disk full on a real filesystem: a small loop-mounted ext4 made by the test
holds the broker's data directory (needs root: mkfs.ext4 and mount -o loop;
skipped with the reason otherwise; CI runs as root).

- With ``ringlog.storage.min.free.bytes`` set, produce is refused with the
  retriable KAFKA_STORAGE_ERROR before the disk is really full; reads and
  metadata keep working; deleting a topic frees space and produce resumes by
  itself.
- With the threshold off (0), writes really hit ENOSPC mid-flush: the
  partition rolls back to its last durable state and takes writes again once
  space is freed (a filler file removed), without a restart. An idempotent
  producer's retries of dropped batches are appended, not taken as duplicates.

Finally every acknowledged message is read back exactly once at its offset,
offsets are dense, also after a restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaProducer
from kafka.errors import KafkaStorageError

from kafkahelpers import consume_all, create_topic

FS_MB = 64
# A hang bound for "produce resumes by itself" (not a performance limit).
RESUME_BOUND_S = 60.0


def _need_root_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mkfs.ext4 a file and mount it with -o loop"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


@pytest.fixture
def small_disk_broker(broker_factory, tmp_path_factory):
    """``make(config)``: a broker (not started) whose data dir is a fresh
    FS_MB MiB ext4 on a loop device."""
    reason = _need_root_tools()
    if reason:
        pytest.skip(reason)
    mounts: list[Path] = []

    def make(config: dict):
        b = broker_factory(config=config, start=False)
        image = tmp_path_factory.mktemp("img") / "disk.img"
        with open(image, "wb") as f:
            f.truncate(FS_MB << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
        try:
            subprocess.run(["mount", "-o", "loop", str(image), str(b.data_dir)], check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            pytest.skip(f"mount -o loop failed: {e.stderr.decode(errors='replace').strip()}")
        mounts.append(b.data_dir)
        # ext4's lost+found is not a topic directory.
        shutil.rmtree(b.data_dir / "lost+found", ignore_errors=True)
        return b

    yield make
    for m in mounts:
        # Lazy: the broker is stopped by broker_factory's teardown after this.
        subprocess.run(["umount", "-l", str(m)], check=False)


def _acked_producer(bootstrap: str) -> KafkaProducer:
    # No retries: the test sees the error code of each refusal.
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, linger_ms=0,
                         max_in_flight_requests_per_connection=1, request_timeout_ms=30000)


def _send(p: KafkaProducer, topic: str, value: bytes):
    """(offset, None) when acknowledged, (None, error) when refused."""
    try:
        md = p.send(topic, value=value, partition=0).get(timeout=60)
        return md.offset, None
    except KafkaStorageError as e:
        return None, e


def _check_exactly_once(bootstrap: str, topic: str, acked: dict[int, bytes]) -> None:
    records = consume_all(bootstrap, topic, 1)
    offsets = [r.offset for r in records]
    assert offsets == list(range(len(records))), "offsets are not dense"
    by_offset = {r.offset: r.value for r in records}
    for off, value in acked.items():
        assert by_offset.get(off) == value, f"acknowledged message at {off} not read back"
    values = [r.value for r in records]
    assert len(set(values)) == len(values), "a message was stored twice"


def _produce_until_refused(p: KafkaProducer, topic: str, acked: dict[int, bytes], tag: str, size: int):
    for i in range(100000):
        value = f"{tag}-{i}-".encode() + b"x" * size
        off, err = _send(p, topic, value)
        if err is not None:
            return err
        acked[off] = value
    raise AssertionError("the disk never filled up")


def _produce_until_accepted(p: KafkaProducer, topic: str, acked: dict[int, bytes], tag: str) -> None:
    deadline = time.monotonic() + RESUME_BOUND_S
    i = 0
    while True:
        value = f"{tag}-{i}".encode()
        off, err = _send(p, topic, value)
        if err is None:
            acked[off] = value
            return
        assert time.monotonic() < deadline, f"produce did not resume within {RESUME_BOUND_S}s: {err}"
        i += 1
        time.sleep(0.2)


def test_threshold_refuses_produce_then_resumes(small_disk_broker):
    b = small_disk_broker({"ringlog.storage.min.free.bytes": 16 << 20,
                           "ringlog.storage.space.check.interval.ms": 100,
                           "log.segment.delete.delay.ms": 0})
    b.start()
    create_topic(b.bootstrap, "data", 1)
    create_topic(b.bootstrap, "filler", 1)
    p = _acked_producer(b.bootstrap)
    acked: dict[int, bytes] = {}
    for i in range(50):
        off, err = _send(p, "data", f"before-{i}".encode())
        assert err is None, err
        acked[off] = f"before-{i}".encode()
    filler: dict[int, bytes] = {}
    err = _produce_until_refused(p, "filler", filler, "fill", 256 << 10)
    assert err.retriable, f"{err!r} is not retriable"
    assert len(filler) > 10
    # Other topics are refused too, with the retriable error, once their
    # shard's next space check sees the free space (each shard checks every
    # ringlog.storage.space.check.interval.ms; a message accepted before
    # that is acknowledged and must be kept).
    deadline = time.monotonic() + 5
    i = 0
    while True:
        value = f"before-threshold-{i}".encode()
        off, err = _send(p, "data", value)
        if err is not None:
            break
        acked[off] = value
        assert time.monotonic() < deadline, "produce to another topic was not refused within 5 s"
        i += 1
        time.sleep(0.05)
    assert err.retriable, f"{err!r} is not retriable"
    # Reads and metadata keep working.
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    assert {"data", "filler"} <= set(admin.list_topics(timeout=30).topics)
    _check_exactly_once(b.bootstrap, "data", acked)
    assert len(consume_all(b.bootstrap, "filler", 1)) == len(filler)
    # Deleting a topic frees space: produce resumes by itself.
    admin.delete_topics(["filler"])["filler"].result(30)
    _produce_until_accepted(p, "data", acked, "resumed")
    for i in range(200):
        off, err = _send(p, "data", f"after-{i}".encode())
        assert err is None, err
        acked[off] = f"after-{i}".encode()
    p.close()
    _check_exactly_once(b.bootstrap, "data", acked)
    b.restart()
    _check_exactly_once(b.bootstrap, "data", acked)


def test_enospc_rolls_back_and_resumes_without_restart(small_disk_broker):
    b = small_disk_broker({"ringlog.storage.min.free.bytes": 0,
                           "ringlog.storage.space.check.interval.ms": 100})
    # Room to free later.
    filler = b.data_dir / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * (16 << 20))
        os.fsync(f.fileno())
    b.start()
    create_topic(b.bootstrap, "data", 1)
    create_topic(b.bootstrap, "idem", 1)
    p = _acked_producer(b.bootstrap)
    acked: dict[int, bytes] = {}
    err = _produce_until_refused(p, "data", acked, "fill", 64 << 10)
    assert err.retriable, f"{err!r} is not retriable"
    assert len(acked) > 10
    assert "rolled back to its last durable state" in b.log_text()
    # Still refused while full; reads work.
    off, err = _send(p, "data", b"refused")
    assert err is not None and err.retriable
    _check_exactly_once(b.bootstrap, "data", acked)

    # An idempotent producer writing while the disk is full: its batches fail
    # (rolled back or refused) and are retried by the client until space is freed.
    errors = []
    delivered: dict[int, bytes] = {}

    def on_delivery(e, m):
        if e is not None:
            errors.append(e)
        else:
            delivered[m.offset()] = m.value()

    ip = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                   "message.timeout.ms": 120000})
    for i in range(300):
        ip.produce("idem", value=f"idem-{i}".encode() + b"y" * 2000, partition=0, on_delivery=on_delivery)
        ip.poll(0)
    ip.poll(2)
    filler.unlink()
    os.sync()
    assert ip.flush(RESUME_BOUND_S) == 0, "the idempotent producer did not finish"
    assert errors == []
    assert len(delivered) == 300
    _produce_until_accepted(p, "data", acked, "resumed")
    for i in range(100):
        off, err = _send(p, "data", f"after-{i}".encode())
        assert err is None, err
        acked[off] = f"after-{i}".encode()
    p.close()
    _check_exactly_once(b.bootstrap, "data", acked)
    _check_exactly_once(b.bootstrap, "idem", delivered)
    b.restart()
    _check_exactly_once(b.bootstrap, "data", acked)
    _check_exactly_once(b.bootstrap, "idem", delivered)
