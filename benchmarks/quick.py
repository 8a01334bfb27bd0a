"""Quick API throughput: N × (LogInByAccount + CreateZone + QueryZone) through a real MN on loopback.

    python -m benchmarks.quick [-n 50] [--db-url URL] [--url http://host:port]

Without --url an MN is started in this process (HTTP on 127.0.0.1, SQLite in a temp dir unless
--db-url); the calls go over HTTP through mn.client, one after another. Prints calls/s and the
per-API mean latency.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mn.client import ZStackClient


def measure(url: str, n: int) -> dict[str, list[float]]:
    """Seconds per call, by API, for `n` rounds of login + CreateZone + QueryZone."""
    times: dict[str, list[float]] = {"LogInByAccount": [], "CreateZone": [], "QueryZone": []}
    run = f"{time.time_ns():x}"
    for i in range(n):
        client = ZStackClient(url, maxsize=1)
        t0 = time.perf_counter()
        client.login()
        t1 = time.perf_counter()
        name = f"bench-{run}-{i}"
        client.call("CreateZone", name=name)
        t2 = time.perf_counter()
        found = client.query("QueryZone", f"name={name}")
        t3 = time.perf_counter()
        if len(found) != 1:
            raise RuntimeError(f"QueryZone found {len(found)} zones named {name}, expected 1")
        times["LogInByAccount"].append(t1 - t0)
        times["CreateZone"].append(t2 - t1)
        times["QueryZone"].append(t3 - t2)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quick", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=50, help="rounds (default 50)")
    parser.add_argument("--db-url", help="database of the in-process MN (default: SQLite in a temp dir)")
    parser.add_argument("--url", help="benchmark a running MN instead of starting one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    running = None
    url = args.url
    db = "external MN"
    if url is None:
        from mn.config import MNConfig
        from mn.server import start

        home = Path(tempfile.mkdtemp(prefix="zstack-bench-"))
        config = MNConfig(home=home, host="127.0.0.1", port=0, db_url=args.db_url or "")
        db = config.db_url.split(":", 1)[0]
        running = start(config)
        url = running.url
    try:
        measure(url, 2)  # warm-up: connections, caches, first-call imports
        t0 = time.perf_counter()
        times = measure(url, args.n)
        elapsed = time.perf_counter() - t0
    finally:
        if running is not None:
            running.stop()
    calls = sum(len(v) for v in times.values())
    print(f"quick: {calls} calls ({args.n} x LogInByAccount+CreateZone+QueryZone, {db}) in {elapsed:.2f} s"
          f" = {calls / elapsed:.1f} calls/s")
    for api, ts in times.items():
        print(f"  {api:<15} mean {statistics.mean(ts) * 1000:7.2f} ms   max {max(ts) * 1000:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
