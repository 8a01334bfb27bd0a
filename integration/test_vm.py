"""VM lifecycle end to end: MN and simulator over real HTTP, driven through the public API."""

from __future__ import annotations

import pytest

from integration.envs import GB, build_env, snapshot, unique
from mn.client import ClientError


@pytest.fixture(scope="module")
def env(api):
    return build_env(api, hosts=2)


@pytest.fixture(scope="module")
def admin(sim):
    from simulator.client import SimulatorAdmin

    return SimulatorAdmin(sim.url)


def sim_vm(admin, host_uuid, vm_uuid):
    return admin.host(host_uuid)["vms"].get(vm_uuid)


def host_caps(api, host_uuid):
    h = api.query("QueryHost", f"uuid={host_uuid}")[0]
    return h["availableCpuCapacity"], h["availableMemoryCapacity"]


def test_vm_lifecycle_over_rpc(api, env, admin):
    before = snapshot(api, env)
    vm = api.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    assert vm["state"] == "Running" and vm["hostUuid"] in env.hosts
    assert vm["cpuNum"] == 1 and vm["memorySize"] == GB
    nic = vm["vmNics"][0]
    assert nic["ip"].startswith("10.") and nic["l3NetworkUuid"] == env.l3 and nic["usedIps"][0]["ip"] == nic["ip"]
    root = [v for v in vm["allVolumes"] if v["type"] == "Root"][0]
    assert root["status"] == "Ready" and root["installPath"] and root["size"] >= GB
    assert sim_vm(admin, vm["hostUuid"], vm["uuid"])["state"] == "Running"
    total = api.query("QueryHost", f"uuid={vm['hostUuid']}")[0]["totalCpuCapacity"]
    assert host_caps(api, vm["hostUuid"])[0] == total - 1

    vm = api.call("StopVmInstance", uuid=vm["uuid"])["inventory"]
    assert vm["state"] == "Stopped" and vm["hostUuid"] is None and vm["lastHostUuid"]
    assert host_caps(api, vm["lastHostUuid"])[0] == total
    vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
    assert vm["state"] == "Running"
    assert api.call("RebootVmInstance", uuid=vm["uuid"])["inventory"]["state"] == "Running"
    assert api.call("PauseVmInstance", uuid=vm["uuid"])["inventory"]["state"] == "Paused"
    assert sim_vm(admin, vm["hostUuid"], vm["uuid"])["state"] == "Paused"
    assert api.call("ResumeVmInstance", uuid=vm["uuid"])["inventory"]["state"] == "Running"

    src = vm["hostUuid"]
    dest = [h for h in env.hosts if h != src][0]
    cands = api.call("GetVmMigrationCandidateHosts", vmInstanceUuid=vm["uuid"])["inventories"]
    assert [h["uuid"] for h in cands] == [dest]
    vm = api.call("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=dest)["inventory"]
    assert vm["hostUuid"] == dest and vm["state"] == "Running"
    assert sim_vm(admin, dest, vm["uuid"])["state"] == "Running"
    assert sim_vm(admin, src, vm["uuid"]) is None
    assert host_caps(api, src)[0] == total and host_caps(api, dest)[0] == total - 1

    api.call("DestroyVmInstance", uuid=vm["uuid"])
    assert api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Destroyed"
    assert sim_vm(admin, dest, vm["uuid"]) is None
    assert api.call("RecoverVmInstance", uuid=vm["uuid"])["inventory"]["state"] == "Stopped"
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])
    assert api.query("QueryVmInstance", f"uuid={vm['uuid']}") == []
    assert snapshot(api, env) == before


def test_vm_lifecycle_over_rest(api, env, admin):
    before = snapshot(api, env)
    status, body = api.rest("POST", "/vm-instances", {"params": {
        "name": unique("rest-vm"), "instanceOfferingUuid": env.offering, "imageUuid": env.image,
        "l3NetworkUuids": [env.l3]}})
    assert status == 200, body
    vm = body["inventory"]
    assert vm["state"] == "Running"
    status, body = api.rest("PUT", f"/vm-instances/{vm['uuid']}/actions", {"stopVmInstance": {"type": "cold"}})
    assert status == 200 and body["inventory"]["state"] == "Stopped"
    status, body = api.rest("GET", f"/vm-instances/{vm['uuid']}")
    assert status == 200 and body["inventories"][0]["state"] == "Stopped"
    status, body = api.rest("PUT", f"/vm-instances/{vm['uuid']}/actions", {"startVmInstance": {}})
    assert status == 200 and body["inventory"]["state"] == "Running"
    # A wrong-state call is a clear 503 error with ZStack's error shape.
    status, body = api.rest("PUT", f"/vm-instances/{vm['uuid']}/actions", {"resumeVmInstance": {}})
    assert status == 503 and body["error"]["code"] == "VM.1001" and "Running" in body["error"]["details"]
    status, body = api.rest("DELETE", f"/vm-instances/{vm['uuid']}")
    assert status == 200
    status, body = api.rest("PUT", f"/vm-instances/{vm['uuid']}/actions", {"expungeVmInstance": {}})
    assert status == 200
    assert snapshot(api, env) == before


def test_create_vm_bad_input_leaves_nothing(api, env):
    before = snapshot(api, env)
    cases = [
        ({"instanceOfferingUuid": env.offering, "l3NetworkUuids": [env.l3]}, "SYS.1007"),      # no image
        ({"instanceOfferingUuid": env.offering, "imageUuid": env.image}, "SYS.1007"),          # no L3
        ({"instanceOfferingUuid": "f" * 32, "imageUuid": env.image, "l3NetworkUuids": [env.l3]}, "SYS.1003"),
        ({"cpuNum": "two", "memorySize": GB, "imageUuid": env.image, "l3NetworkUuids": [env.l3]}, "SYS.1007"),
        ({"cpuNum": 1000, "memorySize": GB, "imageUuid": env.image, "l3NetworkUuids": [env.l3]},
         "HOST_ALLOCATION.1001"),
        ({"instanceOfferingUuid": env.offering, "imageUuid": env.image, "l3NetworkUuids": [env.l3],
          "systemTags": [f"staticIp::{env.l3}::192.168.99.99"]}, "L3.1001"),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as e:
            api.call("CreateVmInstance", name=unique("bad"), **params)
        assert e.value.code == code, (params, e.value.error)
        assert e.value.error["details"]
    assert snapshot(api, env) == before


def test_static_ip_nics_and_offering(api, env, admin):
    before = snapshot(api, env)
    octets = api.query("QueryIpRange", f"uuid={env.ip_range}")[0]["startIp"].rsplit(".", 1)[0]
    vm = api.call("CreateVmInstance", name=unique("static"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3],
                  systemTags=[f"staticIp::{env.l3}::{octets}.77"])["inventory"]
    assert vm["vmNics"][0]["ip"] == f"{octets}.77"
    vm = api.call("SetVmStaticIp", vmInstanceUuid=vm["uuid"], l3NetworkUuid=env.l3, ip=f"{octets}.78")["inventory"]
    assert vm["vmNics"][0]["ip"] == f"{octets}.78"
    ips = {i["ip"] for i in api.query("QueryIpAddress", f"l3NetworkUuid={env.l3}")}
    assert f"{octets}.78" in ips and f"{octets}.77" not in ips

    l3b = api.call("CreateL3Network", name=unique("l3b"), l2NetworkUuid=env.l2)["inventory"]["uuid"]
    api.call("AddIpRangeByNetworkCidr", l3NetworkUuid=l3b, name="r", networkCidr="172.30.0.0/24")
    vm = api.call("AttachL3NetworkToVm", vmInstanceUuid=vm["uuid"], l3NetworkUuid=l3b)["inventory"]
    assert len(vm["vmNics"]) == 2
    nic_b = [n for n in vm["vmNics"] if n["l3NetworkUuid"] == l3b][0]
    assert len(sim_vm(admin, vm["hostUuid"], vm["uuid"])["nics"]) == 2
    vm = api.call("DetachL3NetworkFromVm", vmNicUuid=nic_b["uuid"])["inventory"]
    assert len(vm["vmNics"]) == 1
    assert len(sim_vm(admin, vm["hostUuid"], vm["uuid"])["nics"]) == 1

    big = api.call("CreateInstanceOffering", name=unique("big"), cpuNum=2, memorySize=2 * GB)["inventory"]["uuid"]
    cpu_before = host_caps(api, vm["hostUuid"])[0]
    vm = api.call("ChangeInstanceOffering", vmInstanceUuid=vm["uuid"], instanceOfferingUuid=big)["inventory"]
    assert vm["cpuNum"] == 2 and host_caps(api, vm["hostUuid"])[0] == cpu_before - 1
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])
    api.call("DeleteL3Network", uuid=l3b)
    assert snapshot(api, env) == before


def test_data_volumes(api, env, admin):
    before = snapshot(api, env)
    vm = api.call("CreateVmInstance", name=unique("vol"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    vol = api.call("CreateDataVolume", name=unique("data"), diskSize=10 * GB)["inventory"]
    assert vol["status"] == "NotInstantiated"
    vol = api.call("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=vm["uuid"])["inventory"]
    assert vol["status"] == "Ready" and vol["vmInstanceUuid"] == vm["uuid"] and vol["deviceId"] == 1
    assert vol["primaryStorageUuid"] == env.ps
    assert vol["uuid"] in [v["volumeUuid"] for v in sim_vm(admin, vm["hostUuid"], vm["uuid"])["volumes"]] or \
        any(vol["uuid"] in str(v) for v in sim_vm(admin, vm["hostUuid"], vm["uuid"])["volumes"])
    with pytest.raises(ClientError, match="already attached"):
        api.call("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=vm["uuid"])
    vol = api.call("DetachDataVolumeFromVm", uuid=vol["uuid"])["inventory"]
    assert vol["vmInstanceUuid"] is None and vol["lastVmInstanceUuid"] == vm["uuid"]
    api.call("DeleteDataVolume", uuid=vol["uuid"])
    assert api.query("QueryVolume", f"uuid={vol['uuid']}")[0]["status"] == "Deleted"
    api.call("ExpungeDataVolume", uuid=vol["uuid"])
    assert api.query("QueryVolume", f"uuid={vol['uuid']}") == []
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])
    assert snapshot(api, env) == before


def test_vm_stopped_by_the_guest_is_noticed(api, env, admin):
    import time

    vm = api.call("CreateVmInstance", name=unique("guest"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    admin.set_vm_state(vm["hostUuid"], vm["uuid"], "Stopped")
    deadline = time.time() + 10
    while time.time() < deadline:
        if api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Stopped":
            break
        time.sleep(0.1)
    assert api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Stopped"
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])


def _wait(pred, what: str, timeout: float = 20.0) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_vm_on_an_unreachable_host_can_be_destroyed_and_is_cleaned_up_on_reconnect(api, env, admin):
    vm = api.call("CreateVmInstance", name=unique("lost"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    host = vm["hostUuid"]
    api.call("UpdateGlobalConfig", category="host", name="ping.interval", value="1")
    admin.inject("/host/ping", target=host, mode="fail", count=-1)
    try:
        _wait(lambda: api.query("QueryHost", f"uuid={host}")[0]["status"] == "Disconnected", "host Disconnected")
        _wait(lambda: api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Unknown", "VM Unknown")
        admin.inject("/vm/destroy", target=host, mode="fail", count=-1)  # the host cannot be reached
        api.call("DestroyVmInstance", uuid=vm["uuid"])  # the host does not answer: best effort
        assert api.query("QueryVmInstance", f"uuid={vm['uuid']}")[0]["state"] == "Destroyed"
        assert sim_vm(admin, host, vm["uuid"]) is not None  # still running where nobody can reach it
    finally:
        admin.clear_faults()
    try:
        _wait(lambda: api.query("QueryHost", f"uuid={host}")[0]["status"] == "Connected", "host reconnected")
        _wait(lambda: sim_vm(admin, host, vm["uuid"]) is None, "the stray VM destroyed on reconnect")
    finally:
        api.call("UpdateGlobalConfig", category="host", name="ping.interval", value="60")
    api.call("ExpungeVmInstance", uuid=vm["uuid"])
    h = api.query("QueryHost", f"uuid={host}")[0]
    held = sum(v["cpuNum"] for v in api.query("QueryVmInstance", f"hostUuid={host}"))
    assert h["availableCpuCapacity"] == h["totalCpuCapacity"] - held


def test_slow_agent_commands_reply_by_callback_quick_ones_inline(api, env, admin, sim):
    """The MN asks agents to reply inline within 1 s (replywithin); a start that takes longer is
    answered by callback to POST /agent/callback, and the creation goes on from there."""
    tasks = sim.tasks
    inline, delivered = tasks.inline, tasks.delivered
    vm = api.call("CreateVmInstance", name=unique("quick"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    assert vm["state"] == "Running"
    # the root volume and the start: inline (a CPU-starved simulator may still take over 1 s for one)
    _wait(lambda: (tasks.inline - inline) + (tasks.delivered - delivered) == 2, "both replies counted")
    assert tasks.inline > inline
    quick = vm["uuid"]
    delivered = tasks.delivered
    admin.inject("/vm/start", mode="slow", delay=1.5, count=1)
    try:
        vm = api.call("CreateVmInstance", name=unique("slow"), instanceOfferingUuid=env.offering,
                      imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    finally:
        admin.clear_faults()
    assert vm["state"] == "Running" and sim_vm(admin, vm["hostUuid"], vm["uuid"])["state"] == "Running"
    # the slow start came back by callback (counted once the MN has acknowledged it)
    _wait(lambda: tasks.delivered >= delivered + 1, "the slow start's reply delivered by callback")
    for uuid in (quick, vm["uuid"]):
        api.call("DestroyVmInstance", uuid=uuid)
        api.call("ExpungeVmInstance", uuid=uuid)
