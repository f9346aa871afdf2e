"""Storage faults after kill -9: a damaged byte in an old segment must not
cost any acknowledged message that is still intact, nor hand its offsets out
again (issue 8, "Storage faults")."""

from __future__ import annotations

import socket
import struct
import time

from kafkahelpers import create_topic, produce_numbered
from rawkafka import fetch_request_v4, read_response

CORRUPT_MESSAGE = 2


def fetch_batches(bootstrap: str, topic: str, offset: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Fetch v4 at `offset`: (error, high watermark, [(base offset, last
    offset)] of the whole batches returned)."""
    host, port = bootstrap.split(":")
    for attempt in range(50):
        try:
            with socket.create_connection((host, int(port)), timeout=30) as s:
                s.sendall(fetch_request_v4(1, {topic: [(0, offset)]}, max_wait_ms=0, min_bytes=0))
                resp = read_response(s)
            break
        except ConnectionError:
            # right after a start, before every shard serves
            if attempt == 49:
                raise
            time.sleep(0.1)
    pos = 4 + 4  # correlation id, throttle time
    (ntopics,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert ntopics == 1
    (n,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + n
    (nparts,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert nparts == 1
    _partition, err, hw, _lso = struct.unpack_from(">ihqq", resp, pos)
    pos += struct.calcsize(">ihqq")
    (naborted,) = struct.unpack_from(">i", resp, pos)
    pos += 4 + max(naborted, 0) * 16
    (nrec,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    data = resp[pos : pos + max(nrec, 0)]
    batches = []
    at = 0
    while at + 61 <= len(data):
        (base,) = struct.unpack_from(">q", data, at)
        (length,) = struct.unpack_from(">i", data, at + 8)
        (delta,) = struct.unpack_from(">i", data, at + 23)
        if at + 12 + length > len(data):
            break
        batches.append((base, base + delta))
        at += 12 + length
    return err, hw, batches


def test_corrupt_byte_in_old_segment_after_kill9_keeps_acked_data(broker):
    topic, n = "k9-corrupt", 6000
    create_topic(broker.bootstrap, topic, 1, config={"segment.bytes": "65536"})
    d = produce_numbered(broker.bootstrap, topic, n, tag="c", extra_conf={"linger.ms": 1})
    assert not d.errors, d.errors[:3]
    acked = {off for _, _, off in d.acked}
    end = max(acked) + 1
    broker.kill9()

    part_dir = broker.data_dir / f"{topic}-0"
    logs = sorted(p for p in part_dir.iterdir() if p.name.endswith(".log"))
    assert len(logs) >= 4, [p.name for p in logs]
    victim = logs[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    broker.start()
    readable: set[int] = set()
    corrupt: list[int] = []
    offset, hw = 0, None
    for _ in range(20 * n):
        err, hw, batches = fetch_batches(broker.bootstrap, topic, offset)
        if err == CORRUPT_MESSAGE:
            corrupt.append(offset)
            offset += 1
            continue
        assert err == 0, f"fetch at {offset}: error {err}"
        if offset >= hw:
            break
        assert batches, f"no batch and no error at {offset} below the high watermark {hw}"
        for base, last in batches:
            readable.update(range(max(base, offset), last + 1))
        offset = batches[-1][1] + 1
    assert hw == end, f"the log end moved from {end} to {hw}"
    missing = sorted(acked - readable - set(corrupt))
    assert not missing, f"{len(missing)} acknowledged offsets neither readable nor reported: {missing[:10]}"
    assert 0 < len(corrupt) < 1000, f"{len(corrupt)} offsets reported corrupt"
    assert "corrupt data in the log" in broker.log_text()

    # New messages never reuse an offset.
    d2 = produce_numbered(broker.bootstrap, topic, 10, tag="after", start=n)
    assert not d2.errors, d2.errors[:3]
    assert min(off for _, _, off in d2.acked) >= end
