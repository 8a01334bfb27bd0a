"""Simulator scale figures: memory per simulated host, and pings per second served over HTTP.

    .venv/bin/python benchmarks/simulator_hosts.py [--hosts 10000] [--clients 4] [--seconds 5]

1. Builds a SimState of --hosts connected hosts (each with a bridge, as after the MN connected it
   and prepared one L2 network) and prints the bytes each host costs, measured by tracemalloc.
2. Serves those hosts on loopback and pings them round-robin from --clients threads running in a
   separate process (so the clients do not share the simulator's GIL) for --seconds, then prints
   pings/s and latency percentiles. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import tempfile
import threading
import time
import tracemalloc
import uuid as uuidlib
from pathlib import Path

from simulator.server import start_in_thread
from simulator.state import SimState


def populate(state: SimState, n: int) -> list[str]:
    uuids = [uuidlib.uuid4().hex for _ in range(n)]
    for i, u in enumerate(uuids):
        h = state.put_host(u, cpu_num=32, memory=256 * 2**30, management_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        h.connected = True
        h.send_command_url = "http://127.0.0.1:8080/zstack/asyncrest/sendcommand"
        h.bridges["br_0123456789ab"] = None
    return uuids


def memory_per_host(n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = SimState()
    populate(state, n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def _client(url: str, uuids: list[str], clients: int, seconds: float, out: mp.Queue, key_file: str) -> None:
    import urllib3

    from kvmagent import auth

    keys = auth.DerivedKeys(auth.read_key_file(key_file))  # signed as the MN signs (the simulator verifies)

    deadline = time.monotonic() + seconds
    results: list[tuple[int, int, list[float]]] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        http = urllib3.PoolManager(maxsize=1, retries=False)
        ok = failed = 0
        lat: list[float] = []
        i = offset
        while time.monotonic() < deadline:
            u = uuids[i % len(uuids)]
            i += clients
            t0 = time.perf_counter()
            body = json.dumps({"hostUuid": u}).encode()
            headers = {"Content-Type": "application/json",
                       **auth.sign(keys.key_for(f"{url}/hosts/{u}"), "POST", f"/hosts/{u}/host/ping", body)}
            r = http.request("POST", f"{url}/hosts/{u}/host/ping", body=body, headers=headers, timeout=10.0)
            lat.append(time.perf_counter() - t0)
            if r.status == 200 and json.loads(r.data).get("hostUuid") == u:
                ok += 1
            else:
                failed += 1
        with lock:
            results.append((ok, failed, lat))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    out.put({"ok": ok, "failed": failed, "lat": [lat[int(len(lat) * q)] for q in (0.5, 0.9, 0.99)] if lat else []})


def pings_per_second(n: int, clients: int, seconds: float, threads: int) -> dict:
    key_file = Path(tempfile.mkdtemp(prefix="zstack-bench-keys-")) / "agent.key"
    server = start_in_thread("127.0.0.1", 0, threads=threads, key_file=key_file)
    try:
        uuids = populate(server.state, n)
        out: mp.Queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(target=_client, args=(server.url, uuids, clients, seconds, out,
                                                                                 str(key_file)))
        t0 = time.monotonic()
        proc.start()
        result = out.get(timeout=seconds + 60)
        proc.join(timeout=10)
        result["elapsed"] = time.monotonic() - t0
        result["served"] = server.state.stats()["calls"].get("/host/ping", 0)
        return result
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=4, help="concurrent client connections (max 64)")
    ap.add_argument("--seconds", type=float, default=5.0, help="ping duration (max 60)")
    ap.add_argument("--threads", type=int, default=16, help="simulator worker threads")
    args = ap.parse_args()
    clients, seconds = max(1, min(args.clients, 64)), max(0.5, min(args.seconds, 60.0))

    per_host = memory_per_host(args.hosts)
    print(f"memory: {per_host:,.0f} bytes per simulated host ({per_host * args.hosts / 2**20:.1f} MiB "
          f"for {args.hosts:,} hosts)")
    r = pings_per_second(args.hosts, clients, seconds, args.threads)
    rate = r["ok"] / seconds
    p50, p90, p99 = (x * 1000 for x in r["lat"]) if r["lat"] else (0, 0, 0)
    print(f"pings: {rate:,.0f}/s over {seconds:.0f} s with {clients} client connections "
          f"({r['ok']:,} ok, {r['failed']} failed; latency p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms)")
    print(f"       {args.hosts:,} hosts pinged every 60 s need {args.hosts / 60:,.0f}/s")


if __name__ == "__main__":
    main()
