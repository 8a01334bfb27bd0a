"""Kill the MN (SIGKILL) while VMs are being created; after a restart nothing may be left in a
transitional state and every host's capacity must equal what its running VMs hold."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from integration.envs import assert_consistent, build_env, slow_creation, unique
from mn.client import ZStackClient


@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_during_vm_creation_leaves_nothing_transitional(sim, mn_proc, processes):
    """With 2 processes every worker is killed too (the process group: a crash of the machine);
    the restarted MN's first worker recovers the jobs of both."""
    from simulator.client import SimulatorAdmin

    spawn, procs, _ = mn_proc
    # Few job workers spread the creations over time: when the kill lands some VMs are Running,
    # some are mid-flow and some are still queued.
    url = spawn(workers=4, processes=processes)
    api = ZStackClient(url)
    api.login()
    env = build_env(api, hosts=3, cpu=64)
    admin = SimulatorAdmin(sim.url)
    slow_creation(admin)
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
        os.killpg(procs[-1].pid, signal.SIGKILL)
        procs[-1].wait()
    finally:
        admin.clear_faults()

    url = spawn(processes=processes)
    api = ZStackClient(url)
    api.login()
    # Every job ended (succeeded before the kill, or failed by recovery).
    interrupted = 0
    for j in jobs:
        r = api.http.request("GET", f"{url}/zstack/api/result/{j}")
        assert r.status == 200 and b'"Processing"' not in r.data, r.data
        interrupted += b"restarted while" in r.data
    assert interrupted, "the kill should have interrupted some creations"
    assert_consistent(api, admin, env)
