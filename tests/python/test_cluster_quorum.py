"""The controller quorum across processes (issue 10, milestone M2).

Three nodes started by `scripts/cluster.sh` form one raft quorum over
their controller listeners, elect an active controller, persist the
metadata log (`__cluster_metadata-0/`), and every node registers as a
broker and heartbeats; clients then see all three brokers in Metadata from
any node. Faults: kill -9 of the active controller (a new one is elected
from the other two, the dead broker is fenced out of Metadata after its
session times out, and comes back after a restart from its persisted
log), and a quorum without a majority (no controller, no registration).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from conftest import ringlog_binary

REPO_ROOT = Path(__file__).resolve().parents[2]

FAST = "\n".join(
    [
        '"broker.heartbeat.interval.ms" = 300',
        '"broker.session.timeout.ms" = 3000',
        '"controller.quorum.election.timeout.ms" = 1000',
    ]
)


class Cluster:
    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "cluster"
        self.env = dict(
            os.environ,
            RINGLOG_BIN=str(ringlog_binary()),
            RINGLOG_CLUSTER_DIR=str(self.dir),
            RINGLOG_CLUSTER_CONFIG=FAST,
        )

    def run(self, *args, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [str(REPO_ROOT / "scripts" / "cluster.sh"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, r.stderr[-3000:]
        return r

    def addr(self, n: int) -> str:
        return f"127.0.0.1:{n}9192"

    def log(self, n: int) -> str:
        text = (self.dir / str(n) / "broker.log").read_text(errors="replace")
        return re.sub(r"\x1b\[[0-9;]*m", "", text)

    def brokers_seen_by(self, n: int) -> list[int]:
        md = AdminClient({"bootstrap.servers": self.addr(n)}).list_topics(timeout=10)
        return sorted(md.brokers)

    def wait_brokers(self, nodes: list[int], want: list[int], timeout: float = 40) -> None:
        deadline = time.time() + timeout
        seen: dict[int, list[int]] = {}
        while time.time() < deadline:
            try:
                seen = {n: self.brokers_seen_by(n) for n in nodes}
            except Exception as e:  # a node still starting
                seen = {0: [repr(e)]}
            if all(v == want for v in seen.values()):
                return
            time.sleep(0.3)
        raise AssertionError(f"brokers seen {seen}, wanted {want} from {nodes}\n" + self.logs_tail())

    def controllers(self) -> list[tuple[int, int]]:
        """(term, node) of every 'active controller' line in the logs."""
        out = []
        for n in (1, 2, 3):
            for m in re.finditer(r"this node is the active controller.*?term=(\d+)", self.log(n)):
                out.append((int(m.group(1)), n))
        return sorted(out)

    def wait_controller(self, above_term: int = 0, among=(1, 2, 3), timeout: float = 30) -> tuple[int, int]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            c = [x for x in self.controllers() if x[0] > above_term and x[1] in among]
            if c:
                return c[-1]
            time.sleep(0.2)
        raise AssertionError(f"no active controller above term {above_term}\n" + self.logs_tail())

    def start(self) -> tuple[int, int]:
        """Start three nodes; wait until every node lists all three brokers
        and a controller is active. Returns (term, controller)."""
        self.run("start", "3")
        self.wait_brokers([1, 2, 3], [1, 2, 3])
        return self.wait_controller()

    def pid(self, n: int) -> int:
        return int((self.dir / f"{n}.pid").read_text())

    def logs_tail(self) -> str:
        return "\n".join(f"--- node {n}\n" + "\n".join(self.log(n).splitlines()[-15:]) for n in (1, 2, 3))


def test_three_nodes_form_one_quorum_and_survive_the_controller_kill_9(tmp_path):
    c = Cluster(tmp_path)
    try:
        term, leader = c.start()
        # Exactly one active controller per term, ever.
        terms = [t for t, _ in c.controllers()]
        assert len(terms) == len(set(terms)), c.controllers()
        # Every voter persisted the metadata log.
        for n in (1, 2, 3):
            d = c.dir / str(n) / "data" / "__cluster_metadata-0"
            assert d.is_dir() and any(f.stat().st_size > 0 for f in d.iterdir()), list(d.iterdir())

        # kill -9 of the active controller: the other two elect a new one,
        # and fence the dead broker once its session times out.
        os.kill(c.pid(leader), signal.SIGKILL)
        others = [n for n in (1, 2, 3) if n != leader]
        term2, leader2 = c.wait_controller(above_term=term, among=others)
        assert leader2 != leader
        c.wait_brokers(others, others)
        # Back from its persisted log: it rejoins the quorum, registers
        # again (a new incarnation) and is unfenced once caught up.
        c.run("restart", str(leader))
        c.wait_brokers([1, 2, 3], [1, 2, 3])
        assert "registered with the controller" in c.log(leader).split("starting ringlog")[-1]
        terms = [t for t, _ in c.controllers()]
        assert len(terms) == len(set(terms)), c.controllers()
    finally:
        c.run("stop", check=False)


def test_without_a_majority_there_is_no_controller(tmp_path):
    c = Cluster(tmp_path)
    try:
        term, leader = c.start()
        others = [n for n in (1, 2, 3) if n != leader]
        # Leave one node alone: it cannot elect itself, and its broker
        # table stops changing (nobody fences or unfences anyone).
        c.run("kill", str(others[0]))
        c.run("kill", str(others[1]))
        lone = leader
        time.sleep(4)
        assert not [x for x in c.controllers() if x[0] > term], c.controllers()
        # The lone node still answers clients from its last image.
        assert c.brokers_seen_by(lone)
        # A majority again: a controller is elected and all register.
        c.run("restart", str(others[0]))
        c.run("restart", str(others[1]))
        c.wait_brokers([1, 2, 3], [1, 2, 3])
        c.wait_controller(above_term=term)
    finally:
        c.run("stop", check=False)
