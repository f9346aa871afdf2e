"""Static members (KIP-345) whose consumers close without leaving: the
member stays until its session times out, then the group becomes Empty and
can be deleted. librdkafka's 0081 do_test_DescribeConsumerGroups does this
with Kafka's default broker settings (3 s initial rebalance delay) and
expects DeleteGroups to succeed one second after the session timeout."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException

from kafkahelpers import admin_client, create_topic, produce_numbered

SESSION_TIMEOUT_MS = 6000
# Only a hang bound: the group must be deletable well within this.
DEADLINE_S = 60.0


def group_state(admin, group: str) -> str:
    desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
    return desc.state.name


def test_closed_static_members_expire_and_their_groups_can_be_deleted(broker_factory, report):
    b = broker_factory(config={"auto.create.topics.enable": True, "num.partitions": 1})
    topic = "static-expiry"
    create_topic(b.bootstrap, topic, 1)
    produce_numbered(b.bootstrap, topic, 100, "s")
    groups = [f"static-expiry-{i}" for i in range(3)]
    consumers = []
    for i, g in enumerate(groups):
        c = Consumer({
            "bootstrap.servers": b.bootstrap,
            "group.id": g,
            "group.instance.id": f"instance-{i}",
            "client.id": f"client-{i}",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "auto.offset.reset": "earliest",
        })
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + DEADLINE_S
        while got < 100 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                got += 1
        assert got == 100, f"{g}: consumed {got} of 100"
        consumers.append(c)
    admin = admin_client(b.bootstrap)
    for g in groups:
        assert group_state(admin, g) == "STABLE"
    for c in consumers:
        c.close()  # static members do not send LeaveGroup
    closed = time.monotonic()
    for g in groups:
        assert group_state(admin, g) == "STABLE", "a static member left on close"
    # Each group becomes deletable once its member's session has timed out.
    pending = set(groups)
    deleted_after = {}
    while pending and time.monotonic() - closed < DEADLINE_S:
        futs = admin.delete_consumer_groups(sorted(pending), request_timeout=30)
        for g, f in futs.items():
            try:
                f.result(timeout=30)
            except KafkaException as e:
                assert e.args[0].name() == "NON_EMPTY_GROUP", (g, e)
                continue
            pending.discard(g)
            deleted_after[g] = time.monotonic() - closed
        if pending:
            time.sleep(0.25)
    report("deleted after (s)", {g: round(t, 1) for g, t in deleted_after.items()})
    assert not pending, f"groups still not deletable {DEADLINE_S}s after their static members closed: {pending}"
