"""Apache Kafka as a reference broker (scripts/kafka-reference.sh).

``KafkaReference(workdir)`` starts Kafka (KRaft, broker+controller, one node)
with ``start()`` and stops it with ``stop()``; ``bootstrap`` and ``data_dir``
(Kafka's log dir) are set once it runs. ``available()`` says whether Java and
the Kafka jars are there or can be fetched (with the reason when not).
``dump_log_segments(args)`` runs Kafka's own kafka.tools.DumpLogSegments.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "kafka-reference.sh"


class KafkaReference:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.bootstrap: str | None = None
        self.data_dir: Path | None = None

    @staticmethod
    def available() -> tuple[bool, str]:
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                return False, f"{tool} is not installed"
        r = subprocess.run([str(SCRIPT), "fetch"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return False, f"cannot fetch Apache Kafka: {r.stderr.strip()[-500:]}"
        return True, ""

    def classpath(self) -> str:
        r = subprocess.run([str(SCRIPT), "classpath"], capture_output=True, text=True, check=True)
        return r.stdout.strip().splitlines()[-1]

    def start(self, keep_data: bool = False, join: KafkaReference | None = None, node_id: int = 2) -> None:
        """Format a fresh data dir and start; with ``keep_data``, restart on
        the data dir of the previous start (same port, no format); with
        ``join``, as broker-only node ``node_id`` of that Kafka's cluster."""
        cmd = [str(SCRIPT), "start", "--dir", str(self.workdir)] + (["--keep-data"] if keep_data else [])
        if join is not None:
            cmd += ["--join", str(join.workdir), "--node-id", str(node_id)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"Kafka did not start: {r.stderr[-2000:]}")
        vals = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        self.bootstrap = vals["bootstrap"]
        self.data_dir = Path(vals["log_dir"])

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", "--dir", str(self.workdir)], capture_output=True, timeout=60)

    def log_text(self) -> str:
        p = self.workdir / "kafka.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def dump_log_segments(self, args: list[str]) -> subprocess.CompletedProcess:
        """kafka.tools.DumpLogSegments (kafka-dump-log.sh) with ARGS."""
        return subprocess.run(
            ["java", "-Xmx256m", "-cp", self.classpath(), "kafka.tools.DumpLogSegments", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
