"""Fixtures that run a real ringlog broker process for the end-to-end tests.

The broker binary is target/release/ringlog (override with RINGLOG_BIN).
Each test gets a fresh broker on a free port with a fresh data directory and
``--shards 2``. ``Broker.restart()`` restarts it on the same data dir and
port, ``Broker.kill9()`` kills it hard. At teardown the broker is stopped
with SIGTERM. Teardown fails the test when

- the broker died on its own,
- a SIGTERM shutdown hung (did not finish within SHUTDOWN_HANG_S; the broker
  is then killed with SIGKILL). This is a hang bound, not a performance
  limit: how long shutdowns take is only recorded (``Broker.shutdown_times``,
  written to the broker log),
- the broker log shows a panic or the marker ``invariant violated``.

How long a shutdown may take with many parked requests is tested on its own
(test_shutdown.py).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "ringlog"

# A SIGTERM shutdown that has not finished after this long is a hang: the
# broker is killed with SIGKILL and the test fails. Not a performance limit.
SHUTDOWN_HANG_S = 30.0
# How long we wait for the port to accept connections after a start.
STARTUP_WAIT_S = 30.0


# Lines in the broker log that fail a test: Rust panics (also glommio's
# "Waker invariant broken" comes as a panic) and the broker's own invariant
# checks.
LOG_PROBLEM = re.compile(r"panicked at|invariant violated", re.IGNORECASE)

IO_MODE_LINE = re.compile(r"storage io mode\W+requested\W+(\w+)\W+effective\W+(\w+)", re.IGNORECASE)


def io_mode_from_log(text: str) -> str:
    """``effective`` of the last ``storage io mode: requested=X effective=Y``
    line (lenient about separators and quoting), or "unknown"."""
    found = IO_MODE_LINE.findall(text)
    if not found:
        return "unknown"
    return found[-1][1].lower()


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
        self.hangs: list[str] = []
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
        # A start that hangs: kill it here, so that the teardown does not
        # report the same broker again as a hung shutdown.
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== START HUNG: no connection accepted within {timeout:.0f}s; killed with SIGKILL\n".encode())
        raise BrokerError(f"broker did not accept connections within {timeout}s (a start that hangs)\n" + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and self.unexpected_exit is None:
            self.unexpected_exit = f"broker exited on its own with status {self.proc.returncode}"
        if self.unexpected_exit:
            raise BrokerError(self.unexpected_exit + "\n" + self.log_tail())

    def stop(self, hang_s: float = SHUTDOWN_HANG_S) -> float:
        """SIGTERM; SIGKILL if the process is still there after ``hang_s``
        (recorded in ``self.hangs``). Returns the time the shutdown took."""
        if self.proc is None:
            return 0.0
        if self.proc.poll() is not None:
            self.check_alive()
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        hung = False
        try:
            self.proc.wait(timeout=hang_s)
        except subprocess.TimeoutExpired:
            hung = True
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - t0
        self.shutdown_times.append(took)
        with open(self.log_path, "ab") as log:
            if hung:
                log.write(f"\n===== SIGTERM shutdown HUNG: killed with SIGKILL after {took:.2f}s\n".encode())
            else:
                log.write(f"\n===== stopped (SIGTERM) in {took:.2f}s, status {self.proc.returncode}\n".encode())
        if hung:
            self.hangs.append(f"SIGTERM shutdown did not finish within {hang_s:.0f}s (killed with SIGKILL)")
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
        self.stop()
        if self.hangs:
            raise BrokerError(self.hangs[-1] + "\n" + self.log_tail())
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        """Panics and invariant violations the broker logged."""
        return [line.strip() for line in self.log_text().splitlines() if LOG_PROBLEM.search(line)]

    def io_mode(self) -> str:
        """The storage io mode the broker really used, from its start-up log
        line ``storage io mode: requested=X effective=Y dir=...``; "unknown"
        if it did not log one."""
        return io_mode_from_log(self.log_text())

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
        b.stop()
        problems.extend(b.hangs)
        if b.shutdown_times:
            print(f"broker {b.workdir.name}: SIGTERM shutdown times {[round(t, 2) for t in b.shutdown_times]} s")
        found = b.log_problems()
        if found:
            problems.append(f"the broker log shows {len(found)} panic/invariant line(s), first: {found[0]}")
    call_failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if problems or call_failed:
        for b in brokers:
            print(b.log_tail(80))
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def report(request, record_property):
    """``report(name, value)``: a line in the test run's output (shown also
    for passing tests) and a property in the JUnit XML."""
    tr = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(name: str, value) -> None:
        record_property(name, value)
        line = f"[{request.node.nodeid}] {name}: {value}"
        print(line)
        if tr is not None:
            tr.write_line(line)

    return say


def stop_bounded(broker: Broker, bound_s: float) -> tuple[float, bool]:
    """SIGTERM with a hang bound, inside a test: returns (seconds taken, hung)
    and takes the hang off the broker's record, so that the test (which
    asserts on it) and not the teardown reports it."""
    took = broker.stop(hang_s=bound_s)
    hung = bool(broker.hangs)
    broker.hangs.clear()
    return took, hung


# Broker settings shared by most tests (Kafka property names).
DEFAULT_CONFIG = {
    "auto.create.topics.enable": True,
    "num.partitions": 3,
}


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A running broker with DEFAULT_CONFIG."""
    return broker_factory(config=DEFAULT_CONFIG)
