"""kill -9 at random moments (issue 8).

Producers write without pause -- acks=all idempotent, acks=all not
idempotent, acks=1 -- to topics with 64 KiB segments (so segments roll all
the time) and a small retention.bytes checked every 500 ms (so old segments
are deleted all the time), a consumer group commits offsets, and topics are
created, filled and deleted over and over. The broker is killed with
SIGKILL at seeded random moments (the seed is printed; RINGLOG_CRASH_SEED
replays one), which land during produce, segment rolls, retention deletes
and topic deletes alike, and restarted. After every restart:

- every acknowledged message is readable at the offset its acknowledgement
  named, holding that message -- unless retention removed it, and then the
  log start offset is past it; an idempotent producer's messages are in the
  log exactly once (a non-idempotent producer may legally have written a
  retried batch twice: only its acknowledged copy is checked);
- offsets are dense from the log start to the high watermark, and the log
  start offset never goes back;
- the high watermark is at least the highest acknowledged offset + 1;
- messages acknowledged after the restart get offsets above every offset
  acknowledged before it (offsets are never reused);
- a committed group offset is the last acknowledged commit or a later one
  whose answer was lost to the kill;
- a topic whose creation was acknowledged (and not deleted since) exists,
  one whose deletion was acknowledged stays deleted.

All bounds here are hang bounds, not performance limits.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import DEFAULT_CONFIG
from kafkahelpers import consumer_conf, create_topic

pytestmark = pytest.mark.timeout(420)

KILLS = 8
SEGMENT_BYTES = 64 * 1024
RETENTION_BYTES = 256 * 1024
BROKER_CONFIG = {
    **DEFAULT_CONFIG,
    # A client still holding metadata of a deleted topic must not bring it
    # back.
    "auto.create.topics.enable": False,
    "log.retention.check.interval.ms": 500,
    "log.segment.bytes": SEGMENT_BYTES,
}
TOPIC_CONFIG = {"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(RETENTION_BYTES),
                "file.delete.delay.ms": "0"}
PARTITIONS = 2
# How long after a restart the producers must have had something
# acknowledged again (a hang bound).
RESUME_BOUND_S = 60.0
# Producer pacing: messages per second per producer (values ~200 bytes:
# a 64 KiB segment rolls every ~0.3 s per partition).
RATE = 600
GROUP = "crash-group"
GROUP_TOPIC = "crash-group-topic"

PRODUCERS = {
    "crash-idempotent": {"acks": "all", "enable.idempotence": True},
    "crash-acks-all": {"acks": "all", "enable.idempotence": False},
    "crash-acks-1": {"acks": 1, "enable.idempotence": False},
}


def value(topic: str, i: int) -> bytes:
    head = f"{topic}|{i:09d}|".encode()
    return head + bytes((i + k) % 251 for k in range(200 - len(head)))


class PacedProducer:
    """One producer, alive for the whole test (its producer id and
    sequence numbers carry across the kills), writing numbered messages."""

    def __init__(self, bootstrap: str, topic: str, conf: dict):
        self.topic = topic
        self.idempotent = bool(conf.get("enable.idempotence"))
        self.lock = threading.Lock()
        # i -> (partition, offset, monotonic time the ack reached the client)
        self.acked: dict[int, tuple[int, int, float]] = {}
        self.sent_at: dict[int, float] = {}
        self.failed: list = []
        self.fatal: list = []
        self.next_i = 0
        self.stop_event = threading.Event()
        full = {
            "bootstrap.servers": bootstrap,
            "linger.ms": 2,
            "message.timeout.ms": 300000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 300,
            "queue.buffering.max.messages": 200000,
            "error_cb": self._on_error,
        }
        full.update(conf)
        self.p = Producer(full)
        self.thread = threading.Thread(target=self._run, name=f"producer-{topic}", daemon=True)

    def _on_error(self, err) -> None:
        if err.fatal():
            with self.lock:
                self.fatal.append(err)

    def _on_delivery(self, err, msg, i: int) -> None:
        with self.lock:
            if err is not None:
                self.failed.append((i, err))
                return
            # When the ack arrived (librdkafka's own measure from produce()
            # to the ack; the delivery callback itself may run later).
            lat = msg.latency()
            at = self.sent_at[i] + lat if lat is not None and lat >= 0 else time.monotonic()
            self.acked[i] = (msg.partition(), msg.offset(), at)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            if self.next_i > RATE * (time.monotonic() - t0):
                self.p.poll(0.005)
                continue
            i = self.next_i
            with self.lock:
                self.sent_at[i] = time.monotonic()
            try:
                self.p.produce(self.topic, value=value(self.topic, i), partition=i % PARTITIONS,
                               on_delivery=lambda e, m, i=i: self._on_delivery(e, m, i))
            except BufferError:
                self.p.poll(0.01)
                continue
            self.next_i += 1
            self.p.poll(0)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        left = self.p.flush(120)
        if left:
            with self.lock:
                self.failed.append((None, f"{left} messages neither acknowledged nor failed 120 s after the end"))

    def snapshot(self) -> dict[int, tuple[int, int, float]]:
        with self.lock:
            return dict(self.acked)


class Committer:
    """Commits ever larger offsets of a group (simple consumer, no
    membership), one synchronous commit after another."""

    def __init__(self, bootstrap: str):
        self.c = Consumer(consumer_conf(bootstrap, **{"group.id": GROUP, "enable.partition.eof": False}))
        self.lock = threading.Lock()
        self.acked = 0  # highest acknowledged commit (offset of partition 0; partition 1 gets offset + 1)
        self.attempted = 0  # highest offset ever sent
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="committer", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            n += 1
            with self.lock:
                self.attempted = n
            try:
                self.c.commit(offsets=[TopicPartition(GROUP_TOPIC, 0, n), TopicPartition(GROUP_TOPIC, 1, n + 1)],
                              asynchronous=False)
            except KafkaException:
                time.sleep(0.05)
                continue
            with self.lock:
                self.acked = n
            time.sleep(0.02)

    def window(self) -> tuple[int, int]:
        with self.lock:
            return self.acked, self.attempted


class TopicChurn:
    """Creates a topic, fills it with a few segments, deletes it; again.
    Remembers for each topic the last operation that was acknowledged and
    whether one whose outcome is unknown came after it."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.lock = threading.Lock()
        self.state: dict[str, tuple[str, bool]] = {}  # topic -> (last acked op, unknown op since)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="topic-churn", daemon=True)

    def _set(self, topic: str, op: str | None) -> None:
        with self.lock:
            last, _ = self.state.get(topic, ("none", False))
            self.state[topic] = (op, False) if op else (last, True)

    def _run(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 5000})
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": 1, "linger.ms": 5, "message.timeout.ms": 5000})
        k = 0
        while not self.stop_event.is_set():
            topic = f"churn-{k}"
            k += 1
            self._set(topic, None)
            try:
                admin.create_topics([NewTopic(topic, 1, 1, config=TOPIC_CONFIG)], request_timeout=5)[topic].result(10)
                self._set(topic, "created")
            except KafkaException:
                continue
            for j in range(1500):  # ~4 segments
                try:
                    p.produce(topic, value=value(topic, j), partition=0)
                except BufferError:
                    p.poll(0.01)
            p.flush(10)
            self._set(topic, None)
            try:
                admin.delete_topics([topic], request_timeout=5)[topic].result(10)
                self._set(topic, "deleted")
            except KafkaException:
                pass

    def snapshot(self) -> dict[str, tuple[str, bool]]:
        with self.lock:
            return dict(self.state)


def log_bounds(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    c = Consumer(consumer_conf(bootstrap))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(PARTITIONS)}
    finally:
        c.close()


def read_log(bootstrap: str, topic: str, bounds: dict[int, tuple[int, int]]) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of each partition from its log start up to the high
    watermark given. Retention may move the start while we read: reading
    then goes on at the new start (the caller checks density from the final
    log start)."""
    out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    reached = {p: lo - 1 for p, (lo, _) in bounds.items()}
    c = Consumer(consumer_conf(bootstrap, **{"auto.offset.reset": "earliest", "enable.partition.eof": False}))
    try:
        c.assign([TopicPartition(topic, p, lo) for p, (lo, _) in bounds.items()])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(reached[p] >= hi - 1 for p, (_, hi) in bounds.items()):
                return out
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(f"reading {topic}: {m.error()}")
                reached[m.partition()] = max(reached[m.partition()], m.offset())
                if m.offset() < bounds[m.partition()][1]:
                    out[m.partition()].append((m.offset(), m.value()))
        raise AssertionError(f"reading {topic} up to its high watermarks {bounds} did not finish")
    finally:
        c.close()


class Checker:
    def __init__(self, bootstrap_fn):
        self.bootstrap_fn = bootstrap_fn
        self.log_start: dict[tuple[str, int], int] = defaultdict(int)
        self.problems: list[str] = []
        # How many acknowledged messages were found at their offsets (the
        # others were removed by retention): shows what the run covered.
        self.verified = 0

    def check_topic(self, prod: PacedProducer, acked_before_kill: dict, restart: int) -> None:
        topic = prod.topic
        bootstrap = self.bootstrap_fn()
        bounds = log_bounds(bootstrap, topic)
        where = f"after restart {restart}, {topic}"
        # The high watermark covers every acknowledged offset.
        for p, (lo, hi) in bounds.items():
            top = max((o for q, o, _ in acked_before_kill.values() if q == p), default=-1)
            if hi < top + 1:
                self.problems.append(f"{where}-{p}: high watermark {hi} below the highest acknowledged offset "
                                     f"{top} + 1")
            if lo < self.log_start[(topic, p)]:
                self.problems.append(f"{where}-{p}: log start offset went back from "
                                     f"{self.log_start[(topic, p)]} to {lo}")
            self.log_start[(topic, p)] = max(lo, self.log_start[(topic, p)])
        log = read_log(bootstrap, topic, bounds)
        final_start = {p: lo for p, (lo, _) in log_bounds(bootstrap, topic).items()}
        for p, recs in log.items():
            # Dense from the log start to the high watermark (what retention
            # removed while we read is below the final log start).
            kept = [o for o, _ in recs if o >= final_start[p]]
            want = list(range(final_start[p], bounds[p][1]))
            if kept != want:
                holes = sorted(set(want) - set(kept))[:5]
                self.problems.append(f"{where}-{p}: offsets not dense from the log start {final_start[p]} to the "
                                     f"high watermark {bounds[p][1]}: missing e.g. {holes}, "
                                     f"{len(kept) - len(set(kept))} read twice")
        at = {(p, o): v for p, recs in log.items() for o, v in recs}
        lost, wrong = [], []
        for i, (p, o, _) in acked_before_kill.items():
            if o < final_start[p]:
                continue  # removed by retention
            got = at.get((p, o))
            if got is None:
                if o >= final_start[p]:
                    lost.append((i, p, o))
            elif got != value(topic, i):
                wrong.append((i, p, o, got[:30]))
            else:
                self.verified += 1
        if lost:
            self.problems.append(f"{where}: {len(lost)} acknowledged messages not readable at their offsets "
                                 f"(and above the log start), first (i, partition, offset): {sorted(lost)[:5]}")
        if wrong:
            self.problems.append(f"{where}: {len(wrong)} acknowledged offsets hold another message, "
                                 f"first: {sorted(wrong)[:3]}")
        if prod.idempotent:
            seen = defaultdict(list)
            for (p, o), v in at.items():
                seen[v].append((p, o))
            dups = [pos for pos in seen.values() if len(pos) > 1]
            if dups:
                self.problems.append(f"{where}: {len(dups)} messages of the idempotent producer are in the log "
                                     f"more than once, e.g. {dups[:3]}")


@pytest.fixture
def seed() -> int:
    s = int(os.environ.get("RINGLOG_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"crash seed: {s} (replay: RINGLOG_CRASH_SEED={s})")
    return s


def test_kill9_at_random_moments(broker_factory, seed, report):
    rng = random.Random(seed)
    broker = broker_factory(config=BROKER_CONFIG)
    for topic in PRODUCERS:
        create_topic(broker.bootstrap, topic, PARTITIONS, TOPIC_CONFIG)
    create_topic(broker.bootstrap, GROUP_TOPIC, PARTITIONS)
    producers = [PacedProducer(broker.bootstrap, t, conf) for t, conf in PRODUCERS.items()]
    committer = Committer(broker.bootstrap)
    churn = TopicChurn(broker.bootstrap)
    checker = Checker(lambda: broker.bootstrap)
    for pr in producers:
        pr.start()
    committer.thread.start()
    churn.thread.start()

    moments = []
    try:
        for k in range(1, KILLS + 1):
            delay = rng.uniform(0.3, 4.0)
            moments.append(round(delay, 2))
            time.sleep(delay)
            broker.kill9()
            killed_at = time.monotonic()
            # The commit and topic operations whose outcome is known by now;
            # an operation under way at the kill counts as unknown.
            commit_window = committer.window()
            topics_before = churn.snapshot()
            broker.start()
            check_after_restart(broker, k, killed_at, producers, committer, commit_window, churn, topics_before,
                                checker)
    finally:
        for pr in producers:
            pr.stop()
        committer.stop_event.set()
        churn.stop_event.set()
        committer.thread.join(30)
        churn.thread.join(60)
        committer.c.close()

    report("crash", {"seed": seed, "kill_delays_s": moments,
                     "acked": {pr.topic: len(pr.acked) for pr in producers},
                     "acked_messages_verified_at_their_offsets": checker.verified,
                     "log_start_offsets": {f"{t}-{p}": lo for (t, p), lo in checker.log_start.items()},
                     "commits_acked": committer.acked, "churn_topics": len(churn.state)})
    for pr in producers:
        with pr.lock:
            if pr.fatal:
                checker.problems.append(f"{pr.topic}: fatal producer errors {pr.fatal[:3]}")
            if pr.failed:
                checker.problems.append(f"{pr.topic}: {len(pr.failed)} messages failed, first {pr.failed[:3]}")
    if not checker.verified:
        checker.problems.append("no acknowledged message was found at its offset: the run checked nothing")
    assert not checker.problems, f"seed {seed}:\n" + "\n".join(checker.problems)


def check_after_restart(broker, k, killed_at, producers, committer, commit_window, churn, topics_before,
                        checker) -> None:
    # New acks come (bounded wait); by then every delivery report of an ack
    # that arrived before the kill was served too.
    restarted = time.monotonic()
    deadline = restarted + RESUME_BOUND_S
    for pr in producers:
        while time.monotonic() < deadline:
            if any(t > restarted for _, _, t in pr.snapshot().values()):
                break
            time.sleep(0.05)
        else:
            checker.problems.append(f"after restart {k}: {pr.topic} got nothing acknowledged within "
                                    f"{RESUME_BOUND_S:.0f}s")
    for pr in producers:
        acked = pr.snapshot()
        before = {i: a for i, a in acked.items() if a[2] < killed_at}
        top_before: dict[int, int] = defaultdict(lambda: -1)
        for p, o, _ in before.values():
            top_before[p] = max(top_before[p], o)
        reused = [(i, p, o) for i, (p, o, t) in acked.items() if t > restarted and o <= top_before[p]]
        if reused:
            checker.problems.append(f"after restart {k}: {pr.topic}: {len(reused)} new acks at offsets at or below "
                                    f"earlier acknowledged ones, first {sorted(reused)[:3]}")
        checker.check_topic(pr, before, k)
    # Committed group offsets: at least the last commit acknowledged before
    # the kill; at most the last one sent by now.
    acked_commit = commit_window[0]
    c = Consumer(consumer_conf(broker.bootstrap, **{"group.id": GROUP}))
    try:
        got = c.committed([TopicPartition(GROUP_TOPIC, 0), TopicPartition(GROUP_TOPIC, 1)], timeout=30)
    finally:
        c.close()
    attempted = committer.window()[1]
    offs = [tp.offset for tp in got]
    if acked_commit and not (acked_commit <= offs[0] <= attempted and offs[1] == offs[0] + 1):
        checker.problems.append(f"after restart {k}: committed offsets {offs}, expected the commit of at least "
                                f"{acked_commit} (acknowledged before the kill), at most {attempted} (sent)")
    # Topics created / deleted (those that no operation touched since the
    # kill).
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    present = set(admin.list_topics(timeout=30).topics)
    topics_now = churn.snapshot()
    for topic, (op, unknown) in topics_before.items():
        if unknown or topics_now.get(topic) != (op, unknown):
            continue
        if op == "created" and topic not in present:
            checker.problems.append(f"after restart {k}: topic {topic} (creation acknowledged) is gone")
        if op == "deleted" and topic in present:
            checker.problems.append(f"after restart {k}: topic {topic} (deletion acknowledged) is back")
