"""Topic administration, offsets lookups and cluster description through
confluent-kafka's AdminClient / Consumer."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from kafkahelpers import admin_client, consume_all, consumer_conf, create_topic, wait_for_topic

BROKER_CONFIG = {
    "auto.create.topics.enable": True,
    "num.partitions": 3,
    "log.segment.bytes": 1048576,
    "message.max.bytes": 1048588,
}


@pytest.fixture
def cfg_broker(broker_factory):
    return broker_factory(config=BROKER_CONFIG)


def topic_names(admin) -> set[str]:
    return set(admin.list_topics(timeout=30).topics)


def error_code_of(future) -> int:
    with pytest.raises(KafkaException) as ei:
        future.result(timeout=30)
    return ei.value.args[0].code()


def test_create_list_describe_delete(cfg_broker):
    admin = admin_client(cfg_broker.bootstrap)
    topic = "admin-topic"
    configs = {"retention.ms": "3600000", "cleanup.policy": "delete", "segment.bytes": "2097152"}

    # validate_only: accepted, but nothing is created.
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=5, replication_factor=1, config=configs)],
        validate_only=True,
        request_timeout=30,
    )
    fs[topic].result(timeout=30)
    assert topic not in topic_names(admin)

    fs = admin.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1, config=configs)])
    fs[topic].result(timeout=30)
    wait_for_topic(cfg_broker.bootstrap, topic, 5)
    md = admin.list_topics(timeout=30)
    assert topic in md.topics
    assert sorted(md.topics[topic].partitions) == [0, 1, 2, 3, 4]
    broker_ids = [b.id for b in md.brokers.values()]
    assert len(broker_ids) == 1
    for p in md.topics[topic].partitions.values():
        assert p.leader == broker_ids[0]
        assert p.replicas == [broker_ids[0]]
        assert p.isrs == [broker_ids[0]]

    # describe_topics (Metadata) agrees.
    desc = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=30)
    assert desc.name == topic
    assert len(desc.partitions) == 5

    # Creating it again: TOPIC_ALREADY_EXISTS.
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    assert error_code_of(fs[topic]) == KafkaError.TOPIC_ALREADY_EXISTS

    # Topic configs: the ones we set, plus defaults.
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(timeout=30)
    assert entries["retention.ms"].value == "3600000"
    assert not entries["retention.ms"].is_default
    assert entries["cleanup.policy"].value == "delete"
    assert entries["segment.bytes"].value == "2097152"
    for name in ("max.message.bytes", "retention.bytes", "compression.type"):
        assert name in entries, f"topic config {name} missing from DescribeConfigs"
        assert entries[name].value is not None

    # Broker configs: what the config file set, and defaults.
    bres = ConfigResource(ResourceType.BROKER, str(broker_ids[0]))
    bentries = admin.describe_configs([bres])[bres].result(timeout=30)
    assert bentries["num.partitions"].value == "3"
    assert bentries["log.segment.bytes"].value == "1048576"
    assert bentries["auto.create.topics.enable"].value == "true"
    assert bentries["message.max.bytes"].value == "1048588"
    defaults = [e for e in bentries.values() if e.is_default]
    assert defaults, "no broker config reported as a default"

    # CreatePartitions 5 -> 8; the new partitions take writes.
    fs = admin.create_partitions([NewPartitions(topic, 8)])
    fs[topic].result(timeout=30)
    wait_for_topic(cfg_broker.bootstrap, topic, 8)
    p = Producer({"bootstrap.servers": cfg_broker.bootstrap, "acks": "all", "topic.metadata.refresh.interval.ms": 500})
    reports = []
    for part in range(8):
        p.produce(topic, value=f"v{part}", partition=part, on_delivery=lambda e, m: reports.append((e, m.partition())))
    assert p.flush(60) == 0
    assert all(e is None for e, _ in reports), reports
    assert sorted(pt for _, pt in reports) == list(range(8))
    # Shrinking is refused.
    fs = admin.create_partitions([NewPartitions(topic, 4)])
    assert error_code_of(fs[topic]) == KafkaError.INVALID_PARTITIONS

    # Delete.
    fs = admin.delete_topics([topic], operation_timeout=30)
    fs[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while topic in topic_names(admin) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic not in topic_names(admin)
    # Deleting it again: UNKNOWN_TOPIC_OR_PART.
    fs = admin.delete_topics([topic], operation_timeout=30)
    assert error_code_of(fs[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize(
    "name",
    ["bad topic", "bad/topic", "ünïcode", "x" * 250, ".", "..", "a*b"],
    ids=["space", "slash", "unicode", "too-long", "dot", "dotdot", "star"],
)
def test_invalid_topic_names_rejected(broker, name):
    admin = admin_client(broker.bootstrap)
    fs = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    assert error_code_of(fs[name]) == KafkaError.TOPIC_EXCEPTION  # 17 INVALID_TOPIC_EXCEPTION
    assert name not in topic_names(admin)


def test_invalid_create_arguments(broker):
    admin = admin_client(broker.bootstrap)
    fs = admin.create_topics([NewTopic("zero-parts", num_partitions=0, replication_factor=1)])
    assert error_code_of(fs["zero-parts"]) == KafkaError.INVALID_PARTITIONS
    fs = admin.create_topics([NewTopic("bad-config", num_partitions=1, replication_factor=1,
                                       config={"cleanup.policy": "no-such-policy"})])
    assert error_code_of(fs["bad-config"]) == KafkaError.INVALID_CONFIG
    assert not {"zero-parts", "bad-config"} & topic_names(admin)


def test_kafka_topic_configs_accepted_and_described(broker):
    """Every topic property Kafka 4 knows is accepted on create (here the
    log-cleaner ones a compacted topic is typically created with) and comes
    back from DescribeConfigs as a topic override; defaults of the others are
    Kafka's. Values of the wrong type or range are INVALID_CONFIG."""
    admin = admin_client(broker.bootstrap)
    overrides = {
        "cleanup.policy": "compact",
        "delete.retention.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "max.compaction.lag.ms": "60000",
        "segment.jitter.ms": "10",
        "preallocate": "false",
    }
    fs = admin.create_topics([NewTopic("cleaner-configs", num_partitions=1, replication_factor=1,
                                       config=overrides)])
    fs["cleaner-configs"].result(timeout=30)
    res = ConfigResource(ResourceType.TOPIC, "cleaner-configs")
    described = admin.describe_configs([res])[res].result(timeout=30)
    for name, value in overrides.items():
        assert described[name].value == value, name
        assert described[name].source == 1  # DYNAMIC_TOPIC_CONFIG
    assert described["file.delete.delay.ms"].value == "60000"
    assert described["message.timestamp.after.max.ms"].value == "3600000"
    assert described["follower.replication.throttled.replicas"].value == ""

    for name, bad in [("min.cleanable.dirty.ratio", "1.5"), ("delete.retention.ms", "soon"),
                      ("remote.storage.enable", "true"), ("no.such.config", "1")]:
        topic = "bad-" + name.replace(".", "-")
        fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={name: bad})])
        assert error_code_of(fs[topic]) == KafkaError.INVALID_CONFIG, name
        assert topic not in topic_names(admin)


def test_list_offsets(broker):
    topic = "offsets"
    create_topic(broker.bootstrap, topic, 1)
    base = 1_700_000_000_000
    n = 100
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(n):
        # Timestamps base, base+10, ...; a few batches so the lookup has to
        # search across batches.
        p.produce(topic, value=f"m{i}", partition=0, timestamp=base + 10 * i)
        if i % 10 == 9:
            p.flush(30)
    assert p.flush(30) == 0

    c = Consumer(consumer_conf(broker.bootstrap))
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        assert (lo, hi) == (0, n)
        cached = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False)
        assert cached == (0, n)

        def for_time(ts):
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=30)
            assert tp.error is None, tp.error
            return tp.offset

        assert for_time(base - 1000) == 0
        assert for_time(base) == 0
        assert for_time(base + 1) == 1
        assert for_time(base + 10 * 37) == 37
        assert for_time(base + 10 * 37 - 5) == 37
        assert for_time(base + 10 * (n - 1)) == n - 1
        # Past the last timestamp: no such offset (-1, OFFSET_END).
        assert for_time(base + 10 * n + 1) == OFFSET_END
    finally:
        c.close()

    # The same through AdminClient.list_offsets.
    admin = admin_client(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    for spec, expected in (
        (OffsetSpec.earliest(), 0),
        (OffsetSpec.latest(), n),
        (OffsetSpec.for_timestamp(base + 10 * 50), 50),
    ):
        res = admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(timeout=30)
        assert res.offset == expected, (spec, res.offset, expected)


def test_auto_create_on_produce(cfg_broker):
    topic = "auto-created-topic"
    admin = admin_client(cfg_broker.bootstrap)
    assert topic not in topic_names(admin)
    p = Producer({"bootstrap.servers": cfg_broker.bootstrap, "acks": "all", "message.timeout.ms": 60000})
    reports = []
    for i in range(30):
        p.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=lambda e, m: reports.append((e, m)))
    assert p.flush(90) == 0
    assert [e for e, _ in reports if e is not None] == []
    md = admin.list_topics(topic=topic, timeout=30)
    assert topic in md.topics
    assert len(md.topics[topic].partitions) == BROKER_CONFIG["num.partitions"]
    records = consume_all(cfg_broker.bootstrap, topic, BROKER_CONFIG["num.partitions"], expected=30)
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(30))


def test_no_auto_create_when_disabled(broker_factory):
    b = broker_factory(config={"auto.create.topics.enable": False})
    admin = admin_client(b.bootstrap)
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 3000})
    reports = []
    p.produce("not-auto-created", value="x", on_delivery=lambda e, m: reports.append(e))
    p.flush(30)
    assert len(reports) == 1 and reports[0] is not None
    assert reports[0].code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._MSG_TIMED_OUT,
    ), reports[0]
    assert "not-auto-created" not in topic_names(admin)


def test_describe_cluster(broker):
    admin = admin_client(broker.bootstrap)
    desc = admin.describe_cluster(request_timeout=30).result(timeout=30)
    assert desc.cluster_id, "no cluster id"
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert desc.controller is not None and desc.controller.id == node.id
    # Metadata agrees on the cluster id and the node.
    md = admin.list_topics(timeout=30)
    assert md.cluster_id == desc.cluster_id
    assert [b.id for b in md.brokers.values()] == [node.id]
    # The cluster id survives a restart.
    broker.restart()
    admin2 = admin_client(broker.bootstrap)  # keep the client alive while the future runs
    desc2 = admin2.describe_cluster(request_timeout=30).result(timeout=30)
    assert desc2.cluster_id == desc.cluster_id


def produce_one(bootstrap: str, topic: str, size: int, partition: int = 0):
    """Produce one message of `size` bytes; the delivery error or None."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "message.max.bytes": 10_000_000, "message.timeout.ms": 30000})
    reports = []
    # Keyed: compacted topics refuse records without a key.
    p.produce(topic, key=b"k", value=b"x" * size, partition=partition, on_delivery=lambda e, m: reports.append(e))
    p.flush(60)
    assert len(reports) == 1
    return reports[0]


def incremental(admin, rtype, name, ops, validate_only=False):
    """IncrementalAlterConfigs on one resource: ops are (name, op, value)."""
    res = ConfigResource(rtype, name, incremental_configs=[
        ConfigEntry(n, v, incremental_operation=op) for n, op, v in ops])
    return admin.incremental_alter_configs([res], validate_only=validate_only, request_timeout=30)[res]


def described(admin, rtype, name):
    res = ConfigResource(rtype, name)
    return admin.describe_configs([res], request_timeout=30)[res].result(timeout=30)


def test_alter_topic_configs(broker):
    """IncrementalAlterConfigs SET/DELETE/APPEND/SUBTRACT and AlterConfigs on
    a topic: DescribeConfigs shows the new values and sources, a lowered
    max.message.bytes is enforced on the next produce, and the overrides
    survive a restart."""
    topic = "alter-me"
    create_topic(broker.bootstrap, topic, 2, config={"retention.ms": "3600000"})
    admin = admin_client(broker.bootstrap)
    assert produce_one(broker.bootstrap, topic, 5000) is None

    # validate_only: accepted, nothing changes.
    incremental(admin, ResourceType.TOPIC, topic, [("segment.bytes", AlterConfigOpType.SET, "1048576")],
                validate_only=True).result(timeout=30)
    assert described(admin, ResourceType.TOPIC, topic)["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    incremental(admin, ResourceType.TOPIC, topic, [
        ("max.message.bytes", AlterConfigOpType.SET, "2000"),
        ("cleanup.policy", AlterConfigOpType.APPEND, "compact"),
        ("retention.ms", AlterConfigOpType.DELETE, None),
    ]).result(timeout=30)
    d = described(admin, ResourceType.TOPIC, topic)
    assert d["max.message.bytes"].value == "2000"
    assert d["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert d["cleanup.policy"].value == "delete,compact"
    assert d["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert d["retention.ms"].value == "604800000"
    assert d["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # The new limit applies to the next produce, on both partitions (one
    # per shard).
    for partition in (0, 1):
        err = produce_one(broker.bootstrap, topic, 5000, partition)
        assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
        assert produce_one(broker.bootstrap, topic, 1000, partition) is None

    incremental(admin, ResourceType.TOPIC, topic, [("cleanup.policy", AlterConfigOpType.SUBTRACT, "delete")]
                ).result(timeout=30)
    assert described(admin, ResourceType.TOPIC, topic)["cleanup.policy"].value == "compact"

    # The overrides are durable.
    broker.restart()
    admin = admin_client(broker.bootstrap)
    d = described(admin, ResourceType.TOPIC, topic)
    assert (d["max.message.bytes"].value, d["cleanup.policy"].value) == ("2000", "compact")
    err = produce_one(broker.bootstrap, topic, 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err

    # AlterConfigs replaces the whole override set.
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.bytes": "1048576"})
    admin.alter_configs([res], request_timeout=30)[res].result(timeout=30)
    d = described(admin, ResourceType.TOPIC, topic)
    assert d["segment.bytes"].value == "1048576"
    assert d["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert d["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert d["cleanup.policy"].value == "delete"
    assert produce_one(broker.bootstrap, topic, 5000) is None


def test_alter_configs_errors(broker):
    topic = "alter-errors"
    create_topic(broker.bootstrap, topic, 1)
    admin = admin_client(broker.bootstrap)
    set_ = AlterConfigOpType.SET

    def inc_code(rtype, name, ops):
        return error_code_of(incremental(admin, rtype, name, ops))

    assert inc_code(ResourceType.TOPIC, "no-such-topic", [("retention.ms", set_, "1000")]) \
        == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert inc_code(ResourceType.TOPIC, topic, [("max.message.bytes", set_, "big")]) == KafkaError.INVALID_CONFIG
    assert inc_code(ResourceType.TOPIC, topic, [("no.such.config", set_, "1")]) == KafkaError.INVALID_CONFIG
    assert inc_code(ResourceType.TOPIC, topic, [("cleanup.policy", set_, "shred")]) == KafkaError.INVALID_CONFIG
    assert inc_code(ResourceType.TOPIC, topic, [("retention.ms", AlterConfigOpType.APPEND, "1")]) \
        == KafkaError.INVALID_CONFIG
    # One bad config fails the whole resource: nothing was applied.
    assert inc_code(ResourceType.TOPIC, topic, [("retention.ms", set_, "1000"), ("segment.bytes", set_, "1")]) \
        == KafkaError.INVALID_CONFIG
    assert described(admin, ResourceType.TOPIC, topic)["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    res = ConfigResource(ResourceType.TOPIC, "no-such-topic", set_config={"retention.ms": "1000"})
    assert error_code_of(admin.alter_configs([res], request_timeout=30)[res]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "soon"})
    assert error_code_of(admin.alter_configs([res], request_timeout=30)[res]) == KafkaError.INVALID_CONFIG

    # No dynamic broker configs: a clear error, and the broker carries on.
    node = str(list(admin.list_topics(timeout=30).brokers)[0])
    fut = incremental(admin, ResourceType.BROKER, node, [("log.retention.ms", set_, "1000")])
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "dynamic broker configs" in ei.value.args[0].str()
    res = ConfigResource(ResourceType.BROKER, node, set_config={"num.partitions": "3"})
    assert error_code_of(admin.alter_configs([res], request_timeout=30)[res]) == KafkaError.INVALID_REQUEST
    assert described(admin, ResourceType.TOPIC, topic)["retention.ms"].value == "604800000"


def test_group_configs(broker):
    """KIP-848 group configs: described with their defaults for any group
    (Kafka 4), set within the broker's bounds, durable."""
    admin = admin_client(broker.bootstrap)
    d = described(admin, ResourceType.GROUP, "some-group")
    assert d["consumer.session.timeout.ms"].value == "45000"
    assert d["consumer.heartbeat.interval.ms"].value == "5000"
    assert d["consumer.session.timeout.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    incremental(admin, ResourceType.GROUP, "some-group",
                [("consumer.session.timeout.ms", AlterConfigOpType.SET, "50000")]).result(timeout=30)
    for code_case in (("consumer.session.timeout.ms", "1000"), ("consumer.heartbeat.interval.ms", "100"),
                      ("no.such.group.config", "1")):
        fut = incremental(admin, ResourceType.GROUP, "some-group", [(code_case[0], AlterConfigOpType.SET, code_case[1])])
        assert error_code_of(fut) == KafkaError.INVALID_CONFIG, code_case
    broker.restart()
    admin = admin_client(broker.bootstrap)
    d = described(admin, ResourceType.GROUP, "some-group")
    assert d["consumer.session.timeout.ms"].value == "50000"
    assert d["consumer.session.timeout.ms"].source == ConfigSource.GROUP_CONFIG.value
    assert described(admin, ResourceType.GROUP, "other-group")["consumer.session.timeout.ms"].value == "45000"
    incremental(admin, ResourceType.GROUP, "some-group",
                [("consumer.session.timeout.ms", AlterConfigOpType.DELETE, None)]).result(timeout=30)
    assert described(admin, ResourceType.GROUP, "some-group")["consumer.session.timeout.ms"].value == "45000"


def test_alter_configs_kafka_python(broker):
    """kafka-python's admin client: IncrementalAlterConfigs (its default
    against a broker that supports it) and AlterConfigs."""
    from kafka.admin import AlterConfigOp, KafkaAdminClient
    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType as KpType

    topic = "kp-alter"
    create_topic(broker.bootstrap, topic, 1)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = KpResource(KpType.TOPIC, topic, configs={"retention.ms": "1234",
                                                        "cleanup.policy": (AlterConfigOp.APPEND, "compact")})
        assert kp.alter_configs([res]) == {"topic": {topic: "OK"}}
        d = described(admin_client(broker.bootstrap), ResourceType.TOPIC, topic)
        assert (d["retention.ms"].value, d["cleanup.policy"].value) == ("1234", "delete,compact")
        res = KpResource(KpType.TOPIC, topic, configs={"segment.bytes": "1048576"})
        assert kp.alter_configs([res], incremental=False) == {"topic": {topic: "OK"}}
        d = described(admin_client(broker.bootstrap), ResourceType.TOPIC, topic)
        # kafka-python's AlterConfigs fills in the other dynamic keys it read
        # first, so they stay.
        assert (d["segment.bytes"].value, d["retention.ms"].value) == ("1048576", "1234")
    finally:
        kp.close()
