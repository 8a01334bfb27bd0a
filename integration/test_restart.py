"""Kill the MN (SIGKILL) while VMs are being created; after a restart nothing may be left in a
transitional state and every host's capacity must equal what its running VMs hold."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3

from integration.conftest import make_db_url
from integration.envs import build_env, unique
from mn.client import ZStackClient

TRANSITIONAL = {"Starting", "Stopping", "Rebooting", "Pausing", "Resuming", "Migrating", "Destroying",
                "Expunging"}
HOLDING = {"Starting", "Running", "Stopping", "Rebooting", "Pausing", "Paused", "Resuming", "Migrating",
           "Unknown", "Destroying"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(home: Path, db_url: str, port: int, sim_url: str, workers: int) -> subprocess.Popen:
    log = open(home / f"mn-{time.time():.0f}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "mn.server", "--home", str(home), "--db-url", db_url, "--port", str(port),
         "--host", "127.0.0.1", "--simulator-url", sim_url, "--log-level", "WARNING",
         "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    http = urllib3.PoolManager(retries=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MN exited with {proc.returncode}")
        try:
            if http.request("GET", f"{url}/health", timeout=2).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the MN did not become ready")


@pytest.fixture
def mn_proc(sim, tmp_path):
    db_url, cleanup = make_db_url(tmp_path)
    port = _free_port()
    procs: list[subprocess.Popen] = []

    def spawn(workers: int = 32) -> str:
        p = _spawn(tmp_path, db_url, port, sim.url, workers)
        procs.append(p)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, p)
        return url

    yield spawn, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    cleanup()


def test_sigkill_during_vm_creation_leaves_nothing_transitional(sim, mn_proc):
    from simulator.client import SimulatorAdmin

    spawn, procs = mn_proc
    # Few job workers spread the creations over time: when the kill lands some VMs are Running,
    # some are mid-flow and some are still queued.
    url = spawn(workers=4)
    api = ZStackClient(url)
    api.login()
    env = build_env(api, hosts=3, cpu=64)
    admin = SimulatorAdmin(sim.url)
    # Slow agent steps widen the window in which the kill lands mid-flow.
    admin.inject("/primarystorage/volume/createfromimage", mode="slow", delay=0.3, count=-1)
    admin.inject("/vm/start", mode="slow", delay=0.3, count=-1)
    jobs = []
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(api.submit, "CreateVmInstance", name=unique("kill"),
                                   instanceOfferingUuid=env.offering, imageUuid=env.image,
                                   l3NetworkUuids=[env.l3], dataDiskSizes=[1 << 30]) for _ in range(30)]
            jobs = [f.result()["uuid"] for f in futures]
        deadline = time.time() + 60
        while len(api.query("QueryVmInstance", f"zoneUuid={env.zone}", "state=Running")) < 4:
            assert time.time() < deadline, "VM creation made no progress"
            time.sleep(0.05)
        os.kill(procs[-1].pid, signal.SIGKILL)
        procs[-1].wait()
    finally:
        admin.clear_faults()

    url = spawn()
    api = ZStackClient(url)
    api.login()
    # Every job ended (succeeded before the kill, or failed by recovery).
    interrupted = 0
    for j in jobs:
        r = api.http.request("GET", f"{url}/zstack/api/result/{j}")
        assert r.status == 200 and b'"Processing"' not in r.data, r.data
        interrupted += b"restarted while" in r.data
    assert interrupted, "the kill should have interrupted some creations"
    vms = api.query("QueryVmInstance", f"zoneUuid={env.zone}")
    assert not [v for v in vms if v["state"] in TRANSITIONAL]
    assert not [v for v in api.query("QueryVolume") if v["status"] == "Creating"]
    for h in api.query("QueryHost", f"clusterUuid={env.cluster}"):
        held = sum(v["cpuNum"] for v in vms if v["hostUuid"] == h["uuid"] and v["state"] in HOLDING)
        assert h["availableCpuCapacity"] == h["totalCpuCapacity"] - held, h
        # The simulated host runs exactly the VMs the database says run there.
        sim_running = {u for u, v in admin.host(h["uuid"])["vms"].items() if v["state"] == "Running"}
        db_running = {v["uuid"] for v in vms if v["hostUuid"] == h["uuid"] and v["state"] == "Running"}
        assert sim_running == db_running
    # IPs are held only by NICs that exist.
    nics = {n["uuid"] for n in api.query("QueryVmNic", f"l3NetworkUuid={env.l3}")}
    for ip in api.query("QueryIpAddress", f"l3NetworkUuid={env.l3}"):
        assert ip["vmNicUuid"] in nics
