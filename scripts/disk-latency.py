#!/usr/bin/env python3
"""What the disk alone does at a given rate: paced 256 KiB O_DIRECT writes,
each followed by fdatasync, into a scratch file in DIR (default: the
current directory), with the latency of write + fdatasync as percentiles.
Run it beside scripts/bench.sh figures to tell the device's tail from the
broker's.

    scripts/disk-latency.py RATE_MB_PER_S SECONDS [DIR]
"""
import mmap
import os
import sys
import time


def main() -> None:
    rate = float(sys.argv[1]) * 1e6
    duration = float(sys.argv[2])
    path = os.path.join(sys.argv[3] if len(sys.argv) > 3 else ".", ".disk-latency.bin")
    chunk = 256 * 1024
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT)
    buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
    buf.write(b"x" * chunk)
    lat = []
    sent = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < duration:
            wait = t0 + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            a = time.monotonic()
            os.write(fd, buf)
            os.fdatasync(fd)
            lat.append(time.monotonic() - a)
            sent += chunk
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    n = len(lat)

    def q(p: float) -> float:
        return lat[min(n - 1, int(p * n))] * 1000

    achieved = sent / (time.monotonic() - t0) / 1e6
    print(
        f"asked {rate / 1e6:.0f} MB/s, achieved {achieved:.0f} MB/s; write+fdatasync of 256 KiB O_DIRECT: "
        f"p50 {q(0.5):.2f} p99 {q(0.99):.2f} p99.9 {q(0.999):.2f} max {lat[-1] * 1000:.2f} ms (n={n})"
    )


if __name__ == "__main__":
    main()
