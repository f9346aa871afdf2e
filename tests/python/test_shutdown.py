"""SIGTERM completes however many requests are parked (a hang test).

How long a shutdown takes is recorded in the test output; only a hang (no
exit within SHUTDOWN_HANG_BOUND_S) fails.
"""

from __future__ import annotations

import socket
import time

from conftest import stop_bounded
from kafkahelpers import create_topic
from rawkafka import INT32_MAX, fetch_request_v4

PARKED_CONNECTIONS = 50
FETCHES_PER_CONNECTION = 4  # 200 parked fetches
IDLE_CONNECTIONS = 100
PARTITIONS = 4  # placement alternates: both shards own some
SHUTDOWN_HANG_BOUND_S = 10.0


def test_sigterm_with_200_parked_fetches_and_idle_connections(broker, report):
    topic = "parked"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    socks: list[socket.socket] = []
    try:
        for c in range(PARKED_CONNECTIONS):
            s = socket.create_connection((broker.host, broker.port), timeout=10)
            socks.append(s)
            for k in range(FETCHES_PER_CONNECTION):
                # Caught up on every partition (all empty), waiting "forever"
                # for one byte.
                s.sendall(fetch_request_v4(c * 100 + k, {topic: [(p, 0) for p in range(PARTITIONS)]},
                                           max_wait_ms=INT32_MAX, min_bytes=1))
        idle = [socket.create_connection((broker.host, broker.port), timeout=10) for _ in range(IDLE_CONNECTIONS)]
        socks.extend(idle)
        time.sleep(1.0)  # the fetches reach the broker and park
        answered = 0
        for s in socks[:PARKED_CONNECTIONS]:
            s.setblocking(False)
            try:
                if s.recv(65536):
                    answered += 1
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        assert answered == 0, f"{answered} connections got an answer to a fetch that should be parked"
        broker.check_alive()

        took, hung = stop_bounded(broker, SHUTDOWN_HANG_BOUND_S)
        report("shutdown_seconds", f"{took:.2f} with {PARKED_CONNECTIONS * FETCHES_PER_CONNECTION} parked fetches "
                                   f"on {PARKED_CONNECTIONS} connections and {IDLE_CONNECTIONS} idle connections")
        assert not hung, (
            f"SIGTERM did not stop the broker within {SHUTDOWN_HANG_BOUND_S:.0f}s with "
            f"{PARKED_CONNECTIONS * FETCHES_PER_CONNECTION} fetches parked"
        )
    finally:
        for s in socks:
            s.close()
