"""Minimal stand-ins for Apache Kafka's bin/kafka-topics.sh and
bin/kafka-acls.sh, used by librdkafka's test suite (KAFKA_PATH).

Only what the suite calls is supported: kafka-topics.sh --create / --alter
--partitions / --delete / --list with --bootstrap-server. The topic
operations go through the broker's admin API (confluent-kafka AdminClient),
so they test the broker like the real tools would. kafka-acls.sh always
fails: ringlog has no ACLs.
"""

import argparse
import sys

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic


def topics(argv):
    ap = argparse.ArgumentParser(prog="kafka-topics.sh")
    ap.add_argument("--bootstrap-server", required=True)
    ap.add_argument("--create", action="store_true")
    ap.add_argument("--alter", action="store_true")
    ap.add_argument("--delete", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--topic")
    ap.add_argument("--partitions", type=int)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--config", action="append", default=[])
    a = ap.parse_args(argv)
    admin = AdminClient({"bootstrap.servers": a.bootstrap_server})
    if a.create:
        cfg = dict(c.split("=", 1) for c in a.config)
        nt = NewTopic(a.topic, num_partitions=a.partitions or 1, replication_factor=a.replication_factor, config=cfg)
        admin.create_topics([nt], request_timeout=30)[a.topic].result(timeout=60)
        print(f"Created topic {a.topic}.")
    elif a.alter:
        if a.partitions is None:
            sys.exit("kafka-topics.sh shim: only --alter --partitions is supported")
        admin.create_partitions([NewPartitions(a.topic, a.partitions)], request_timeout=30)[a.topic].result(timeout=60)
    elif a.delete:
        admin.delete_topics([a.topic], request_timeout=30)[a.topic].result(timeout=60)
    elif a.list:
        for name in sorted(admin.list_topics(timeout=30).topics):
            print(name)
    else:
        sys.exit("kafka-topics.sh shim: unsupported command")


def main():
    tool, argv = sys.argv[1], sys.argv[2:]
    if tool == "kafka-topics.sh":
        topics(argv)
    else:
        sys.exit(f"{tool}: not supported by ringlog (no ACLs / no such tool)")


if __name__ == "__main__":
    main()
