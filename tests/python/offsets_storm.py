"""The offsets commit storm (scripts/offsets-storm.sh): how large
__consumer_offsets grows and how long the group coordinator takes to load
it after a restart, with the log cleaner on (the default) or off.

- load: ``--groups`` consumers, one per group (no membership: simple
  commits, as Kafka Connect and stream processors issue them), each
  committing ever larger offsets for ``--partitions`` partitions per commit,
  asynchronously, from several threads, until ``--commits`` commit records
  are written in all;
- every second: the bytes of __consumer_offsets' segments (.log files of
  all its partitions) into the summary's maximum;
- at the end: the size on disk, then a SIGTERM restart and a kill -9
  restart, each timed to "listening" and to "every group's committed
  offsets read back right" (OffsetFetch answers only once the coordinator
  has loaded its partition of __consumer_offsets).

Prints a summary line per phase; exit status 0 only if every committed
offset read back right.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

from conftest import Broker, ringlog_binary  # noqa: E402
from kafkahelpers import create_topic  # noqa: E402

TOPIC = "storm-committed"


def offsets_bytes(data_dir: Path) -> int:
    """Bytes of __consumer_offsets' segment files (.log: the index files are
    preallocated and say nothing of the growth)."""
    total = 0
    for d in data_dir.glob("__consumer_offsets-*"):
        for f in d.iterdir():
            if f.suffix == ".log":
                try:
                    total += f.stat().st_size
                except OSError:
                    pass
    return total


def committer(bootstrap: str, group: str, partitions: int, commits: int, last: dict, errors: list) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        n = 0
        offset = 0
        while n < commits:
            offset += 1
            tps = [TopicPartition(TOPIC, p, offset * partitions + p) for p in range(partitions)]
            # One synchronous commit in 1,000 keeps librdkafka's queue bounded.
            c.commit(offsets=tps, asynchronous=(offset % 1000 != 0))
            n += partitions
        tps = [TopicPartition(TOPIC, p, offset * partitions + p) for p in range(partitions)]
        c.commit(offsets=tps, asynchronous=False)
        last[group] = {p: offset * partitions + p for p in range(partitions)}
    except KafkaException as e:
        errors.append(f"{group}: {e}")
    finally:
        c.close()


def read_back(bootstrap: str, expected: dict, deadline_s: float) -> tuple[float, list[str]]:
    """Seconds until every group's committed offsets read back as expected."""
    t0 = time.monotonic()
    pending = dict(expected)
    wrong: list[str] = []
    while pending and time.monotonic() - t0 < deadline_s:
        for group, offsets in list(pending.items()):
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
            try:
                got = c.committed([TopicPartition(TOPIC, p) for p in offsets], timeout=10)
                have = {tp.partition: tp.offset for tp in got}
                if have == offsets:
                    del pending[group]
            except KafkaException:
                pass  # still loading (COORDINATOR_LOAD_IN_PROGRESS is retried inside)
            finally:
                c.close()
    for group, offsets in pending.items():
        wrong.append(f"{group}: committed offsets not read back within {deadline_s:.0f}s")
    return time.monotonic() - t0, wrong


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=2_000_000, help="commit records in all (default 2,000,000)")
    ap.add_argument("--groups", type=int, default=16)
    ap.add_argument("--partitions", type=int, default=8, help="partitions per commit")
    ap.add_argument("--segment-bytes", type=int, default=None, help="offsets.topic.segment.bytes (default Kafka's)")
    ap.add_argument("--no-cleaner", action="store_true", help="log.cleaner.enable=false, for comparison")
    ap.add_argument("--keep", action="store_true", help="keep the broker's data dir")
    args = ap.parse_args()

    config: dict = {"log.cleaner.backoff.ms": 1000}
    if args.segment_bytes:
        config["offsets.topic.segment.bytes"] = args.segment_bytes
    if args.no_cleaner:
        config["log.cleaner.enable"] = False
    workdir = Path(tempfile.mkdtemp(prefix="offsets-storm-", dir=HERE.parents[1] / "target"))
    broker = Broker(ringlog_binary(), workdir, config, shards=2)
    broker.start()
    ok = True
    try:
        create_topic(broker.bootstrap, TOPIC, args.partitions)
        per_group = args.commits // args.groups
        last: dict = {}
        errors: list = []
        threads = [
            threading.Thread(
                target=committer,
                args=(broker.bootstrap, f"storm-{g}", args.partitions, per_group, last, errors),
                daemon=True,
            )
            for g in range(args.groups)
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        peak = 0
        while any(t.is_alive() for t in threads):
            peak = max(peak, offsets_bytes(broker.data_dir))
            time.sleep(1)
        took = time.monotonic() - t0
        total = per_group * args.groups
        print(
            f"storm: {total:,} commit records from {args.groups} groups in {took:.1f} s "
            f"({total / took:,.0f}/s); cleaner {'off' if args.no_cleaner else 'on'}; "
            f"__consumer_offsets peak {peak / 2**20:.1f} MiB",
            flush=True,
        )
        if errors:
            print("commit errors: " + "; ".join(errors[:5]), flush=True)
            ok = False
        # Let the cleaner catch up with what the storm left dirty.
        settle = 0 if args.no_cleaner else 30
        time.sleep(settle)
        size = offsets_bytes(broker.data_dir)
        print(f"after the storm (+{settle} s): __consumer_offsets {size / 2**20:.1f} MiB on disk", flush=True)

        for how in ("SIGTERM", "kill -9"):
            if how == "SIGTERM":
                broker.stop()
            else:
                broker.kill9()
            t_start = time.monotonic()
            broker.start()
            listening = time.monotonic() - t_start
            loaded, wrong = read_back(broker.bootstrap, last, 300)
            print(
                f"restart ({how}): listening after {listening:.2f} s, every group's offsets read back "
                f"right after {listening + loaded:.2f} s; __consumer_offsets "
                f"{offsets_bytes(broker.data_dir) / 2**20:.1f} MiB",
                flush=True,
            )
            if wrong:
                print("WRONG: " + "; ".join(wrong[:5]), flush=True)
                ok = False
    finally:
        broker.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data kept in {workdir}")
    print("offsets-storm: " + ("ok" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
