"""Apache Kafka as the reference for ringlog's on-disk format.

The same client scenario (confluent-kafka: keys, headers, every codec, an
idempotent producer, tombstones) is produced to Apache Kafka
(scripts/kafka-reference.sh, tests/python/kafka_reference.py) and to ringlog.
Then

- ``ringlog dump-log`` must read Kafka's segment files (.log, .index,
  .timeindex): every batch CRC-valid, every record with its key, value and
  headers, the codecs and the idempotent producer's id, consistent indexes;
- Kafka's own kafka.tools.DumpLogSegments (kafka-dump-log.sh) must read
  ringlog's segment files and its index sanity check must pass on them.

Skipped when Java or Maven is missing or Kafka cannot be fetched (on CI,
CI=true, that fails instead). scripts/test.sh fetches Kafka in its install
step; the jars are cached (scripts/kafka-reference.sh).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, ringlog_binary
from kafka_reference import KafkaReference
from tools import on_ci

TOPIC = "ref"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_PHASE = 30
TS0 = 1_700_000_000_000


def scenario() -> list[tuple[dict, list[tuple]]]:
    """(producer config, records) per phase; a record is
    (key, value, headers, timestamp). Values compress well so librdkafka
    does not fall back to an uncompressed batch."""
    phases = []
    n = 0
    for codec in CODECS + ["idempotent"]:
        conf = {"compression.type": "lz4" if codec == "idempotent" else codec}
        if codec == "idempotent":
            conf["enable.idempotence"] = True
        recs = []
        for i in range(PER_PHASE):
            key = f"{codec}-key-{i % 10}"
            value = None if i % 7 == 3 else (f"{codec} value {n} " * 8)
            headers = [("phase", codec.encode()), ("n", str(n).encode())]
            recs.append((key, value, headers, TS0 + n))
            n += 1
        phases.append((conf, recs))
    return phases


def expected_records() -> list[tuple]:
    out = []
    for _, recs in scenario():
        out.extend(recs)
    return out


def produce_scenario(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # A small index interval so Kafka's .index gets entries beyond the first.
    fs = admin.create_topics([NewTopic(TOPIC, 1, 1, config={"index.interval.bytes": "512"})])
    for f in fs.values():
        f.result(30)
    time.sleep(0.5)
    for conf, recs in scenario():
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 50, **conf})
        # Two batches per phase: the second half after a flush.
        for half in (recs[: len(recs) // 2], recs[len(recs) // 2 :]):
            for key, value, headers, ts in half:
                p.produce(TOPIC, key=key, value=value, headers=headers, timestamp=ts)
            assert p.flush(60) == 0


@pytest.fixture(scope="module")
def kafka_jars(tmp_path_factory):
    """Kafka fetched (cached), not started: for kafka.tools.DumpLogSegments."""
    ok, why = KafkaReference.available()
    if not ok:
        msg = f"Apache Kafka is not available: {why}"
        if on_ci():
            pytest.fail(f"{msg}: on CI this fails the test", pytrace=False)
        pytest.skip(msg)
    return KafkaReference(tmp_path_factory.mktemp("kafka-ref"))


@pytest.fixture
def kafka_ref(kafka_jars):
    ref = kafka_jars
    ref.start()
    try:
        yield ref
    finally:
        ref.stop()


def segment_files(partition_dir: Path) -> dict[str, list[Path]]:
    return {ext: sorted(partition_dir.glob(f"*.{ext}")) for ext in ("log", "index", "timeindex")}


def ringlog_dump_json(binary: Path, files: list[Path]) -> tuple[int, list[dict], str]:
    r = subprocess.run(
        [str(binary), "dump-log", "--print-data-log", "--format", "json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, lines, r.stderr


def test_ringlog_dump_log_reads_kafka_files(kafka_ref, report):
    ringlog_binary_path = ringlog_binary()
    produce_scenario(kafka_ref.bootstrap)
    pdir = kafka_ref.data_dir / f"{TOPIC}-0"
    # While Kafka runs, its active segment's index files are preallocated
    # (10 MiB of mostly zeros): read them as they are, then again after a
    # clean shutdown has trimmed them (which may add a last time index entry).
    live = segment_files(pdir)
    rc, live_lines, err = ringlog_dump_json(ringlog_binary_path, live["index"] + live["timeindex"])
    assert rc == 0, err + json.dumps(live_lines[-5:])
    kafka_ref.stop()
    files = segment_files(pdir)
    assert files["log"], f"no segment files in {kafka_ref.data_dir}"
    all_files = files["log"] + files["index"] + files["timeindex"]

    text = subprocess.run(
        [str(ringlog_binary_path), "dump-log", "--print-data-log", *map(str, all_files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0, text.stdout[-3000:] + text.stderr[-2000:]

    rc, lines, err = ringlog_dump_json(ringlog_binary_path, all_files)
    assert rc == 0, err + json.dumps(lines[-5:])
    batches = [x for x in lines if x["kind"] == "batch"]
    records = [x for x in lines if x["kind"] == "record"]
    assert batches and all(b["isvalid"] for b in batches), [b for b in batches if not b["isvalid"]]
    report("kafka_batches", len(batches))

    # Every record, in order, with its key, value and headers.
    exp = expected_records()
    assert [r["offset"] for r in records] == list(range(len(exp)))
    for r, (key, value, headers, ts) in zip(records, exp):
        assert r["key"] == key, r
        assert r["payload"] == value, r
        assert [(h["key"], h["value"]) for h in r["headers"]] == [(k, v.decode()) for k, v in headers], r
        assert r["timestamp"] == ts, r

    # Batches: contiguous offsets, the codec of each phase, the idempotent
    # producer's id and sequences.
    assert batches[0]["baseOffset"] == 0
    for a, b in zip(batches, batches[1:]):
        assert b["baseOffset"] == a["lastOffset"] + 1
        assert b["position"] == a["position"] + a["size"]
    codecs = {b["compresscodec"] for b in batches}
    assert codecs == set(CODECS), codecs
    idem = [b for b in batches if b["producerId"] >= 0]
    assert idem, "no batch of the idempotent producer"
    assert all(b["baseSequence"] >= 0 for b in idem)
    assert [b["baseSequence"] for b in idem] == sorted(b["baseSequence"] for b in idem)

    # Index entries point at batch boundaries and existing offsets.
    starts = {b["position"]: b for b in batches}
    idx = [x for x in lines if x["kind"] == "index"]
    tidx = [x for x in lines if x["kind"] == "timeindex"]
    report("kafka_index_entries", len(idx))
    report("kafka_timeindex_entries", len(tidx))
    assert len(idx) > 1, "index.interval.bytes=512 should give Kafka's .index several entries"
    for e in idx:
        b = starts.get(e["position"])
        assert b is not None and b["baseOffset"] <= e["offset"] <= b["lastOffset"], e
    offsets = {r["offset"] for r in records}
    for e in tidx:
        assert e["offset"] in offsets, e
    live_idx = [(x["offset"], x["position"]) for x in live_lines if x["kind"] == "index"]
    live_tidx = [(x["timestamp"], x["offset"]) for x in live_lines if x["kind"] == "timeindex"]
    assert live_idx == [(e["offset"], e["position"]) for e in idx]
    assert live_tidx == [(e["timestamp"], e["offset"]) for e in tidx][: len(live_tidx)]


DUMP_BATCH = re.compile(r"^baseOffset: (\d+) lastOffset: (\d+) count: (\d+).*compresscodec: (\w+) crc: \d+ isvalid: (\w+)")
# "| offset: 5 CreateTime: ... headerKeys: [phase,n] key: K payload: V"
# (no payload for a tombstone).
DUMP_RECORD = re.compile(r"^\| offset: (\d+) .*?headerKeys: \[(.*?)\] key: (\S*)(?: payload: (.*))?$")


@pytest.fixture(scope="module")
def ringlog_segments(tmp_path_factory) -> dict[str, list[Path]]:
    """The scenario produced to a ringlog broker, which is then stopped:
    the segment files of TOPIC-0."""
    b = Broker(ringlog_binary(), tmp_path_factory.mktemp("ringlog-ref"), None, 2)
    b.start()
    try:
        produce_scenario(b.bootstrap)
    finally:
        b.stop()
    problems = b.log_problems() + b.hangs
    assert not problems, f"{problems}\n{b.log_tail(60)}"
    cands = sorted(p for p in b.data_dir.rglob(f"{TOPIC}-0") if p.is_dir())
    assert cands, f"no partition dir for {TOPIC}-0 under {b.data_dir}"
    files = segment_files(cands[0])
    assert files["log"] and files["index"] and files["timeindex"], files
    return files


def test_kafka_dump_log_segments_reads_ringlog_files(kafka_jars, ringlog_segments, report):
    r = kafka_jars.dump_log_segments(
        ["--deep-iteration", "--print-data-log", "--files", ",".join(map(str, ringlog_segments["log"]))]
    )
    out = r.stdout
    assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
    assert "Exception" not in r.stderr and "Exception" not in out, r.stderr[-3000:]
    batches = [m.groups() for m in map(DUMP_BATCH.match, out.splitlines()) if m]
    records = [m.groups() for m in map(DUMP_RECORD.match, out.splitlines()) if m]
    report("ringlog_batches", len(batches))
    assert batches and all(b[4] == "true" for b in batches), [b for b in batches if b[4] != "true"]
    assert {b[3] for b in batches} == set(CODECS)
    exp = expected_records()
    assert [int(x[0]) for x in records] == list(range(len(exp))), out[-3000:]
    for rec, (key, value, _headers, _ts) in zip(records, exp):
        assert rec[1] == "phase,n", rec
        assert rec[2] == key, rec
        if value is None:
            assert rec[3] is None, rec
        else:
            assert rec[3].rstrip() == value.rstrip(), rec
    for bad in ("Found", "corrupt", "not match", "mismatch"):
        assert bad not in out, [line for line in out.splitlines() if bad in line][:10]


def test_kafka_index_sanity_check_on_ringlog_indexes(kafka_jars, ringlog_segments, report):
    """Kafka's load-time sanity check (sizes, order, first entry) passes."""
    files = ringlog_segments["index"] + ringlog_segments["timeindex"]
    r = kafka_jars.dump_log_segments(["--index-sanity-check", "--files", ",".join(map(str, files))])
    report("index_sanity", r.stdout.strip())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("passed sanity check") == len(files), r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.xfail(
    strict=True,
    reason=(
        "ringlog indexes a batch before appending it (segment.rs note_append): .index entry = the batch's "
        "BASE offset, .timeindex entry = (max timestamp of the records BEFORE the batch, the batch's base "
        "offset); Kafka indexes after the append: (batch LAST offset, position) and (max timestamp so far, "
        "last offset of the batch holding it). Kafka's --verify-index-only flags every ringlog entry."
    ),
)
def test_kafka_verify_index_only_on_ringlog_indexes(kafka_jars, ringlog_segments, report):
    files = ringlog_segments["index"] + ringlog_segments["timeindex"]
    r = kafka_jars.dump_log_segments(["--verify-index-only", "--files", ",".join(map(str, files))])
    text = r.stdout + r.stderr
    report("verify_index_only", r.stdout.strip())
    assert r.returncode == 0, text[-3000:]
    for bad in ("Mismatches in", "Index offset", "timestamp mismatch", "not found in the log", "Exception"):
        assert bad not in text, text[-3000:]


# (timestamp - TS0, the offset ListOffsets must answer): the first offset with
# a timestamp >= it (timestamps are TS0 + offset), at and between the time
# index entries.
TIME_PROBES = [(14, 14), (20, 20), (29, 29), (30, 30), (119, 119), (164, 164)]


def offsets_for_times(bootstrap: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafka-ref-probe"})
    try:
        out = {}
        for rel, _ in TIME_PROBES:
            r = c.offsets_for_times([TopicPartition(TOPIC, 0, TS0 + rel)], timeout=30)
            out[rel] = r[0].offset
        return out
    finally:
        c.close()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "ringlog's .timeindex entries are (max timestamp BEFORE a batch, that batch's base offset); Kafka's "
        "LogSegment.findOffsetByTimestamp takes the entry with timestamp <= T and scans from its offset, so "
        "for T equal to an entry's timestamp it skips the record holding T (seen: 15 for TS0+14, 30 for TS0+29, 165 for TS0+164)"
    ),
)
def test_kafka_serves_ringlog_segments_offsets_for_times(kafka_jars, ringlog_segments, tmp_path, report):
    """Apache Kafka, restarted on ringlog's segment files in place of its
    own (same records), answers ListOffsets by timestamp as on its own."""
    ref = KafkaReference(tmp_path / "kafka-swap")
    ref.start()
    try:
        produce_scenario(ref.bootstrap)
        own = offsets_for_times(ref.bootstrap)
        assert own == dict(TIME_PROBES), own
    finally:
        ref.stop()
    pdir = ref.data_dir / f"{TOPIC}-0"
    for ext in ("log", "index", "timeindex"):
        (src,) = ringlog_segments[ext]
        shutil.copyfile(src, pdir / src.name)
    ref.start(keep_data=True)
    try:
        swapped = offsets_for_times(ref.bootstrap)
    finally:
        ref.stop()
    report("kafka_on_ringlog_files", swapped)
    assert swapped == own, f"Kafka on ringlog's files: {swapped}, on its own: {own}"
