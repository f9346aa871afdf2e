"""The Prometheus endpoint reports what the broker did, in the text format."""

import re
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import free_port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def value(text: str, series: str) -> float:
    m = re.search(r"^" + re.escape(series) + r" ([0-9.e+-]+)$", text, re.M)
    assert m, f"{series} missing from:\n{text}"
    return float(m.group(1))


def test_metrics_count_traffic(broker_factory):
    port = free_port()
    broker = broker_factory({"ringlog.metrics.listen": f"127.0.0.1:{port}"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(500):
        p.produce("metered", value=b"x" * 100, key=str(i).encode())
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "m", "enable.auto.commit": False})
    c.assign([TopicPartition("metered", 0, 0)])
    got = 0
    while got < 500:
        msgs = c.consume(500, timeout=10)
        assert msgs, "consumer stalled"
        got += sum(1 for m in msgs if m.error() is None)
    c.close()

    text = scrape(port)
    # Every line is a comment or "name{labels} value".
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r"^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$", line), line
    assert value(text, 'ringlog_topic_messages_in_total{topic="metered"}') == 500
    assert value(text, 'ringlog_topic_bytes_in_total{topic="metered"}') > 500 * 100
    assert value(text, 'ringlog_topic_bytes_out_total{topic="metered"}') > 500 * 100
    assert value(text, 'ringlog_requests_total{api="Produce"}') >= 1
    assert value(text, 'ringlog_requests_total{api="Fetch"}') >= 1
    assert value(text, "ringlog_fsync_latency_seconds_count{}") >= 1
    assert value(text, 'ringlog_shard_partitions{shard="0"}') + value(text, 'ringlog_shard_partitions{shard="1"}') >= 1
    assert 'ringlog_shard_task_queue_delay_seconds{shard="1",quantile="0.99"}' in text


def test_metrics_unknown_path_is_404(broker_factory):
    port = free_port()
    broker_factory({"ringlog.metrics.listen": f"127.0.0.1:{port}"})
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404
