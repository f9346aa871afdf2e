"""Long polling: a fetch that has nothing to return parks on the broker and
is answered as soon as data arrives, without holding its shard meanwhile.

Every client here waits far longer (fetch.wait.max.ms = 60 s) than the hang
bound the test allows for the message to arrive (20 s): a broker that never
wakes a parked fetch, and only answers when its wait expires, fails. The
bounds are hang bounds, not latency limits: a healthy broker answers in
milliseconds.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from conftest import DEFAULT_CONFIG, free_port, stop_bounded
from kafkahelpers import consume_all, consumer_conf, create_topic
from rawkafka import INT32_MAX, fetch_request_v4, parse_fetch_response_v4, read_response

pytestmark = pytest.mark.timeout(300)

# The clients' own fetch wait: far above every bound below.
LONG_WAIT_MS = 60_000
# A message produced while a fetch is parked must reach the consumer within
# this long (a third of LONG_WAIT_MS).
WAKE_BOUND_S = 20.0
# Safety net for setup loops.
SETUP_S = 60.0
# After a producer's ack the consumer's next fetch is sent at once; this
# pause only makes sure it reached the broker and parked before the next
# message is produced (if it had not, the test could pass without a parked
# fetch, but never fail wrongly).
PARK_PAUSE_S = 1.0


def long_poll_consumer(bootstrap: str, **extra) -> Consumer:
    conf = consumer_conf(
        bootstrap,
        **{
            "fetch.wait.max.ms": LONG_WAIT_MS,
            "fetch.min.bytes": 1,
            # librdkafka wants socket.timeout.ms >= fetch.wait.max.ms + 1 s.
            "socket.timeout.ms": LONG_WAIT_MS + 60_000,
            "enable.partition.eof": False,
        },
    )
    conf.update(extra)
    return Consumer(conf)


def produce_acked(bootstrap: str, topic: str, partition: int, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    errs = []
    for v in values:
        p.produce(topic, value=v, partition=partition, on_delivery=lambda e, m: errs.append(e) if e else None)
    assert p.flush(30) == 0, "produce not acknowledged"
    assert not errs, errs


def poll_values(c: Consumer, n: int, bound_s: float, what: str) -> list[tuple[int, int, bytes]]:
    """Poll until n messages arrived: [(partition, offset, value)]."""
    got = []
    deadline = time.monotonic() + bound_s
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append((m.partition(), m.offset(), m.value()))
    assert len(got) == n, (
        f"{what}: {len(got)} of {n} messages within {bound_s:.0f}s although the consumer waits "
        f"{LONG_WAIT_MS // 1000}s per fetch: a parked fetch was not woken by the new data"
    )
    return got


def test_parked_fetch_wakes_on_produce(broker):
    """confluent-kafka: a fetch parked on a caught-up partition is answered
    when a message arrives, long before its own wait expires (three times)."""
    topic = "long-poll"
    create_topic(broker.bootstrap, topic, 1)
    produce_acked(broker.bootstrap, topic, 0, [b"primer"])
    c = long_poll_consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        # The primer is there at once; after it the consumer is caught up.
        assert poll_values(c, 1, SETUP_S, "primer") == [(0, 0, b"primer")]
        for i in range(1, 4):
            time.sleep(PARK_PAUSE_S)
            value = f"produced while the consumer waits #{i}".encode()
            produce_acked(broker.bootstrap, topic, 0, [value])
            assert poll_values(c, 1, WAKE_BOUND_S, f"message {i}") == [(0, i, value)]
    finally:
        c.close()


def test_kafka_python_parked_fetch_wakes(broker):
    """kafka-python (fetch_max_wait_ms = 60 s): the message is produced from
    another thread while poll() is blocked on a parked fetch."""
    topic = "long-poll-kpy"
    create_topic(broker.bootstrap, topic, 1)
    produce_acked(broker.bootstrap, topic, 0, [b"primer"])
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=LONG_WAIT_MS,
        request_timeout_ms=LONG_WAIT_MS + 60_000,
        api_version=None,
    )
    tp = KTopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)

    def poll_for(n: int, bound_s: float) -> list[bytes]:
        got = []
        deadline = time.monotonic() + bound_s
        while len(got) < n and time.monotonic() < deadline:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            for recs in consumer.poll(timeout_ms=left_ms).values():
                got.extend(r.value for r in recs)
        return got

    produced_at = []

    def produce_later():
        time.sleep(PARK_PAUSE_S)
        produced_at.append(time.monotonic())
        produce_acked(broker.bootstrap, topic, 0, [b"wake up"])

    try:
        assert poll_for(1, SETUP_S) == [b"primer"]
        t = threading.Thread(target=produce_later)
        t.start()
        try:
            got = poll_for(1, PARK_PAUSE_S + WAKE_BOUND_S)
        finally:
            t.join()
        assert got == [b"wake up"], (
            f"got {got} within {WAKE_BOUND_S:.0f}s of the produce although kafka-python waits "
            f"{LONG_WAIT_MS // 1000}s per fetch: the parked fetch was not woken"
        )
    finally:
        consumer.close()


def test_long_poll_over_partitions_on_both_shards_wakes_for_any(broker):
    """One consumer, one fetch over 4 partitions (placement alternates
    between the 2 shards): data on any one of them wakes the fetch."""
    topic, partitions = "long-poll-multi", 4
    create_topic(broker.bootstrap, topic, partitions)
    for p in range(partitions):
        produce_acked(broker.bootstrap, topic, p, [f"primer-{p}".encode()])
    c = long_poll_consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    try:
        got = poll_values(c, partitions, SETUP_S, "primers")
        assert sorted(got) == [(p, 0, f"primer-{p}".encode()) for p in range(partitions)]
        # One partition at a time, last first (so the lowest-numbered
        # partition of the fetch is never the only one that can wake it).
        for p in reversed(range(partitions)):
            time.sleep(PARK_PAUSE_S)
            value = f"wake via partition {p}".encode()
            produce_acked(broker.bootstrap, topic, p, [value])
            assert poll_values(c, 1, WAKE_BOUND_S, f"partition {p}") == [(p, 1, value)]
    finally:
        c.close()


# -- a parked consumer with a large fetch.min.bytes beside an acks=all producer

ACK_BOUND_S = 1.5
RAW_BOUND_S = 10.0
PROBE_MESSAGES = 24
PROBE_GAP_S = 0.25
MIN_BYTES_CONSUMERS = 8


def test_min_bytes_consumer_does_not_delay_producer_on_same_partition(broker):
    """Caught-up consumers with fetch.min.bytes=1000000 and
    fetch.wait.max.ms=2000 (a common throughput setting) sit parked in 2 s
    rounds, woken by every new message but never getting their megabyte.
    Meanwhile a probe producer with acks=all on the same partition (so the
    same shard) sends one message at a time: every ack must come within
    ACK_BOUND_S (a hang bound: a healthy broker acks in milliseconds; a
    shard that spins for the consumer's whole wait delays acks by ~2 s).
    What is counted is acks that came in time, not latencies."""
    topic = "min-bytes"
    create_topic(broker.bootstrap, topic, 1)
    stop = threading.Event()
    consumed = []
    consumer_errors = []

    def consume():
        c = Consumer(
            consumer_conf(
                broker.bootstrap,
                **{"fetch.min.bytes": 1_000_000, "fetch.wait.max.ms": 2000, "enable.partition.eof": False},
            )
        )
        c.assign([TopicPartition(topic, 0, 0)])
        try:
            while not stop.is_set():
                m = c.poll(0.1)
                if m is None:
                    continue
                if m.error() is not None:
                    consumer_errors.append(m.error())
                    continue
                consumed.append(m.offset())
        finally:
            c.close()

    # Several consumers (connections): at least one lands on the
    # partition's own shard but for a chance of 2^-(CONSUMERS-1).
    threads = [threading.Thread(target=consume, daemon=True) for _ in range(MIN_BYTES_CONSUMERS)]
    for t in threads:
        t.start()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    late = []
    acked = 0
    try:
        # Let the consumer connect and park first.
        time.sleep(2 * PARK_PAUSE_S)
        for i in range(PROBE_MESSAGES):
            errs = []
            p.produce(topic, value=b"probe-%d" % i, partition=0, on_delivery=lambda e, m: errs.append(e))
            if p.flush(ACK_BOUND_S) != 0:
                late.append(i)
                assert p.flush(60) == 0, "a probe message was never acknowledged"
            assert errs == [None], errs
            acked += 1
            time.sleep(PROBE_GAP_S)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if late:
            # A broker in that state may not stop on SIGTERM either; the
            # test stops it, so that its teardown reports nothing twice.
            stop_bounded(broker, RAW_BOUND_S)
    assert not consumer_errors, consumer_errors[:3]
    assert acked == PROBE_MESSAGES
    assert not late, (
        f"{len(late)} of {PROBE_MESSAGES} acks=all probe messages were not acknowledged within "
        f"{ACK_BOUND_S}s while a fetch.min.bytes=1000000 consumer was parked on the same partition "
        f"(probe numbers {late[:10]})"
    )
    # The data is all there.
    records = consume_all(broker.bootstrap, topic, 1, expected=PROBE_MESSAGES)
    assert sorted(r.offset for r in records) == list(range(PROBE_MESSAGES))


# -- raw Fetch with max_wait_ms and min_bytes at 2^31-1 -------------------------


def raw_connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# A connection lands on one of the two shards (SO_REUSEPORT hashing), and
# what a parked fetch does to a shard may depend on whether the partition is
# on the connection's own shard: several connections, each with a fetch of
# one partition, cover both cases but for a chance of 2^-(RAW_CONNS-1).
RAW_CONNS = 8


def park_huge_fetches(broker, topic: str, partitions: int, offset: int) -> list[socket.socket]:
    """RAW_CONNS connections, connection i with a raw Fetch of partition
    i % partitions at ``offset`` with max_wait_ms and min_bytes at 2^31-1;
    asserts that none is answered (they are parked)."""
    socks = []
    try:
        for i in range(RAW_CONNS):
            s = raw_connect(broker)
            socks.append(s)
            s.sendall(fetch_request_v4(i + 1, {topic: [(i % partitions, offset)]}, max_wait_ms=INT32_MAX,
                                       min_bytes=INT32_MAX))
        time.sleep(PARK_PAUSE_S)
        for s in socks:
            s.setblocking(False)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            finally:
                s.setblocking(True)
                s.settimeout(30)
            if data:
                raise AssertionError(f"a huge fetch was answered instead of parked: {data[:64]!r}")
            raise AssertionError("the broker closed a connection with a parked huge fetch")
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def seeded_topic(broker, topic: str, partitions: int = 2) -> None:
    """A topic over both shards with one message per partition, so that a
    fetch from offset 0 has data, but far less than min_bytes."""
    create_topic(broker.bootstrap, topic, partitions)
    for p in range(partitions):
        produce_acked(broker.bootstrap, topic, p, [b"seed-%d" % p])


def served_within(broker, topic: str, partitions: int, tag: str, bound_s: float) -> list[str]:
    """Produce (acks=all) one message to every partition and read them all
    back; the problems seen within ``bound_s`` (empty when served)."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                  "message.timeout.ms": 60000})
    errs = []
    for part in range(partitions):
        p.produce(topic, value=f"{tag}-{part}".encode(), partition=part,
                  on_delivery=lambda e, m: errs.append(e) if e else None)
    left = p.flush(bound_s)
    problems = []
    if left:
        problems.append(f"{left} of {partitions} acks=all messages not acknowledged within {bound_s:.0f}s")
        p.purge()
    if errs:
        problems.append(f"delivery errors {errs[:3]}")
    return problems


def test_huge_raw_fetch_parks_and_others_are_served(broker):
    """While Fetches with max_wait_ms = min_bytes = 2^31-1 are parked on
    partitions of both shards, other clients produce (acks=all) to the same
    partitions and read them back."""
    topic = "huge-wait"
    seeded_topic(broker, topic)
    socks = park_huge_fetches(broker, topic, 2, offset=0)
    try:
        problems = served_within(broker, topic, 2, "meanwhile", RAW_BOUND_S)
        assert not problems, "; ".join(problems) + " while a huge fetch is parked"
        records = consume_all(broker.bootstrap, topic, 2, expected=4, **{"socket.timeout.ms": 10000})
        assert sorted((r.partition, r.offset) for r in records) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    finally:
        for s in socks:
            s.close()
        _, hung = stop_bounded(broker, RAW_BOUND_S)
    assert not hung, f"SIGTERM did not stop the broker within {RAW_BOUND_S:.0f}s after the fetches' sockets closed"


def test_huge_raw_fetch_released_when_its_socket_closes(broker):
    """Closing the sockets of parked huge Fetches releases them: afterwards the
    broker is idle (its CPU time grows by less than half of the wall time:
    nothing spins for a request whose client is gone) and serves acks=all
    produce on the same partitions."""
    topic = "huge-wait-close"
    seeded_topic(broker, topic)
    for s in park_huge_fetches(broker, topic, 2, offset=0):
        s.close()
    try:
        time.sleep(PARK_PAUSE_S)  # the close reaches the broker
        window = 3.0
        cpu0, t0 = broker_cpu_seconds(broker), time.monotonic()
        time.sleep(window)
        cpu = broker_cpu_seconds(broker) - cpu0
        wall = time.monotonic() - t0
        assert cpu < 0.5 * wall, (
            f"after the parked fetch's socket closed, the idle broker used {cpu:.2f}s of CPU in {wall:.2f}s: "
            "something still spins for it"
        )
        problems = served_within(broker, topic, 2, "after-close", RAW_BOUND_S)
        assert not problems, "; ".join(problems) + " after the parked fetch's socket closed"
    finally:
        _, hung = stop_bounded(broker, RAW_BOUND_S)
    assert not hung, f"SIGTERM did not stop the broker within {RAW_BOUND_S:.0f}s after the fetch's socket closed"


def test_sigterm_with_huge_raw_fetch_parked(broker, report):
    """SIGTERM stops the broker while huge Fetches are parked (hang bound
    RAW_BOUND_S)."""
    topic = "huge-wait-term"
    seeded_topic(broker, topic)
    socks = park_huge_fetches(broker, topic, 2, offset=0)
    try:
        took, hung = stop_bounded(broker, RAW_BOUND_S)
        report("shutdown_seconds_with_parked_huge_fetches", f"{took:.2f}")
        assert not hung, f"SIGTERM did not stop the broker within {RAW_BOUND_S:.0f}s with huge fetches parked"
    finally:
        for s in socks:
            s.close()


def parked_counts(metrics_port: int) -> tuple[int, int]:
    """(parked fetches, parked watches) summed over the shards."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()

    def total(name: str) -> int:
        values = re.findall(r"^" + name + r'\{shard="\d+"\} (\S+)$', text, re.M)
        assert values, f"{name} missing from the metrics"
        return int(sum(float(v) for v in values))

    return total("ringlog_shard_fetches_parked"), total("ringlog_shard_fetch_watches_parked")


def wait_for_counts(metrics_port: int, want: tuple[int, int], bound_s: float, what: str) -> None:
    deadline = time.monotonic() + bound_s
    while True:
        got = parked_counts(metrics_port)
        if got == want:
            return
        assert time.monotonic() < deadline, f"{what}: (parked fetches, watches) = {got}, expected {want}"
        time.sleep(0.1)


def test_parked_fetches_are_counted_and_released_when_their_sockets_close(broker_factory):
    """Each parked huge Fetch shows as one parked fetch (on its connection's
    shard) and one parked watch (on its partition's shard, the same or the
    other one); closing the sockets releases all of them, on both shards."""
    port = free_port()
    broker = broker_factory({**DEFAULT_CONFIG, "ringlog.metrics.listen": f"127.0.0.1:{port}"})
    topic = "huge-wait-count"
    seeded_topic(broker, topic)
    socks = park_huge_fetches(broker, topic, 2, offset=0)
    try:
        wait_for_counts(port, (RAW_CONNS, RAW_CONNS), SETUP_S, "while parked")
    finally:
        for s in socks:
            s.close()
    wait_for_counts(port, (0, 0), RAW_BOUND_S, "after the sockets closed")
    _, hung = stop_bounded(broker, RAW_BOUND_S)
    assert not hung


MANY_CONNS = 200
FETCHES_PER_CONN = 1


def test_sigterm_with_many_parked_fetches(broker_factory, report):
    """200 huge Fetches parked (one on each of 200 connections, as a broker
    works on one Fetch per connection at a time; on partitions of both
    shards): SIGTERM stops the broker within the hang bound, and every
    parked fetch gets its response before the broker exits (a shutdown
    drains the connections, bounded: they write the responses of what they
    have in flight, then close)."""
    port = free_port()
    broker = broker_factory({**DEFAULT_CONFIG, "ringlog.metrics.listen": f"127.0.0.1:{port}"})
    topic = "huge-wait-many"
    seeded_topic(broker, topic)
    socks = []
    try:
        for c in range(MANY_CONNS):
            s = raw_connect(broker)
            socks.append(s)
            reqs = b"".join(
                fetch_request_v4(i + 1, {topic: [((c + i) % 2, 0)]}, max_wait_ms=INT32_MAX, min_bytes=INT32_MAX)
                for i in range(FETCHES_PER_CONN)
            )
            s.sendall(reqs)
        n = MANY_CONNS * FETCHES_PER_CONN
        wait_for_counts(port, (n, n), SETUP_S, "while parked")
        took, hung = stop_bounded(broker, RAW_BOUND_S)
        report("shutdown_seconds_with_200_parked_fetches", f"{took:.2f}")
        assert not hung, f"SIGTERM did not stop the broker within {RAW_BOUND_S:.0f}s with {n} fetches parked"
        answered = 0
        lost = []
        for c, s in enumerate(socks):
            s.settimeout(RAW_BOUND_S)
            for i in range(FETCHES_PER_CONN):
                try:
                    corr, _ = parse_fetch_response_v4(read_response(s))
                except (ConnectionError, OSError) as e:
                    lost.append(f"connection {c}, fetch {i + 1}: {e}")
                    break
                assert corr == i + 1, f"response {corr} where {i + 1} was due"
                answered += 1
            else:
                # Then a clean close (EOF), nothing more.
                try:
                    rest = s.recv(1)
                except OSError as e:
                    rest = repr(e).encode()
                if rest:
                    lost.append(f"connection {c}: {rest!r} after its responses instead of a clean close")
        report("parked_fetches_answered_at_shutdown", f"{answered} of {n}")
        assert not lost, f"{len(lost)} parked fetches got no response before the broker exited, e.g. {lost[:3]}"
    finally:
        for s in socks:
            s.close()


# -- the broker's fetch.max.bytes caps every response -----------------------------

FETCH_MAX = 4096


def test_broker_fetch_max_bytes_caps_the_response(broker_factory):
    """fetch.max.bytes = 4096: a Fetch asking for 50 MiB over partitions on
    both shards gets at most 4096 bytes of records, yet at least one batch;
    a single batch larger than the cap is returned whole (KIP-74)."""
    broker = broker_factory({**DEFAULT_CONFIG, "fetch.max.bytes": FETCH_MAX})
    topic = "capped"
    create_topic(broker.bootstrap, topic, 2)
    for part in range(2):
        # Separate acked produces: separate batches of ~1 KB.
        for i in range(12):
            produce_acked(broker.bootstrap, topic, part, [b"%d" % i + b"x" * 1000])
    with raw_connect(broker) as s:
        s.sendall(fetch_request_v4(1, {topic: [(0, 0), (1, 0)]}, max_wait_ms=0, min_bytes=1))
        corr, parts = parse_fetch_response_v4(read_response(s))
    assert corr == 1
    assert all(err == 0 for err, _, _ in parts.values()), parts
    total = sum(n for _, _, n in parts.values())
    assert 0 < total <= FETCH_MAX, f"{total} record bytes in a response capped at {FETCH_MAX}: {parts}"

    big = "capped-big"
    create_topic(broker.bootstrap, big, 1)
    produce_acked(broker.bootstrap, big, 0, [b"y" * (3 * FETCH_MAX)])
    with raw_connect(broker) as s:
        s.sendall(fetch_request_v4(2, {big: [(0, 0)]}, max_wait_ms=0, min_bytes=1))
        corr, parts = parse_fetch_response_v4(read_response(s))
    assert corr == 2
    err, _, n = parts[(big, 0)]
    assert err == 0 and n > 3 * FETCH_MAX, f"the first batch must come whole: {parts}"


def broker_cpu_seconds(broker) -> float:
    """utime + stime of the broker process (all its threads)."""
    with open(f"/proc/{broker.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

