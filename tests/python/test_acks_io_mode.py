"""acks=0, acks=1 and acks=all end to end, with the broker's storage in
``ringlog.io.mode`` = "direct" (O_DIRECT, the default) and "buffered".

O_DIRECT is not available everywhere (tmpfs refuses it and the broker then
falls back to buffered IO), so every test here prints the mode the broker
says it really used (its start-up line ``storage io mode: requested=...
effective=...``; "unknown" when it logs none).
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import Producer

from kafkahelpers import (
    consume_all,
    create_topic,
    msg_headers,
    msg_key,
    msg_value,
    produce_numbered,
    verify_numbered,
    watermarks,
)

N = 20_000
PARTITIONS = 3
MODES = ["direct", "buffered"]
# Safety net for "the broker has appended everything it will append".
SETTLE_S = 60.0


@pytest.fixture(params=MODES)
def mode_broker(request, broker_factory, report):
    mode = request.param
    b = broker_factory(config={"auto.create.topics.enable": True, "num.partitions": PARTITIONS,
                               "ringlog.io.mode": mode})
    report("storage io mode", f"requested={mode} effective={b.io_mode()}")
    return b


@pytest.mark.parametrize("acks", ["1", "all"])
def test_acked_messages_exactly_once(mode_broker, acks):
    """Every message acknowledged with acks=1 / acks=all is there exactly
    once, intact, at the offset its delivery report named; offsets are dense
    from 0; the same after a clean restart and after kill -9."""
    b = mode_broker
    topic = f"acks-{acks}"
    create_topic(b.bootstrap, topic, PARTITIONS)
    d = produce_numbered(b.bootstrap, topic, N, tag=acks, extra_conf={"acks": acks})
    assert not d.errors, d.errors[:3]
    assert len(d.acked) == N

    def check(when: str) -> None:
        records = consume_all(b.bootstrap, topic, PARTITIONS, expected=N)
        verify_numbered(records, N, tag=acks)
        at = {(r.partition, r.offset): int(r.key[4:]) for r in records}
        wrong = [(s, p, o) for s, p, o in d.acked if at.get((p, o)) != s]
        assert not wrong, f"{when}: {len(wrong)} delivery reports name the wrong offset, e.g. {wrong[:5]}"

    check("before restart")
    b.restart()
    check("after a clean restart")
    b.kill9()
    b.start()
    check("after kill -9")


def wait_settled(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Watermarks once they stopped moving (acks=0: nothing tells the
    producer when the broker has appended)."""
    last = None
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        marks = watermarks(bootstrap, topic, PARTITIONS)
        if marks == last:
            return marks
        last = marks
        time.sleep(1.0)
    raise AssertionError(f"watermarks of {topic} still moving after {SETTLE_S}s: {last}")


def test_acks_0_in_order_prefix_without_duplicates(mode_broker, report):
    """acks=0: nothing is acknowledged, so nothing can be required to be
    there; what arrived must be, per partition, a prefix of what was sent to
    it, in order, without duplicates, intact, at dense offsets."""
    b = mode_broker
    topic = "acks-0"
    create_topic(b.bootstrap, topic, PARTITIONS)
    errors = []
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "0", "linger.ms": 5, "enable.idempotence": False,
                  "queue.buffering.max.messages": 200000, "error_cb": lambda e: errors.append(e)})
    sent: dict[int, list[int]] = defaultdict(list)
    for i in range(N):
        part = i % PARTITIONS
        while True:
            try:
                p.produce(topic, key=msg_key(i), value=msg_value(i), headers=msg_headers(i, "acks0"), partition=part,
                          on_delivery=lambda e, m: errors.append(e) if e else None)
                break
            except BufferError:
                p.poll(0.05)
        sent[part].append(i)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    assert not errors, errors[:3]

    marks = wait_settled(b.bootstrap, topic)
    records = consume_all(b.bootstrap, topic, PARTITIONS, expected=sum(hw for _, hw in marks.values()))
    per_part = defaultdict(list)
    for r in records:
        per_part[r.partition].append(r)
    arrived = 0
    for part in range(PARTITIONS):
        rs = sorted(per_part[part], key=lambda r: r.offset)
        assert [r.offset for r in rs] == list(range(len(rs))), f"partition {part}: offsets not dense from 0"
        idxs = [int(r.key[4:]) for r in rs]
        assert len(set(idxs)) == len(idxs), f"partition {part}: duplicated messages"
        if idxs != sent[part][: len(idxs)]:
            first = next((k for k, (a, s) in enumerate(zip(idxs, sent[part])) if a != s), len(sent[part]))
            raise AssertionError(
                f"partition {part}: what arrived is not an in-order prefix of what was sent (first difference "
                f"at offset {first}; {len(idxs)} arrived, {len(sent[part])} sent)"
            )
        for r in rs:
            i = int(r.key[4:])
            assert r.value == msg_value(i).encode() and list(r.headers) == msg_headers(i, "acks0"), (part, r.offset)
        assert marks[part] == (0, len(rs))
        arrived += len(rs)
    report("acks=0 messages arrived", f"{arrived} of {N}")
    assert arrived > 0, "no acks=0 message arrived at all"
