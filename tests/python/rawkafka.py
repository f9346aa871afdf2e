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
