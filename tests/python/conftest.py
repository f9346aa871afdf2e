"""Fixtures that run a real ringlog broker process for the end-to-end tests.

The broker binary is target/release/ringlog (override with RINGLOG_BIN).
Each test gets a fresh broker on a free port with a fresh data directory and
``--shards 2``. ``Broker.restart()`` restarts it on the same data dir and
port, ``Broker.kill9()`` kills it hard. At teardown the broker is stopped
with SIGTERM (SIGKILL after 5 s); a shutdown that takes longer than 2 s, or
a broker that died on its own, fails the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "ringlog"

# A clean shutdown must take at most this long (the broker's contract).
SHUTDOWN_LIMIT_S = 2.0
# SIGKILL after this long.
SHUTDOWN_GRACE_S = 5.0
# How long we wait for the port to accept connections after a start.
STARTUP_WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


class BrokerError(Exception):
    pass


class Broker:
    """One ringlog broker process (restartable on the same data dir/port)."""

    def __init__(self, binary: Path, workdir: Path, config: dict | None, shards: int = 2):
        self.binary = Path(binary)
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.config = dict(config or {})
        self.shards = shards
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.config_path: Path | None = None
        self.starts = 0
        self.shutdown_times: list[float] = []
        self.unexpected_exit: str | None = None
        if self.config:
            self.config_path = workdir / "ringlog.toml"
            lines = [f'"{k}" = {_toml_value(v)}' for k, v in self.config.items()]
            self.config_path.write_text("\n".join(lines) + "\n")

    # -- addresses -------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "start",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--advertised-listener",
            f"127.0.0.1:{self.port}",
            "--shards",
            str(self.shards),
            "--log-level",
            os.environ.get("RINGLOG_TEST_LOG_LEVEL", "info"),
        ]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = STARTUP_WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None  # reported here; not again at teardown
                raise BrokerError(f"broker exited with {code} during startup\n" + self.log_tail())
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise BrokerError(f"broker did not accept connections within {timeout}s\n" + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and self.unexpected_exit is None:
            self.unexpected_exit = f"broker exited on its own with status {self.proc.returncode}"
        if self.unexpected_exit:
            raise BrokerError(self.unexpected_exit + "\n" + self.log_tail())

    def stop(self) -> float:
        """SIGTERM, SIGKILL after 5 s. Returns the time the shutdown took."""
        if self.proc is None:
            return 0.0
        if self.proc.poll() is not None:
            self.check_alive()
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - t0
        self.shutdown_times.append(took)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== stopped (SIGTERM) in {took:.2f}s, status {self.proc.returncode}\n".encode())
        self.proc = None
        return took

    def kill9(self) -> None:
        assert self.alive(), "broker is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        with open(self.log_path, "ab") as log:
            log.write(b"\n===== killed with SIGKILL\n")
        self.proc = None

    def restart(self) -> None:
        """Clean restart on the same data dir and port."""
        self.check_alive()
        took = self.stop()
        if took > SHUTDOWN_LIMIT_S:
            raise BrokerError(f"clean shutdown took {took:.2f}s (limit {SHUTDOWN_LIMIT_S}s)")
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no broker log)"
        return "----- broker log (tail) -----\n" + "\n".join(text[-lines:])


def ringlog_binary() -> Path:
    return Path(os.environ.get("RINGLOG_BIN", DEFAULT_BIN))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture
def broker_factory(tmp_path_factory, request):
    """Start brokers: ``broker_factory(config={...}, shards=2)``."""
    binary = ringlog_binary()
    if not binary.exists():
        pytest.fail(f"broker binary {binary} not found (run cargo build --release)")
    brokers: list[Broker] = []

    def make(config: dict | None = None, shards: int = 2, start: bool = True) -> Broker:
        workdir = tmp_path_factory.mktemp("ringlog")
        b = Broker(binary, workdir, config, shards)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    problems = []
    for b in brokers:
        died = b.proc is not None and b.proc.poll() is not None
        if died:
            hint = " (a clean shutdown: SIGTERM/SIGINT from outside?)" if b.proc.returncode == 0 else ""
            problems.append(f"broker exited on its own with status {b.proc.returncode}{hint}")
            b.proc = None
        took = b.stop()
        if took > SHUTDOWN_LIMIT_S:
            problems.append(f"clean shutdown took {took:.2f}s (limit {SHUTDOWN_LIMIT_S}s)")
        slow = [t for t in b.shutdown_times if t > SHUTDOWN_LIMIT_S]
        if slow and took <= SHUTDOWN_LIMIT_S:
            problems.append(f"an earlier clean shutdown took {max(slow):.2f}s")
    call_failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if problems or call_failed:
        for b in brokers:
            print(b.log_tail(80))
    if problems:
        pytest.fail("; ".join(problems))


# Broker settings shared by most tests (Kafka property names).
DEFAULT_CONFIG = {
    "auto.create.topics.enable": True,
    "num.partitions": 3,
}


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A running broker with DEFAULT_CONFIG."""
    return broker_factory(config=DEFAULT_CONFIG)
