"""Every step of CreateVmInstance and StartVmInstance fails once; each failure must leave capacity,
IPs, volumes, NICs and VM states exactly as they were."""

from __future__ import annotations

import pytest

from integration.envs import build_env, snapshot, unique
from mn.client import ClientError

CREATE_STEPS = ["allocate", "root-volume", "data-volumes", "prepare-net", "start", "finalize"]
START_STEPS = ["begin", "allocate-host", "instantiate-volumes", "prepare-net", "start", "finalize"]
AGENT_FAULTS = ["/primarystorage/volume/createfromimage", "/primarystorage/volume/createempty", "/vm/start"]


@pytest.fixture(scope="module")
def env(api):
    return build_env(api, hosts=2)


@pytest.fixture(scope="module")
def admin(sim):
    from simulator.client import SimulatorAdmin

    a = SimulatorAdmin(sim.url)
    yield a
    a.clear_faults()


@pytest.fixture
def faults(mn):
    f: set[str] = set()
    mn.services.flow_faults = f
    yield f
    f.clear()


def _create(api, env, **kw):
    return api.call("CreateVmInstance", name=unique("rb"), instanceOfferingUuid=env.offering,
                    imageUuid=env.image, l3NetworkUuids=[env.l3], dataDiskSizes=[1 << 30], **kw)


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_create_step_failure_rolls_back(api, env, faults, step):
    before = snapshot(api, env)
    faults.add(f"create-vm:{step}")
    with pytest.raises(ClientError, match=f"injected failure after step {step}"):
        _create(api, env)
    faults.clear()
    assert snapshot(api, env) == before


@pytest.mark.parametrize("path", AGENT_FAULTS)
def test_create_agent_failure_rolls_back(api, env, admin, path):
    before = snapshot(api, env)
    sim_vms = {h: set(admin.host(h)["vms"]) for h in env.hosts}
    admin.inject(path, mode="fail", count=1)
    try:
        with pytest.raises(ClientError, match="failed"):
            _create(api, env)
    finally:
        admin.clear_faults()
    assert snapshot(api, env) == before
    assert {h: set(admin.host(h)["vms"]) for h in env.hosts} == sim_vms


@pytest.mark.parametrize("step", START_STEPS)
def test_start_step_failure_rolls_back(api, env, faults, step):
    vm = _create(api, env, strategy="JustCreate")["inventory"]
    before = snapshot(api, env)
    faults.add(f"start-vm:{step}")
    with pytest.raises(ClientError, match=f"injected failure after step {step}"):
        api.call("StartVmInstance", uuid=vm["uuid"])
    faults.clear()
    assert snapshot(api, env) == before
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])


def test_start_agent_failure_rolls_back(api, env, admin):
    vm = _create(api, env)["inventory"]
    api.call("StopVmInstance", uuid=vm["uuid"])
    before = snapshot(api, env)
    admin.inject("/vm/start", mode="fail", count=1)
    try:
        with pytest.raises(ClientError):
            api.call("StartVmInstance", uuid=vm["uuid"])
    finally:
        admin.clear_faults()
    assert snapshot(api, env) == before
    assert api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]["state"] == "Running"
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])
