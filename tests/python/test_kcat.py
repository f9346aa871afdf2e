"""kcat (librdkafka CLI) produce/consume round trips, one per compression codec."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest

from kafkahelpers import CODECS, create_topic, msg_key, msg_value, watermarks

N_MESSAGES = 100_000
PARTITIONS = 4
from tools import require_tool

KCAT = "kcat"


@pytest.fixture(autouse=True)
def _kcat():
    """kcat, or a skip (a failure on CI) when it is missing."""
    global KCAT
    KCAT = require_tool("kcat", "kafkacat", why="scripts/test.sh installs it")

STATIC_HEADERS = [("source", "kcat"), ("h2", "second header")]


def kcat_produce(bootstrap: str, topic: str, codec: str, lines: bytes) -> subprocess.CompletedProcess:
    cmd = [
        KCAT, "-P", "-b", bootstrap, "-t", topic,
        "-K", "\t",
        "-X", f"compression.codec={codec}",
        "-X", "acks=all",
        "-X", "linger.ms=5",
    ]
    for k, v in STATIC_HEADERS + [("codec", codec)]:
        cmd += ["-H", f"{k}={v}"]
    return subprocess.run(cmd, input=lines, capture_output=True, timeout=600)


def kcat_consume(bootstrap: str, topic: str) -> subprocess.CompletedProcess:
    # -e: exit once the end of every partition is reached.
    fmt = "%p\\t%o\\t%k\\t%h\\t%s\\n"
    cmd = [KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt]
    return subprocess.run(cmd, capture_output=True, timeout=600)


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_round_trip(broker, codec):
    topic = f"kcat-{codec}"
    create_topic(broker.bootstrap, topic, PARTITIONS)

    lines = "".join(f"{msg_key(i)}\t{msg_value(i)}\n" for i in range(N_MESSAGES)).encode()
    prod = kcat_produce(broker.bootstrap, topic, codec, lines)
    assert prod.returncode == 0, f"kcat -P failed ({prod.returncode}): {prod.stderr.decode()[-2000:]}"
    assert b"Delivery failed" not in prod.stderr, prod.stderr.decode()[-2000:]
    broker.check_alive()

    # The broker's own view: the high watermarks add up to what was sent.
    marks = watermarks(broker.bootstrap, topic, PARTITIONS)
    assert sum(hi for _, hi in marks.values()) == N_MESSAGES, marks
    assert all(lo == 0 for lo, _ in marks.values()), marks

    cons = kcat_consume(broker.bootstrap, topic)
    assert cons.returncode == 0, f"kcat -C failed ({cons.returncode}): {cons.stderr.decode()[-2000:]}"

    expected_headers = ",".join(f"{k}={v}" for k, v in STATIC_HEADERS + [("codec", codec)])
    seen: dict[str, int] = defaultdict(int)
    offsets: dict[int, list[int]] = defaultdict(list)
    order: dict[int, list[int]] = defaultdict(list)
    bad = []
    out_lines = cons.stdout.decode().split("\n")
    assert out_lines[-1] == ""
    for line in out_lines[:-1]:
        parts = line.split("\t")
        if len(parts) != 5:
            bad.append(("malformed line", line))
            continue
        part, off, key, headers, value = parts
        i = int(key[4:]) if key.startswith("key-") else -1
        if i < 0 or value != msg_value(i):
            bad.append(("bad key/value", line))
            continue
        if headers != expected_headers:
            bad.append(("bad headers", line))
        seen[key] += 1
        offsets[int(part)].append(int(off))
        order[int(part)].append(i)
    assert not bad, f"{len(bad)} bad records, first: {bad[:3]}"
    missing = [i for i in range(N_MESSAGES) if seen.get(msg_key(i), 0) == 0]
    assert not missing, f"{len(missing)} messages missing, first: {missing[:10]}"
    dups = {k: n for k, n in seen.items() if n > 1}
    assert not dups, f"{len(dups)} keys seen more than once, e.g. {list(dups.items())[:5]}"
    assert sum(seen.values()) == N_MESSAGES

    # All partitions got data (so both shards were exercised), offsets are
    # contiguous from 0 and match the watermarks, and each partition keeps
    # the order the messages were produced in.
    assert sorted(offsets) == list(range(PARTITIONS)), f"partitions with data: {sorted(offsets)}"
    for p, offs in offsets.items():
        assert offs == list(range(len(offs))), f"partition {p}: offsets not contiguous/in order"
        assert marks[p] == (0, len(offs)), (p, marks[p], len(offs))
        assert order[p] == sorted(order[p]), f"partition {p}: not in production order"
