"""A latency probe: a well-behaved acks=all producer sending one small
message every ``interval_s`` to its own topic, and a consumer reading them
back, run beside a client under test.

What the probe checks is a *stall detector*, not a latency target: every
probe message must be acknowledged, each within ``ack_bound_s`` (a hang
bound, generous next to the milliseconds a healthy broker needs), and read
back exactly once at the offset its acknowledgement named. Latencies are
only reported (p50/p99/max), never asserted.

The probe topic has one partition per shard (placement alternates between
shards), and messages go round-robin over its partitions, so that a stalled
shard delays probe acks whichever shard it is. The producer is idempotent:
a retry after a slow answer must not duplicate a message, so a duplicate
is a broker bug, not client noise.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafkahelpers import create_topic

# A probe message whose ack takes longer than this is a stall.
ACK_BOUND_S = 2.0
# How long a probe message may take to be read back once it was
# acknowledged, at the end of the run (a hang bound).
READ_BACK_BOUND_S = 30.0


@dataclass
class ProbeResult:
    sent: int = 0
    acked: int = 0
    latencies: list = field(default_factory=list)  # seconds, one per ack
    problems: list = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))]

    def summary(self) -> str:
        if not self.latencies:
            return f"sent {self.sent}, acked {self.acked}"
        return (
            f"sent {self.sent}, acked {self.acked}, ack latency p50 {self.percentile(0.5) * 1000:.1f} ms, "
            f"p99 {self.percentile(0.99) * 1000:.1f} ms, max {max(self.latencies) * 1000:.1f} ms"
        )


class LatencyProbe:
    def __init__(
        self,
        bootstrap: str,
        topic: str = "latency-probe",
        partitions: int = 2,
        interval_s: float = 0.05,
        ack_bound_s: float = ACK_BOUND_S,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.interval_s = interval_s
        self.ack_bound_s = ack_bound_s
        self.lock = threading.Lock()
        self.sent: dict[int, tuple[int, float]] = {}  # seq -> (partition, wall time sent)
        self.acked: dict[int, tuple[int, int, float]] = {}  # seq -> (partition, offset, latency s)
        self.failed: list = []  # (seq, error)
        self.client_errors: list = []
        self.consumed: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.consumer_errors: list = []
        self._stop_producing = threading.Event()
        self._stop_consuming = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- running -----------------------------------------------------------
    def start(self, warm_up_s: float = 30.0) -> None:
        """Create the topic, start producing and consuming, and return once
        the first probe message was acknowledged and read back."""
        create_topic(self.bootstrap, self.topic, self.partitions)
        self._threads = [
            threading.Thread(target=self._produce, name="probe-producer", daemon=True),
            threading.Thread(target=self._consume, name="probe-consumer", daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + warm_up_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.acked and self.consumed:
                    return
            time.sleep(0.02)
        raise AssertionError(f"latency probe: nothing acknowledged and read back within {warm_up_s:.0f}s")

    def _message(self, seq: int) -> bytes:
        return b"probe-%08d" % seq

    def _produce(self) -> None:
        p = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.timeout.ms": 120000,
                "error_cb": self._on_error,
            }
        )
        seq = 0
        next_at = time.monotonic()
        while not self._stop_producing.is_set():
            part = seq % self.partitions
            with self.lock:
                self.sent[seq] = (part, time.monotonic())
            p.produce(
                self.topic,
                value=self._message(seq),
                partition=part,
                on_delivery=lambda err, msg, s=seq: self._on_delivery(err, msg, s),
            )
            seq += 1
            next_at += self.interval_s
            while True:
                left = next_at - time.monotonic()
                if left <= 0:
                    break
                p.poll(left)
            if time.monotonic() - next_at > 1.0:
                next_at = time.monotonic()  # the test process itself was held up: do not burst
        # Every message sent must be acknowledged: a bounded flush.
        left = p.flush(READ_BACK_BOUND_S)
        if left:
            with self.lock:
                msg = f"{left} probe messages not acknowledged {READ_BACK_BOUND_S:.0f}s after the probe stopped"
                self.failed.append((None, msg))

    def _on_error(self, err) -> None:
        with self.lock:
            self.client_errors.append(err)

    def _on_delivery(self, err, msg, seq: int) -> None:
        now = time.monotonic()
        with self.lock:
            if err is not None:
                self.failed.append((seq, err))
                return
            # librdkafka's own measure from produce() to the ack (not
            # delayed by this process's scheduling); the wall time as a
            # fallback.
            lat = msg.latency()
            if lat is None or lat < 0:
                lat = now - self.sent[seq][1]
            self.acked[seq] = (msg.partition(), msg.offset(), lat)

    def _consume(self) -> None:
        c = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "latency-probe",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            c.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
            while not self._stop_consuming.is_set():
                for m in c.consume(num_messages=1000, timeout=0.2):
                    with self.lock:
                        if m.error() is not None:
                            self.consumer_errors.append(m.error())
                        else:
                            self.consumed.append((m.partition(), m.offset(), m.value()))
        finally:
            c.close()

    def stop(self) -> ProbeResult:
        """Stop producing, wait (bounded) until every acknowledged message
        was read back, stop, and check."""
        self._stop_producing.set()
        self._threads[0].join(READ_BACK_BOUND_S + 30)
        deadline = time.monotonic() + READ_BACK_BOUND_S
        while time.monotonic() < deadline:
            with self.lock:
                want = {(p, o) for p, o, _ in self.acked.values()}
                have = {(p, o) for p, o, _ in self.consumed}
            if want <= have:
                break
            time.sleep(0.05)
        self._stop_consuming.set()
        self._threads[1].join(30)
        return self.result()

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    # -- checking ------------------------------------------------------------
    def result(self) -> ProbeResult:
        with self.lock:
            sent = dict(self.sent)
            acked = dict(self.acked)
            failed = list(self.failed)
            client_errors = list(self.client_errors)
            consumed = list(self.consumed)
            consumer_errors = list(self.consumer_errors)
        r = ProbeResult(sent=len(sent), acked=len(acked), latencies=[lat for _, _, lat in acked.values()])
        if failed:
            r.problems.append(f"{len(failed)} probe messages failed, first: {failed[:3]}")
        unacked = sorted(set(sent) - set(acked) - {s for s, _ in failed})
        if unacked:
            r.problems.append(f"{len(unacked)} probe messages never acknowledged, first: {unacked[:5]}")
        fatal = [e for e in client_errors if e.fatal()]
        if fatal:
            r.problems.append(f"fatal probe producer errors: {fatal[:3]}")
        late = sorted((lat, s) for s, (_, _, lat) in acked.items() if lat > self.ack_bound_s)
        if late:
            r.problems.append(
                f"{len(late)} of {len(acked)} probe acks took longer than the {self.ack_bound_s:.1f}s stall bound "
                f"(slowest {late[-1][0]:.2f}s, probe #{late[-1][1]})"
            )
        hard_consumer_errors = [e for e in consumer_errors if e.code() != KafkaError._PARTITION_EOF]
        if hard_consumer_errors:
            r.problems.append(f"probe consumer errors: {hard_consumer_errors[:3]}")
        # Read back: every ack exactly once at its offset, nothing else.
        seen: dict[tuple[int, int], list[bytes]] = {}
        for p, o, v in consumed:
            seen.setdefault((p, o), []).append(v)
        dup_reads = {k: v for k, v in seen.items() if len(v) > 1}
        if dup_reads:
            r.problems.append(f"probe consumer got {len(dup_reads)} offsets twice, e.g. {list(dup_reads)[:3]}")
        wrong = []
        missing = []
        for s, (p, o, _) in sorted(acked.items()):
            got = seen.get((p, o))
            if got is None:
                missing.append((s, p, o))
            elif got[0] != self._message(s):
                wrong.append((s, p, o, got[0]))
        if missing:
            r.problems.append(
                f"{len(missing)} acknowledged probe messages not read back within {READ_BACK_BOUND_S:.0f}s, "
                f"first (seq, partition, offset): {missing[:5]}"
            )
        if wrong:
            r.problems.append(f"{len(wrong)} probe offsets hold another message, first: {wrong[:3]}")
        values = [v for _, _, v in consumed]
        if len(values) != len(set(values)):
            r.problems.append("a probe message is in the log more than once")
        acked_offsets = {(p, o) for p, o, _ in acked.values()}
        stray = sorted(k for k in seen if k not in acked_offsets)
        if stray:
            r.problems.append(f"{len(stray)} probe-topic records nobody acknowledged, first: {stray[:5]}")
        for part in range(self.partitions):
            offs = sorted(o for p, o in seen if p == part)
            if offs != list(range(len(offs))):
                r.problems.append(f"probe partition {part}: offsets not dense from 0: {offs[:5]}...{offs[-5:]}")
        return r
