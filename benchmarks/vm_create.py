"""VM creation throughput through the public API, against simulated hosts over real HTTP.

    python -m benchmarks.vm_create [--sizes 1,10,100] [--hosts 100] [--clients 100] [--db-url URL]

Starts a simulator process and a fresh MN process (SQLite in a temp dir unless --db-url), builds a
simulator zone of --hosts hosts, then for each size N has --clients concurrent clients call
CreateVmInstance over RPC and wait for their jobs. Prints one line per size: N, wall seconds,
VMs/s, p50 and p99 job latency, errors; then counts that every VM is Running in the database and
on its simulated host (counted, not assumed).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

from benchmarks.proc import cpu_seconds, rss_mib, tree
from mn.client import ClientError, ZStackClient
from mn.config import MNConfig
from mn.workers import process_count

GB = 1 << 30


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, path: str = "/health", timeout: float = 60) -> None:
    """Until `proc` answers `path`; an MN's /health counts only from `proc` or its workers (not
    from a worker of an MN killed just before, still stopping, on the same SO_REUSEPORT port)."""
    http = urllib3.PoolManager(retries=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[2]} exited with {proc.returncode}")
        try:
            r = http.request("GET", url + path, timeout=1)
            if r.status < 500 and (path != "/health" or r.json().get("pid") in tree(proc.pid)):
                return
        except (urllib3.exceptions.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def build_zone(api: ZStackClient, hosts: int) -> dict[str, str]:
    zone = api.call("CreateZone", name="bench")["inventory"]["uuid"]
    cluster = api.call("CreateCluster", zoneUuid=zone, name="bench", hypervisorType="Simulator")["inventory"]["uuid"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: api.call("AddSimulatorHost", name=f"h{i}", clusterUuid=cluster,
                                         managementIp=f"10.{i // 250}.{i % 250}.1", cpuCapacity=1000,
                                         memoryCapacity=4000 * GB), range(hosts)))
    ps = api.call("AddSimulatorPrimaryStorage", name="ps", zoneUuid=zone, url="/bench", totalCapacity=1 << 60,
                  availableCapacity=1 << 60, totalPhysicalCapacity=1 << 60,
                  availablePhysicalCapacity=1 << 60)["inventory"]["uuid"]
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cluster, primaryStorageUuid=ps)
    bs = api.call("AddSimulatorBackupStorage", name="bs", url="/bench-bs", totalCapacity=1 << 50,
                  availableCapacity=1 << 50)["inventory"]["uuid"]
    api.call("AttachBackupStorageToZone", zoneUuid=zone, backupStorageUuid=bs)
    image = api.call("AddImage", name="img", url=f"http://bench/img.qcow2?size={GB}",
                     backupStorageUuids=[bs])["inventory"]["uuid"]
    l2 = api.call("CreateL2NoVlanNetwork", name="l2", zoneUuid=zone, physicalInterface="eth0")["inventory"]["uuid"]
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2, clusterUuid=cluster)
    l3 = api.call("CreateL3Network", name="l3", l2NetworkUuid=l2)["inventory"]["uuid"]
    api.call("AddIpRangeByNetworkCidr", l3NetworkUuid=l3, name="r", networkCidr="10.128.0.0/16")
    offering = api.call("CreateInstanceOffering", name="o", cpuNum=1, memorySize=GB)["inventory"]["uuid"]
    return {"zone": zone, "image": image, "l3": l3, "offering": offering}


def _perf_stat(pids: list[int]) -> subprocess.Popen:
    """`perf stat` counting the MN's context switches and CPU migrations: figures the machine's
    speed and other load change less than CPU seconds."""
    return subprocess.Popen(["perf", "stat", "-x", ",", "-e", "context-switches,cpu-migrations",
                             "-p", ",".join(map(str, pids))], stderr=subprocess.PIPE, text=True)


def _perf_counts(proc: subprocess.Popen) -> dict[str, float]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    out = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
            out[parts[2]] = float(parts[0])
    return out


def run_size(url: str, session: str, env: dict[str, str], n: int, clients: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    local = {}

    def one(i: int) -> None:
        import threading

        c = local.get(threading.get_ident())
        if c is None:
            c = local[threading.get_ident()] = ZStackClient(url, session, maxsize=2, poll_interval=0.05)
        t0 = time.perf_counter()
        try:
            c.call("CreateVmInstance", name=f"vm-{n}-{i}", instanceOfferingUuid=env["offering"],
                   imageUuid=env["image"], l3NetworkUuids=[env["l3"]])
            latencies.append(time.perf_counter() - t0)
        except (ClientError, TimeoutError) as exc:
            errors.append(str(exc))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(min(clients, n)) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    lat = sorted(latencies) or [0.0]
    return {"n": n, "wall": wall, "rate": n / wall, "p50": statistics.median(lat),
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "errors": errors}


def verify(api: ZStackClient, sim_url: str, zone: str) -> tuple[int, int]:
    from simulator.client import SimulatorAdmin

    vms = []
    start = 0
    while True:
        page = api.query("QueryVmInstance", f"zoneUuid={zone}", "state=Running", limit=1000, start=start,
                         fields=["uuid", "hostUuid"])
        vms += page
        if len(page) < 1000:
            break
        start += 1000
    admin = SimulatorAdmin(sim_url)
    on_hosts = 0
    for h in {v["hostUuid"] for v in vms}:
        sim_vms = admin.host(h)["vms"]
        on_hosts += sum(1 for v in vms if v["hostUuid"] == h and sim_vms.get(v["uuid"], {}).get("state") == "Running")
    return len(vms), on_hosts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--db-url")
    ap.add_argument("--workers", type=int, default=0,
                    help="MN job workers per MN process (default 0: the MN's own choice, MNConfig.job_threads)")
    ap.add_argument("--http-threads", type=int, default=0,
                    help="MN API server threads per MN process (default 0: MNConfig.api_threads)")
    ap.add_argument("--perf-stat", action="store_true",
                    help="also count the MN's context switches per VM (Linux perf)")
    ap.add_argument("--mn-processes", type=int, default=0,
                    help="MN processes sharing the API port (MNConfig.processes; default 0: the MN's choice, CPUs + 1)")
    ap.add_argument("--profile-mn", metavar="FILE",
                    help="run the MN under py-spy (GIL holder only: where its CPU goes), collapsed stacks to FILE")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="zstack-bench-"))
    sim_port, mn_port = _port(), _port()
    # The simulator and the MN share the MN's agent master key (made here, as the MN would).
    sim = subprocess.Popen([sys.executable, "-m", "simulator.server", "--port", str(sim_port),
                            "--log-level", "WARNING", "--key-file", str(home / "agent.key")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim_url = f"http://127.0.0.1:{sim_port}"
    prefix = (["py-spy", "record", "--gil", "-r", "400", "-f", "raw", "-o", args.profile_mn,
               *(["--subprocesses"] if process_count(MNConfig(processes=args.mn_processes)) > 1 else []), "--"]
              if args.profile_mn else [])
    mn = subprocess.Popen([*prefix, sys.executable, "-m", "mn.server", "--home", str(home), "--port", str(mn_port),
                           "--simulator-url", sim_url, "--log-level", "WARNING", "--workers", str(args.workers),
                           "--processes", str(args.mn_processes), "--http-threads", str(args.http_threads),
                           *(["--db-url", args.db_url] if args.db_url else [])],
                          stdout=open(home / "mn.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        _wait(sim_url, sim, "/simulator/stats")
        url = f"http://127.0.0.1:{mn_port}"
        _wait(url, mn)
        api = ZStackClient(url)
        api.login()
        t0 = time.perf_counter()
        env = build_zone(api, args.hosts)
        print(f"zone with {args.hosts} simulated hosts ready in {time.perf_counter() - t0:.1f} s "
              f"(db: {args.db_url or 'sqlite'}, {args.clients} clients, {process_count(MNConfig(processes=args.mn_processes))} MN process(es))")
        print(f"{'N':>6} {'wall s':>8} {'VMs/s':>8} {'p50 s':>7} {'p99 s':>7} {'errors':>6}"
              f"   CPU ms/VM: {'MN':>6} {'sim':>6} {'client':>6}   MN RSS MiB")
        total = 0
        for n in (int(x) for x in args.sizes.split(",")):
            before = [cpu_seconds(mn.pid), cpu_seconds(sim.pid), cpu_seconds()]
            counting = _perf_stat(tree(mn.pid)) if args.perf_stat else None
            r = run_size(url, api.session, env, n, args.clients)
            after = [cpu_seconds(mn.pid), cpu_seconds(sim.pid), cpu_seconds()]
            counted = _perf_counts(counting) if counting is not None else None
            per_vm = [1000 * (a - b) / n for a, b in zip(after, before, strict=True)]
            total += n - len(r["errors"])
            print(f"{r['n']:>6} {r['wall']:>8.2f} {r['rate']:>8.1f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
                  f"{len(r['errors']):>6}              {per_vm[0]:>6.1f} {per_vm[1]:>6.1f} {per_vm[2]:>6.1f}"
                  f"   {rss_mib(mn.pid):>10.0f}",
                  flush=True)
            if counted:
                print("       MN per VM: " + ", ".join(f"{v / n:,.0f} {k}" for k, v in counted.items()), flush=True)
            for e in r["errors"][:3]:
                print(f"       error: {e}")
        running, on_hosts = verify(api, sim_url, env["zone"])
        print(f"verified: {running} VMs Running in the database (expected {total}), "
              f"{on_hosts} Running on their simulated hosts")
        return 0 if running == total == on_hosts else 1
    finally:
        for p in (mn, sim):
            p.send_signal(signal.SIGINT if p is mn and args.profile_mn else signal.SIGTERM)
        for p in (mn, sim):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
