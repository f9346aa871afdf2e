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


def test_a_second_broker_on_a_used_port_refuses_to_start(broker, tmp_path):
    """Every shard binds the client port with SO_REUSEPORT: without a check,
    a second broker (another data dir) started on a running broker's port
    would share its connections. It must exit with a clear error instead,
    and the first broker keep serving."""
    import subprocess

    second = subprocess.run(
        [
            str(broker.binary),
            "start",
            "--data-dir",
            str(tmp_path / "second"),
            "--listen",
            broker.bootstrap,
            "--advertised-listener",
            broker.bootstrap,
            "--shards",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "already in use" in second.stderr + second.stdout, second.stderr[-2000:]
    # The first one still answers, alone.
    create_topic(broker.bootstrap, "still-served", 1)
    for _ in range(20):
        with socket.create_connection((broker.host, broker.port), timeout=10):
            pass
