"""DeleteRecords and the log start offset against a real broker, through
confluent-kafka's admin client: the low watermark moves (also inside a
segment), fetches below it are out of range, ListOffsets earliest returns
it, whole segments below it are deleted, and it survives a clean restart
and a kill -9. Also DescribeLogDirs with real sizes (kafka-python)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from kafkahelpers import create_topic
from test_retention import (
    check_contiguous,
    consume_from_beginning,
    fetch_at,
    produce,
    segment_files,
    wait_for,
    watermarks,
)

SEGMENT_BYTES = 16384


def delete_records(bootstrap: str, topic: str, partition: int, offset: int):
    """The DeleteRecords result of one partition (its low watermark), or
    the KafkaException it failed with."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(topic, partition, offset)], request_timeout=30)
    (fut,) = futures.values()
    try:
        return fut.result(timeout=60).low_watermark
    except KafkaException as e:
        return e


def error_name(e) -> str:
    assert isinstance(e, KafkaException), f"expected an error, got {e!r}"
    return e.args[0].name()


def test_delete_records_moves_the_log_start_and_survives_restarts(broker_factory):
    broker = broker_factory(
        {
            "log.retention.check.interval.ms": 200,
            "log.segment.bytes": SEGMENT_BYTES,
        }
    )
    topic = "purged"
    create_topic(broker.bootstrap, topic, 1, {"file.delete.delay.ms": "0"})
    n = 300  # ~300 KB: about 20 segments
    produce(broker.bootstrap, topic, 0, n)
    pdir = broker.data_dir / f"{topic}-0"
    assert watermarks(broker.bootstrap, topic) == (0, n)
    before = segment_files(pdir)
    assert len(before) > 5

    # An offset inside a segment (not a segment's base offset).
    cut = 137
    assert cut not in before
    assert delete_records(broker.bootstrap, topic, 0, cut) == cut
    assert watermarks(broker.bootstrap, topic) == (cut, n)
    # Moving it backwards changes nothing.
    assert delete_records(broker.bootstrap, topic, 0, 10) == cut
    # Whole segments below the new start go with the next retention pass.
    def below_start_gone():
        bases = sorted(segment_files(pdir))
        return len(bases) > 1 and bases[0] <= cut < bases[1] and not list(pdir.glob("*.deleted"))

    wait_for("segments below the log start deleted", below_start_gone)
    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "g1", n), cut, n)
    # A fetch below the start is out of range: the client resets to it.
    assert fetch_at(broker.bootstrap, topic, 3).offset() == cut

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (cut, n)
    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "g2", n), cut, n)

    cut2 = 211
    assert delete_records(broker.bootstrap, topic, 0, cut2) == cut2
    broker.kill9()
    broker.start()
    broker.wait_ready()
    assert watermarks(broker.bootstrap, topic) == (cut2, n)
    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "g3", n), cut2, n)

    # -1 means the high watermark: everything goes; the log end stays.
    assert delete_records(broker.bootstrap, topic, 0, -1) == n
    assert watermarks(broker.bootstrap, topic) == (n, n)
    produce(broker.bootstrap, topic, n, 10)
    check_contiguous(consume_from_beginning(broker.bootstrap, topic, "g4", n + 10), n, n + 10)
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (n, n + 10)


def test_delete_records_errors(broker_factory):
    broker = broker_factory()
    create_topic(broker.bootstrap, "small", 1)
    produce(broker.bootstrap, "small", 0, 5)
    # Past the high watermark.
    assert error_name(delete_records(broker.bootstrap, "small", 0, 6)) == "OFFSET_OUT_OF_RANGE"
    assert watermarks(broker.bootstrap, "small") == (0, 5)
    # A compacted topic: records are not deleted by offset (as Kafka).
    create_topic(broker.bootstrap, "compacted", 1, {"cleanup.policy": "compact"})
    assert error_name(delete_records(broker.bootstrap, "compacted", 0, 0)) == "POLICY_VIOLATION"
    # An unknown partition.
    # (librdkafka answers this one from metadata, without asking.)
    assert error_name(delete_records(broker.bootstrap, "small", 7, 0)) in ("UNKNOWN_TOPIC_OR_PART", "_NOENT")


def log_dir_sizes(admin, topic_partitions=None) -> tuple[list, dict]:
    """(log dirs of the one broker, {(topic, partition): size})."""
    (broker,) = admin.describe_log_dirs(topic_partitions)
    dirs = broker["log_dirs"]
    sizes = {}
    for d in dirs:
        assert d["error_code"] == 0, d
        for t in d["topics"]:
            for p in t["partitions"]:
                sizes[(t["name"], p["partition_index"])] = p["partition_size"]
    return dirs, sizes


def test_describe_log_dirs_reports_real_sizes(broker_factory):
    kafka_admin = pytest.importorskip("kafka.admin")
    broker = broker_factory()
    create_topic(broker.bootstrap, "sized", 3)
    create_topic(broker.bootstrap, "other", 1)
    produce(broker.bootstrap, "sized", 0, 50)
    admin = kafka_admin.KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        dirs, sizes = log_dir_sizes(admin)
        assert len(dirs) == 1
        assert dirs[0]["log_dir"] == str(broker.data_dir.resolve())
        assert 0 < dirs[0]["usable_bytes"] <= dirs[0]["total_bytes"]
        assert {p for (t, p) in sizes if t == "sized"} == {0, 1, 2}
        assert ("other", 0) in sizes and sizes[("other", 0)] == 0
        on_disk = {p: sum(segment_files(broker.data_dir / f"sized-{p}").values()) for p in range(3)}
        assert {p: sizes[("sized", p)] for p in range(3)} == on_disk
        assert sum(on_disk.values()) >= 50 * 1000
        # Only what is asked for.
        _, some = log_dir_sizes(admin, {"sized": [1]})
        assert some == {("sized", 1): on_disk[1]}
    finally:
        admin.close()
