"""The soak driver (scripts/soak.sh): a mixed load against one broker for a
chosen time, with restarts, checking the invariants of every acknowledgement
and watching the broker's resources.

- load: an idempotent acks=all producer, an acks=1 producer (topics with
  small segments and a small retention.bytes, so segments roll and are
  deleted all the time), a consumer-group member reading one of them and
  committing, a committer of ever larger group offsets, and topics created,
  filled and deleted over and over (test_crash_points.py's workers);
- every ``--restart-every`` seconds the broker is restarted, alternately by
  kill -9 and by SIGTERM (a shutdown that takes longer than 30 s is a hang
  and fails the run); after every restart the crash-point invariants are
  checked (acknowledged messages at their offsets, dense offsets, high
  watermark, no offset reuse, committed offsets, topics);
- every minute a fresh client connects and must be served within a hang
  bound (ApiVersions on a new socket, then metadata);
- every 2 s the broker's VmRSS, VmHWM and open file count are sampled into
  a CSV under target/soak/; at the end, RSS or open files that grew from the
  first to the middle third and again from the middle to the last third of
  the run (each time beyond a tolerance) fail it as unbounded growth -- over the
  whole run and within each broker run (between restarts) of 30 s or more.
  Restarts reset both, so growth slower than the restart interval hides:
  the default interval is a sixth of the run (at least 40 s).

Prints a summary; exit status 0 only if every check held.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from confluent_kafka import Consumer, KafkaException  # noqa: E402

from conftest import Broker, ringlog_binary  # noqa: E402
from kafkahelpers import create_topic  # noqa: E402
from rawkafka import api_versions_request_v0, parse_api_versions_v0, read_response  # noqa: E402
from test_crash_points import (  # noqa: E402
    BROKER_CONFIG,
    GROUP_TOPIC,
    PARTITIONS,
    TOPIC_CONFIG,
    Checker,
    Committer,
    PacedProducer,
    TopicChurn,
    check_after_restart,
)

SOAK_PRODUCERS = {
    "soak-idempotent": {"acks": "all", "enable.idempotence": True},
    "soak-acks-1": {"acks": 1, "enable.idempotence": False},
}
SAMPLE_EVERY_S = 2.0
FRESH_CLIENT_EVERY_S = 60.0
# A new connection must be answered within this long (a hang bound: the
# accept loop once stopped accepting after ~27 minutes).
FRESH_CLIENT_BOUND_S = 10.0
# Growth tolerance between thirds of the run: relative and absolute.
RSS_TOLERANCE = (0.25, 64 * 1024 * 1024)
FD_TOLERANCE = (0.25, 32)
# A broker run (between restarts) is checked for growth on its own when it
# has at least this many samples.
MIN_RUN_SAMPLES = 15


def proc_sample(pid: int) -> tuple[int, int, int]:
    """(VmRSS, VmHWM, open fds) of a process."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm, len(os.listdir(f"/proc/{pid}/fd"))


class GroupReader:
    """A consumer-group member reading a topic and committing as it goes."""

    def __init__(self, bootstrap: str, topic: str):
        self.c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "soak-readers", "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 500, "session.timeout.ms": 10000,
        })
        self.c.subscribe([topic])
        self.read = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="group-reader", daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            for m in self.c.consume(num_messages=1000, timeout=0.2):
                if m.error() is None:
                    self.read += 1
        self.c.close()


def fresh_client(broker: Broker) -> str | None:
    """A problem, or None: a new socket gets ApiVersions answered and a new
    client gets metadata, both within FRESH_CLIENT_BOUND_S."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((broker.host, broker.port), timeout=FRESH_CLIENT_BOUND_S) as s:
            s.settimeout(FRESH_CLIENT_BOUND_S)
            s.sendall(api_versions_request_v0(7))
            corr, err, _ = parse_api_versions_v0(read_response(s))
            if (corr, err) != (7, 0):
                return f"a fresh connection's ApiVersions answered {corr}/{err}"
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "soak-fresh"})
        try:
            c.list_topics(timeout=FRESH_CLIENT_BOUND_S)
        finally:
            c.close()
    except (OSError, ConnectionError, KafkaException) as e:
        return f"a fresh client was not served within {FRESH_CLIENT_BOUND_S:.0f}s: {e}"
    took = time.monotonic() - t0
    if took > FRESH_CLIENT_BOUND_S:
        return f"a fresh client took {took:.1f}s to be served (hang bound {FRESH_CLIENT_BOUND_S:.0f}s)"
    return None


def growth(samples: list[tuple[float, int]], tolerance: tuple[float, int], what: str) -> str | None:
    """Unbounded growth: the mean of the middle third above the first's and
    the last third's above the middle's, each beyond the tolerance."""
    if len(samples) < 9:
        return None
    n = len(samples) // 3
    thirds = [samples[:n], samples[n : 2 * n], samples[2 * n :]]
    means = [sum(v for _, v in t) / len(t) for t in thirds]
    rel, absolute = tolerance

    def grew(a: float, b: float) -> bool:
        return b > a * (1 + rel) + absolute

    if grew(means[0], means[1]) and grew(means[1], means[2]):
        return f"{what} keeps growing: means of the thirds of the run {[round(m) for m in means]}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--restart-every", type=float, default=None,
                    help="seconds between restarts, alternately kill -9 and SIGTERM (0: none; default: a sixth "
                         "of the run, at least 40)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE.parents[1] / "target" / "soak")
    args = ap.parse_args()
    if args.restart_every is None:
        args.restart_every = max(40.0, args.minutes * 60 / 6)

    import random

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path = args.out / f"soak-{stamp}.csv"
    workdir = Path(tempfile.mkdtemp(prefix="soak-", dir=args.out))
    print(f"soak: {args.minutes} min, restart every {args.restart_every}s, seed {seed}, broker dir {workdir}",
          flush=True)

    broker = Broker(ringlog_binary(), workdir, BROKER_CONFIG, shards=2)
    broker.start()
    problems: list[str] = []
    for topic in SOAK_PRODUCERS:
        create_topic(broker.bootstrap, topic, PARTITIONS, TOPIC_CONFIG)
    create_topic(broker.bootstrap, GROUP_TOPIC, PARTITIONS)
    producers = [PacedProducer(broker.bootstrap, t, conf) for t, conf in SOAK_PRODUCERS.items()]
    committer = Committer(broker.bootstrap)
    churn = TopicChurn(broker.bootstrap)
    reader = GroupReader(broker.bootstrap, "soak-acks-1")
    checker = Checker(lambda: broker.bootstrap)
    for pr in producers:
        pr.start()
    for t in (committer.thread, churn.thread, reader.thread):
        t.start()

    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_sample = t0
    next_fresh = t0 + FRESH_CLIENT_EVERY_S
    next_restart = t0 + args.restart_every * rng.uniform(0.75, 1.25) if args.restart_every > 0 else float("inf")
    restarts = kills = fresh_ok = 0
    rows: list[tuple] = []
    try:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["elapsed_s", "broker_run", "vm_rss_bytes", "vm_hwm_bytes", "open_fds"])
            while time.monotonic() < end and not problems:
                now = time.monotonic()
                if now >= next_sample:
                    try:
                        rss, hwm, fds = proc_sample(broker.proc.pid)
                    except OSError:
                        problems.append("the broker process is gone")
                        break
                    row = (round(now - t0, 1), broker.starts, rss, hwm, fds)
                    rows.append(row)
                    w.writerow(row)
                    f.flush()
                    next_sample += SAMPLE_EVERY_S
                if now >= next_fresh:
                    p = fresh_client(broker)
                    if p:
                        problems.append(f"at {now - t0:.0f}s: {p}")
                    else:
                        fresh_ok += 1
                    next_fresh += FRESH_CLIENT_EVERY_S
                if now >= next_restart:
                    restarts += 1
                    if restarts % 2:
                        kills += 1
                        broker.kill9()
                        how = "kill -9"
                    else:
                        took = broker.stop()
                        how = f"SIGTERM ({took:.1f}s)"
                        if broker.hangs:
                            problems.append(f"restart {restarts}: {broker.hangs[-1]}")
                            break
                    stopped_at = time.monotonic()
                    window, topics = committer.window(), churn.snapshot()
                    broker.start()
                    check_after_restart(broker, restarts, stopped_at, producers, committer, window, churn, topics,
                                        checker)
                    problems += checker.problems
                    checker.problems.clear()
                    print(f"soak: {now - t0:.0f}s restart {restarts} by {how}: "
                          f"{'ok' if not problems else 'PROBLEMS'}", flush=True)
                    next_restart = time.monotonic() + args.restart_every * rng.uniform(0.75, 1.25)
                broker.check_alive()
                time.sleep(0.1)
    except Exception as e:  # noqa: BLE001 -- the run fails with it, after cleaning up
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        for pr in producers:
            pr.stop()
        committer.stop_event.set()
        churn.stop_event.set()
        reader.stop_event.set()
        for t in (committer.thread, churn.thread, reader.thread):
            t.join(60)
        committer.c.close()
        if broker.alive():
            broker.stop()
            problems += broker.hangs
        problems += [f"broker log: {line}" for line in broker.log_problems()[:5]]

    for pr in producers:
        with pr.lock:
            if pr.fatal:
                problems.append(f"{pr.topic}: fatal producer errors {pr.fatal[:3]}")
            if pr.failed:
                problems.append(f"{pr.topic}: {len(pr.failed)} messages failed, first {pr.failed[:3]}")
    # Unbounded growth, within each broker run long enough to show it (a
    # restart resets both) and over the whole run.
    runs: dict[int, list[tuple]] = {}
    for r in rows:
        runs.setdefault(r[1], []).append(r)
    for run, samples in [(None, rows)] + sorted(runs.items()):
        if run is not None and len(samples) < MIN_RUN_SAMPLES:
            continue
        for idx, tol, what in ((2, RSS_TOLERANCE, "VmRSS"), (4, FD_TOLERANCE, "open files")):
            p = growth([(r[0], r[idx]) for r in samples], tol, what)
            if p:
                problems.append(p + (f" (broker run {run})" if run is not None else " (whole run)"))
    elapsed = time.monotonic() - t0
    peak_rss = max((r[3] for r in rows), default=0)
    print("================================ soak summary ================================")
    print(f"seed {seed}, {elapsed / 60:.1f} min, {restarts} restarts ({kills} kill -9), "
          f"{fresh_ok} fresh clients served")
    for pr in producers:
        print(f"  {pr.topic}: {len(pr.acked)} acknowledged")
    print(f"  group reader read {reader.read}; {committer.acked} commits acknowledged; "
          f"{len(churn.state)} topics churned")
    if rows:
        print(f"  broker VmHWM peak {peak_rss / 2**20:.0f} MiB, last VmRSS {rows[-1][2] / 2**20:.0f} MiB, "
              f"open files last {rows[-1][4]}, max {max(r[4] for r in rows)}")
    print(f"  samples: {csv_path}; broker log: {broker.log_path}")
    for p in problems:
        print(f"  PROBLEM: {p}")
    if not problems:
        shutil.rmtree(broker.data_dir, ignore_errors=True)  # the log stays
    print(f"soak: {0 if problems else 1} passed, {1 if problems else 0} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
