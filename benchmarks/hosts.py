"""10,000 simulated hosts on one MN: ping cost, memory, reconnection after a restart, dead-host notice.

    python -m benchmarks.hosts [--hosts 10000] [--interval 60] [--rounds 3] [--db-url postgresql://...]
    python -m benchmarks.hosts --quick     # 200 hosts pinged every 2 s: seconds, for CI

A simulator process and an MN process on loopback (real HTTP both ways). The hosts are written
into a fresh database as Disconnected simulator hosts of one cluster and declared on the simulator
(not connected there, as after an agent restart); the MN then connects them all by itself (its
host tracker pings them, finds agents that do not know them, and runs the reconnect flow).

Phases, each timed from outside through the public API and the simulator's admin API:
1. start: MN process start -> every host Connected (all agents new to the MN: each is reconnected;
   with --preconnected they already know it, and the MN's first ping round confirms them).
2. steady state: --rounds ping intervals; MN CPU (fraction of one core, from /proc) and resident
   memory, pings served by the simulator; scaled to 10,000 hosts every 60 s when smaller.
3. dead host: a host's pings fail (simulator fault), another host vanishes from the simulator
   (admin delete): time until each is Disconnected; then both come back and are reconnected.
4. restart: SIGTERM, then SIGKILL, of the MN and a new MN on the same database and port: time
   from the stop until the new MN has pinged every host and all are Connected.
Targets: pings every 60 s of 10,000 hosts under 1/4 core; all reconnected within 2 min of a
restart; a dead host noticed within 2 ping intervals; MN resident memory under 500 MiB.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from benchmarks.proc import cpu_seconds, rss_mib
from benchmarks.query_data import Writer
from benchmarks.vm_create import _port, _wait
from kvmagent.protocol import ConnectCmd
from mn.agent import AgentClient
from mn.catalogue.conditions import parse_condition
from mn.client import ZStackClient
from mn.db.base import utcnow
from mn.db.migrate import upgrade
from simulator.client import SimulatorAdmin

GB = 1 << 30


def seed(db_url: str, sim_url: str, n: int, mn_url: str | None = None, home: Path | None = None) -> list[str]:
    """A zone, a Simulator cluster and `n` Disconnected hosts served by the simulator at sim_url.

    With `mn_url`, the hosts are instead Connected, with facts, and their agents already connected
    to the MN that will listen there (as under a long-running MN): the MN only has to ping them.
    """
    upgrade(db_url)
    eng = create_engine(db_url, poolclass=NullPool)
    now = utcnow()
    ts = {"createDate": now, "lastOpDate": now}
    uuids = [uuidlib.uuid4().hex for _ in range(n)]
    try:
        raw = eng.raw_connection()
        try:
            w: dict[str, Writer] = {}

            def add(table: str, **values: object) -> None:
                w.setdefault(table, Writer(raw, eng.dialect.name, table)).add(**values)

            zone, cluster = uuidlib.uuid4().hex, uuidlib.uuid4().hex
            add("zone", uuid=zone, name="hosts-bench", **ts)
            add("cluster", uuid=cluster, name="hosts-bench", zoneUuid=zone, hypervisorType="Simulator", **ts)
            for i, u in enumerate(uuids):
                facts = (
                    {"status": "Disconnected"}
                    if mn_url is None
                    else {
                        "status": "Connected",
                        "architecture": "x86_64",
                        "cpuNum": 32,
                        "totalCpuCapacity": 320,
                        "availableCpuCapacity": 320,
                        "totalMemoryCapacity": 256 * GB,
                        "availableMemoryCapacity": 256 * GB,
                        "totalPhysicalMemory": 256 * GB,
                    }
                )
                add(
                    "host",
                    uuid=u,
                    name=f"h{i}",
                    zoneUuid=zone,
                    clusterUuid=cluster,
                    hypervisorType="Simulator",
                    managementIp=_ip(i),
                    agentUrl=f"{sim_url}/hosts/{u}",
                    **facts,
                    **ts,
                )
            for table in ("zone", "cluster", "host"):
                w[table].flush()
            raw.commit()
        finally:
            raw.close()
    finally:
        eng.dispose()
    admin = SimulatorAdmin(sim_url)
    from kvmagent.auth import DerivedKeys, create_key_file

    agents = AgentClient(timeout=30, keys=DerivedKeys(create_key_file(Path(home or ".") / "agent.key")))

    def declare(i: int, u: str) -> None:
        admin.add_host(u, cpu_num=32, memory=256 * GB, management_ip=_ip(i))
        if mn_url is not None:
            agents.call(
                f"{sim_url}/hosts/{u}",
                ConnectCmd.PATH,
                {"hostUuid": u, "sendCommandUrl": f"{mn_url}/agent/events"},
            )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda a: declare(*a), enumerate(uuids)))
    return uuids


def _ip(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.25) -> float:
    """Seconds until cond() held; raises TimeoutError after `timeout`."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"not reached in {timeout:.0f} s")
        time.sleep(step)
    return time.monotonic() - t0


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path, db_url: str, sim_url: str):
        self.args, self.home, self.db_url, self.sim_url = args, home, db_url, sim_url
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mn: subprocess.Popen | None = None
        self.api: ZStackClient | None = None
        self.sim = SimulatorAdmin(sim_url)

    def start_mn(self) -> None:
        self.mn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mn.server",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
                "--db-url",
                self.db_url,
                "--simulator-url",
                self.sim_url,
                "--log-level",
                "WARNING",
            ],
            stdout=open(self.home / "mn.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        _wait(self.url, self.mn, timeout=120)
        self.api = ZStackClient(self.url, timeout=60)
        self.api.login()

    def stop_mn(self, sig: int) -> None:
        assert self.mn is not None
        self.mn.send_signal(sig)
        try:
            self.mn.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.mn.kill()
            self.mn.wait()

    def count(self, *conds: str) -> int:
        assert self.api is not None
        return self.api.call("QueryHost", conditions=[parse_condition(c) for c in conds], count=True)["total"]

    def status(self, uuid: str) -> str:
        assert self.api is not None
        return self.api.call("QueryHost", conditions=[parse_condition(f"uuid={uuid}")], fields=["status"])[
            "inventories"
        ][0]["status"]

    def pings(self) -> int:
        return self.sim.stats()["calls"].get("/host/ping", 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--interval", type=int, default=60, help="host ping interval, seconds")
    ap.add_argument("--rounds", type=int, default=3, help="ping intervals measured at steady state")
    ap.add_argument("--db-url", help="a PostgreSQL server URL; a fresh database is made and dropped")
    ap.add_argument("--quick", action="store_true", help="200 hosts, 2 s interval, 3 rounds")
    ap.add_argument(
        "--preconnected",
        action="store_true",
        help="seed the hosts Connected (agents already know the MN): phase 1 then times the MN's "
        "first ping round instead of connecting every host",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.hosts, args.interval, args.rounds = 200, 2, 3
    n, interval = args.hosts, args.interval
    home = Path(tempfile.mkdtemp(prefix="zstack-bench-hosts-"))
    db_url, drop = _database(args.db_url, home)
    sim_port = _port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.server",
            "--port",
            str(sim_port),
            "--threads",
            "16",
            "--log-level",
            "WARNING",
            "--key-file",
            str(home / "agent.key"),  # the MN's (made here, as the MN would)
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    b = Bench(args, home, db_url, sim_url)
    misses: list[str] = []
    try:
        _wait(sim_url, sim, "/simulator/stats")
        t0 = time.monotonic()
        uuids = seed(db_url, sim_url, n, b.url if args.preconnected else None, home)
        print(
            f"{n:,} hosts seeded in {time.monotonic() - t0:.1f} s (db: {db_url.split(':', 1)[0]}, "
            f"ping interval {interval} s; load {os.getloadavg()[0]:.2f})",
            flush=True,
        )

        # 1. connect: every host is new to the MN's agents
        t0 = time.monotonic()
        b.start_mn()
        assert b.api is not None and b.mn is not None
        b.api.call("UpdateGlobalConfig", category="host", name="ping.interval", value=str(interval))
        wait_until(
            lambda: b.pings() >= n and b.count("status=Connected") == n, timeout=max(600, n / 5), step=0.5
        )
        t_connect = time.monotonic() - t0
        what = "pinged by the new MN and" if args.preconnected else "connected by the MN:"
        print(
            f"start: all {n:,} hosts {what} Connected {t_connect:.1f} s after the MN process started "
            f"({n / t_connect:,.0f} hosts/s); MN {rss_mib(b.mn.pid):.0f} MiB resident (all its processes)",
            flush=True,
        )

        # 2. steady state
        time.sleep(interval + 1)
        c0, p0, w0 = cpu_seconds(b.mn.pid), b.pings(), time.monotonic()
        time.sleep(args.rounds * interval)
        cpu, pings, wall = cpu_seconds(b.mn.pid) - c0, b.pings() - p0, time.monotonic() - w0
        frac = cpu / wall
        scaled = cpu / max(pings, 1) * 10_000 / 60
        rss = rss_mib(b.mn.pid)
        print(
            f"steady: {pings:,} pings in {wall:.0f} s ({pings / wall:,.0f}/s); MN CPU {frac:.3f} core "
            f"({cpu / max(pings, 1) * 1e3:.2f} ms per ping; 10,000 hosts every 60 s -> {scaled:.3f} core); "
            f"{rss:.0f} MiB resident (all MN processes)",
            flush=True,
        )
        if scaled >= 0.25:
            misses.append("ping CPU")
        if rss >= 500:
            misses.append("memory")

        # 3. dead hosts: one stops answering pings, one vanishes (admin delete on the simulator)
        faulty, gone = uuids[n // 3], uuids[2 * n // 3]
        fault = b.sim.inject("/host/ping", target=faulty, mode="error", count=-1)
        b.sim.remove_host(gone)
        t0 = time.monotonic()
        t_fault = t_gone = None
        while t_fault is None or t_gone is None:
            if time.monotonic() - t0 > 4 * interval + 30:
                break
            now = time.monotonic() - t0
            if t_fault is None and b.status(faulty) == "Disconnected":
                t_fault = now
            if t_gone is None and b.status(gone) == "Disconnected":
                t_gone = now
            time.sleep(0.2)
        for label, t in (("ping fault", t_fault), ("host gone", t_gone)):
            shown = f"{t:.1f} s ({t / interval:.2f} intervals)" if t is not None else "NOT NOTICED"
            print(f"dead host ({label}): Disconnected after {shown}", flush=True)
            if t is None or t > 2 * interval:
                misses.append(f"dead host {label}")
        b.sim.remove_fault(fault)
        b.sim.add_host(gone, cpu_num=32, memory=256 * GB, management_ip=_ip(2 * n // 3))
        t_back = wait_until(lambda: b.count("status=Connected") == n, timeout=4 * interval + 60, step=0.5)
        print(f"dead hosts back: both Connected again {t_back:.1f} s after they answered", flush=True)

        # 4. restart: stop the MN (SIGTERM, then SIGKILL), start a new one
        for sig in (signal.SIGTERM, signal.SIGKILL):
            p0 = b.pings()
            t0 = time.monotonic()
            b.stop_mn(sig)
            b.start_mn()
            t_up = time.monotonic() - t0
            t_all = t_up + wait_until(
                lambda p0=p0: b.pings() - p0 >= n and b.count("status=Connected") == n, timeout=600, step=0.5
            )
            print(
                f"restart ({signal.Signals(sig).name}): MN answering {t_up:.1f} s after the stop; all {n:,} "
                f"hosts pinged by it and Connected {t_all:.1f} s after the stop; {rss_mib(b.mn.pid):.0f} MiB "
                f"resident",
                flush=True,
            )
            if t_all > 120:
                misses.append(f"restart {signal.Signals(sig).name}")
        print("targets: " + ("all met" if not misses else "MISSED " + ", ".join(misses)))
        return 0
    finally:
        if b.mn is not None and b.mn.poll() is None:
            b.stop_mn(signal.SIGTERM)
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
        drop()


def _database(server_url: str | None, home: Path) -> tuple[str, Callable[[], None]]:
    if not server_url or server_url.startswith("sqlite"):
        return f"sqlite:///{home / 'zstack.db'}", lambda: None
    url = make_url(server_url)
    name = f"zbh_{uuidlib.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


if __name__ == "__main__":
    sys.exit(main())
