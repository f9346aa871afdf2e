"""Hostile and malformed input on raw sockets, while a well-behaved producer
keeps producing on its own connection."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Producer

from kafkahelpers import consume_all, create_topic, msg_headers, msg_key, msg_value, verify_numbered
from rawkafka import API_METADATA, API_PRODUCE, API_VERSIONS, frame, read_response, request_header_v1
UNSUPPORTED_VERSION = 35

# How long a misbehaving connection may stay open before we call it leaked.
# A safety net only: a healthy broker closes these at once.
CLOSE_WAIT_S = 20.0


def api_versions_request(version: int, correlation_id: int) -> bytes:
    """An ApiVersions request as a client of that version would send it."""
    hdr = request_header_v1(API_VERSIONS, version, correlation_id)
    if version >= 3:
        # flexible header (tagged fields) + body: client software name/version
        # (compact strings) + tagged fields.
        name, ver = b"ringlog-test", b"1.0"
        body = bytes([len(name) + 1]) + name + bytes([len(ver) + 1]) + ver + b"\x00"
        return frame(hdr + b"\x00" + body)
    return frame(hdr)


def connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=10)
    s.settimeout(CLOSE_WAIT_S)
    return s


def wait_closed(s: socket.socket) -> tuple[bool, bytes]:
    """Read until the peer closes. Returns (closed, bytes received)."""
    got = b""
    deadline = time.monotonic() + CLOSE_WAIT_S
    try:
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return False, got
            if not chunk:
                return True, got
            got += chunk
        return False, got
    except (ConnectionResetError, BrokenPipeError):
        return True, got
    finally:
        s.close()


def parse_api_versions_v0(resp: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """Response header v0 + ApiVersions v0 body."""
    corr, err, n = struct.unpack_from(">ihi", resp, 0)
    pos = 10
    apis = {}
    for _ in range(n):
        k, lo, hi = struct.unpack_from(">hhh", resp, pos)
        pos += 6
        apis[k] = (lo, hi)
    return corr, err, apis


def send_and_expect_close(broker, data: bytes, half_close: bool = False, what: str = "") -> None:
    s = connect(broker)
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        s.close()
        return  # already closed by the broker: fine
    if half_close:
        s.shutdown(socket.SHUT_WR)
    closed, _ = wait_closed(s)
    assert closed, f"broker left the connection open after {what}"


class BackgroundProducer:
    """Produces numbered messages on one producer until stopped."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.errors: list = []
        self.acked = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "error_cb": self._on_error,
                "message.timeout.ms": 60000,
            }
        )
        self.t = threading.Thread(target=self._run, daemon=True)

    def _on_error(self, err):
        with self.lock:
            self.errors.append(("error_cb", err))

    def _on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                self.acked += 1
            else:
                self.errors.append(("delivery", err))

    def _run(self):
        i = 0
        while not self.stop_evt.is_set():
            try:
                self.p.produce(
                    self.topic,
                    key=msg_key(i),
                    value=msg_value(i),
                    headers=msg_headers(i, "bg"),
                    on_delivery=self._on_delivery,
                )
                i += 1
            except BufferError:
                self.p.poll(0.01)
                continue
            if i % 100 == 0:
                # ~10k messages/s at most: steady load, bounded volume.
                self.p.poll(0.01)
            if i >= 300_000:
                break
        self.sent = i

    def start(self):
        self.t.start()

    def acked_count(self) -> int:
        with self.lock:
            return self.acked

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acked_count() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.acked_count() >= n, f"background producer stalled: {self.acked_count()} acked, errors {self.errors[:3]}"

    def finish(self) -> int:
        self.stop_evt.set()
        self.t.join(30)
        remaining = self.p.flush(120)
        assert remaining == 0, f"{remaining} background messages undelivered"
        return self.sent


def test_bad_input_does_not_disturb_others(broker):
    topic = "victim"
    create_topic(broker.bootstrap, topic, 2)
    bg = BackgroundProducer(broker.bootstrap, topic)
    bg.start()
    bg.wait_acked(1000)

    rng = random.Random(20240613)
    corr = 1000
    for round_no in range(3):
        # 1. Garbage: an HTTP request (its "size prefix" is ~1.2 GB).
        send_and_expect_close(broker, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", what="an HTTP request")
        # 2. Random bytes, then end of stream.
        send_and_expect_close(broker, rng.randbytes(4096), half_close=True, what="random garbage")
        # 3. Size prefix of ~2 GB (> socket.request.max.bytes): must not be
        #    buffered or allocated; the connection is closed.
        send_and_expect_close(broker, struct.pack(">I", 0x7FFFFFF0) + rng.randbytes(64), what="a 2 GB size prefix")
        # 3b. A negative size prefix.
        send_and_expect_close(broker, struct.pack(">i", -1) + rng.randbytes(16), what="a negative size prefix")
        # 3c. A zero size prefix.
        send_and_expect_close(broker, struct.pack(">i", 0) * 4, what="zero-length frames")
        # 4. Truncated frame: announces 100 bytes, sends 10, then EOF.
        corr += 1
        send_and_expect_close(
            broker,
            struct.pack(">i", 100) + request_header_v1(API_METADATA, 1, corr)[:10],
            half_close=True,
            what="a truncated frame",
        )
        # 4b. A frame shorter than any request header.
        send_and_expect_close(broker, frame(b"\x00\x03"), what="a 2-byte frame")
        # 5. Unsupported versions of other APIs: connection closed.
        corr += 1
        send_and_expect_close(broker, frame(request_header_v1(API_METADATA, 99, corr)), what="Metadata v99")
        corr += 1
        send_and_expect_close(broker, frame(request_header_v1(API_PRODUCE, 0, corr) + b"\x00" * 16), what="Produce v0")
        # 6. Unknown API keys: connection closed.
        for key in (999, 32767, -5):
            corr += 1
            send_and_expect_close(broker, frame(request_header_v1(key, 0, corr)), what=f"unknown API key {key}")
        # 7. ApiVersions with an unsupported version: error 35 + v0 body.
        for version in (99, 5):
            corr += 1
            s = connect(broker)
            try:
                s.sendall(api_versions_request(version, corr))
                resp = read_response(s)
            finally:
                s.close()
            got_corr, err, apis = parse_api_versions_v0(resp)
            assert got_corr == corr
            assert err == UNSUPPORTED_VERSION, f"ApiVersions v{version}: error {err}, expected 35"
            assert API_VERSIONS in apis, f"ApiVersions v{version} error response lists no ApiVersions: {apis}"
            assert apis[API_VERSIONS][1] >= 3
        broker.check_alive()

    # The broker still answers properly on a new connection.
    corr += 1
    s = connect(broker)
    try:
        s.sendall(api_versions_request(0, corr))
        got_corr, err, apis = parse_api_versions_v0(read_response(s))
    finally:
        s.close()
    assert (got_corr, err) == (corr, 0)
    for key in (API_PRODUCE, API_METADATA, API_VERSIONS):
        assert key in apis, f"ApiVersions does not list API {key}"

    # The well-behaved producer noticed nothing and lost nothing.
    bg.wait_acked(bg.acked_count() + 1000)
    sent = bg.finish()
    assert not bg.errors, f"producer saw errors: {bg.errors[:5]}"
    assert bg.acked_count() == sent
    records = consume_all(broker.bootstrap, topic, 2, expected=sent)
    verify_numbered(records, sent, tag="bg")


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_api_versions_supported_versions(broker, version):
    s = connect(broker)
    try:
        s.sendall(api_versions_request(version, 7))
        resp = read_response(s)
    finally:
        s.close()
    corr, err = struct.unpack_from(">ih", resp, 0)
    assert corr == 7
    assert err == 0, f"ApiVersions v{version} answered with error {err}"
