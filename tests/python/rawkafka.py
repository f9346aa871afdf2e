"""Kafka requests written byte by byte, for tests that need requests no
client library sends (huge waits, hostile sizes) or raw control over the
socket (closing it while a request is parked)."""

from __future__ import annotations

import socket
import struct

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_VERSIONS = 18

INT32_MAX = 2**31 - 1


def request_header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str = "ringlog-test") -> bytes:
    cid = client_id.encode()
    return struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def kstring(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_response(s: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    assert 0 < size < 10_000_000, size
    return recv_exact(s, size)


def fetch_request_v4(
    correlation_id: int,
    parts: dict[str, list[tuple[int, int]]],
    max_wait_ms: int,
    min_bytes: int,
    max_bytes: int = 50 * 1024 * 1024,
    partition_max_bytes: int = 1024 * 1024,
) -> bytes:
    """A framed Fetch v4 request: ``parts`` maps topic -> [(partition,
    fetch offset)]."""
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", len(parts))
    for topic, ps in parts.items():
        body += kstring(topic) + struct.pack(">i", len(ps))
        for partition, offset in ps:
            body += struct.pack(">iqi", partition, offset, partition_max_bytes)
    return frame(request_header_v1(API_FETCH, 4, correlation_id) + body)


def parse_fetch_response_v4(resp: bytes) -> tuple[int, dict[tuple[str, int], tuple[int, int, int]]]:
    """(correlation id, {(topic, partition): (error, high watermark, record
    bytes)})."""
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, resp, pos)
        pos += struct.calcsize(fmt)
        return vals

    (corr,) = take(">i")
    take(">i")  # throttle_time_ms
    (ntopics,) = take(">i")
    out = {}
    for _ in range(ntopics):
        (n,) = take(">h")
        topic = resp[pos : pos + n].decode()
        pos += n
        (nparts,) = take(">i")
        for _ in range(nparts):
            partition, err, hw, _lso = take(">ihqq")
            (naborted,) = take(">i")
            pos += max(naborted, 0) * 16
            (nrec,) = take(">i")
            pos += max(nrec, 0)
            out[(topic, partition)] = (err, hw, max(nrec, 0))
    return corr, out


# -- record batches and Produce -------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as record batch v2 uses it."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(n: int) -> bytes:
    """Zigzag varint (record fields)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record_batch(values: list[bytes], timestamp_ms: int, keys: list[bytes] | None = None) -> bytes:
    """An uncompressed record batch v2 (magic 2) holding ``values`` with
    offset deltas 0..n-1, no producer id, a valid CRC."""
    records = b""
    for i, v in enumerate(values):
        key = keys[i] if keys is not None else None
        body = b"\x00" + varint(0) + varint(i)
        body += varint(-1) if key is None else varint(len(key)) + key
        body += varint(len(v)) + v + varint(0)
        records += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, timestamp_ms, timestamp_ms, -1, -1, -1, len(values))
    after_crc += records
    # partitionLeaderEpoch, magic, crc, then the CRC-covered part.
    tail = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(tail)) + tail


def produce_request_v3(correlation_id: int, topic: str, partition: int, batch: bytes, acks: int = 1,
                       timeout_ms: int = 30000) -> bytes:
    """A framed Produce v3 request of one record batch to one partition."""
    body = struct.pack(">h", -1) + struct.pack(">hi", acks, timeout_ms)
    body += struct.pack(">i", 1) + kstring(topic) + struct.pack(">i", 1)
    body += struct.pack(">ii", partition, len(batch)) + batch
    return frame(request_header_v1(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_response_v3(resp: bytes) -> tuple[int, dict[tuple[str, int], tuple[int, int]]]:
    """(correlation id, {(topic, partition): (error, base offset)})."""
    pos = 0
    (corr, ntopics) = struct.unpack_from(">ii", resp, pos)
    pos += 8
    out = {}
    for _ in range(ntopics):
        (n,) = struct.unpack_from(">h", resp, pos)
        pos += 2
        topic = resp[pos : pos + n].decode()
        pos += n
        (nparts,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(nparts):
            partition, err, base, _append_time = struct.unpack_from(">ihqq", resp, pos)
            pos += 22
            out[(topic, partition)] = (err, base)
    return corr, out


def api_versions_request_v0(correlation_id: int) -> bytes:
    """A framed ApiVersions v0 request (header only)."""
    return frame(request_header_v1(API_VERSIONS, 0, correlation_id))


def parse_api_versions_v0(resp: bytes) -> tuple[int, int, int]:
    """(correlation id, error code, number of APIs) of an ApiVersions v0
    response."""
    corr, err, n = struct.unpack_from(">ihi", resp, 0)
    return corr, err, n
