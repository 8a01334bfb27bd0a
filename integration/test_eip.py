"""VIPs and EIPs end to end: every API over RPC and REST, ZStack's rules (refusals leave nothing
behind), rollback when a host fails to apply an EIP, EIPs following their VMs (stop, start,
migrate, destroy, expunge), cascades, and a reconnecting host getting its EIPs back.

What a host has applied is read from the simulator (its admin view lists applied EIPs by VIP).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from integration.agent_keys import signed_client
from integration.envs import Env, add_public_network, build_env, unique
from kvmagent import protocol as p
from mn.catalogue.catalog import load_catalog
from mn.client import ClientError, ZStackClient
from zstack_plugins.eip import protocol as eipp

TRANSPORTS = ("rpc", "rest")


def call(api: ZStackClient, transport: str, api_name: str, /, **params: Any) -> dict[str, Any]:
    """One API call through RPC, or through REST built from the catalogue's path and method."""
    if transport == "rpc":
        return api.call(api_name, **params)
    spec = load_catalog().api(api_name)
    path = spec.rest.path
    for key in [k for k in params if "{" + k + "}" in path]:
        path = path.replace("{" + key + "}", str(params.pop(key)))
    method = spec.rest.method
    if method == "POST":
        tags = {k: params.pop(k) for k in ("systemTags", "userTags") if k in params}
        status, body = api.rest("POST", path, {"params": params, **tags})
    elif method == "PUT":
        status, body = api.rest("PUT", path, {spec.action_key: params})
    else:
        fields = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()]
        status, body = api.rest(method, path, fields=fields)
    if status != 200:
        raise ClientError(api_name, body.get("error") or body, status)
    return body


@pytest.fixture(scope="module")
def admin(sim):  # noqa: ANN001, ANN201
    from simulator.client import SimulatorAdmin

    a = SimulatorAdmin(sim.url)
    yield a
    a.clear_faults()


@pytest.fixture(scope="module")
def env(api: ZStackClient) -> Env:
    e = build_env(api, hosts=2)
    e.extra["pub_l2"], e.extra["pub_l3"] = add_public_network(api, e, int(e.prefix[-2:], 16) % 200)
    return e


@pytest.fixture
def faults(mn) -> Iterator[set[str]]:  # noqa: ANN001
    f: set[str] = set()
    mn.services.flow_faults = f
    yield f
    f.clear()


def new_vm(api: ZStackClient, env: Env, **kw: Any) -> dict[str, Any]:
    return api.call("CreateVmInstance", name=unique("eipvm"), instanceOfferingUuid=env.offering,
                    imageUuid=env.image, l3NetworkUuids=[env.l3], **kw)["inventory"]


def new_vip(api: ZStackClient, env: Env, **kw: Any) -> dict[str, Any]:
    return api.call("CreateVip", name=unique("vip"), l3NetworkUuid=env.extra["pub_l3"], **kw)["inventory"]


def applied(admin: Any, env: Env) -> dict[str, dict[str, Any]]:
    """VIP -> (host, EIP) of every EIP the env's simulated hosts have applied."""
    out = {}
    for h in env.hosts:
        for vip, e in admin.host(h)["eips"].items():
            assert vip not in out, f"VIP {vip} is applied on two hosts"
            out[vip] = {"host": h, **e}
    return out


def vm_of(api: ZStackClient, uuid: str) -> dict[str, Any]:
    return api.query("QueryVmInstance", f"uuid={uuid}")[0]


def fails(code: str, fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value.error
    return info.value.error["details"]


def world_of(api: ZStackClient, env: Env) -> dict[str, Any]:
    """What a refused call must leave unchanged: VIPs, EIPs, public IPs."""
    return {
        "vips": sorted((v["uuid"], v["useFor"]) for v in api.query("QueryVip", f"l3NetworkUuid={env.extra['pub_l3']}")),
        "eips": sorted((e["uuid"], e["vmNicUuid"], e["state"])
                       for e in api.query("QueryEip", f"vip.l3NetworkUuid={env.extra['pub_l3']}")),
        "ips": sorted(i["ip"] for i in api.query("QueryIpAddress", f"l3NetworkUuid={env.extra['pub_l3']}")),
    }


# ---- VIPs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_vip_apis(api: ZStackClient, env: Env, transport: str) -> None:
    pub = env.extra["pub_l3"]
    ip = "172.{}.0.{}".format(int(env.prefix[-2:], 16) % 200, 50 if transport == "rpc" else 51)
    vip = call(api, transport, "CreateVip", name="v1", l3NetworkUuid=pub, requiredIp=ip,
               description="d")["inventory"]
    assert vip["ip"] == ip and vip["state"] == "Enabled" and vip["netmask"] == "255.255.255.0"
    assert vip["prefixLen"] == 24 and vip["gateway"].endswith(".0.1") and vip["useFor"] is None
    assert vip["peerL3NetworkUuids"] == [] and vip["servicesRefs"] == []
    used = api.query("QueryIpAddress", f"l3NetworkUuid={pub}", f"ip={ip}")
    assert len(used) == 1 and used[0]["usedFor"] == "Vip"
    v = call(api, transport, "UpdateVip", uuid=vip["uuid"], name="v2")["inventory"]
    assert v["name"] == "v2" and v["description"] == "d"
    v = call(api, transport, "ChangeVipState", uuid=vip["uuid"], stateEvent="disable")["inventory"]
    assert v["state"] == "Disabled"
    assert [x["uuid"] for x in call(api, transport, "QueryVip", conditions=[
        {"name": "ip", "op": "=", "value": ip}])["inventories"]] == [vip["uuid"]]
    call(api, transport, "DeleteVip", uuid=vip["uuid"])
    assert api.query("QueryVip", f"uuid={vip['uuid']}") == []
    assert api.query("QueryIpAddress", f"l3NetworkUuid={pub}", f"ip={ip}") == []


def test_vip_in_a_range_and_random(api: ZStackClient, env: Env) -> None:
    rng = api.query("QueryIpRange", f"l3NetworkUuid={env.extra['pub_l3']}")[0]
    a = new_vip(api, env, ipRangeUuid=rng["uuid"])
    b = new_vip(api, env)
    lo = int(rng["startIp"].rsplit(".", 1)[1])
    hi = int(rng["endIp"].rsplit(".", 1)[1])
    for v in (a, b):
        assert lo <= int(v["ip"].rsplit(".", 1)[1]) <= hi
    assert a["ip"] != b["ip"]
    for v in (a, b):
        api.call("DeleteVip", uuid=v["uuid"])


def test_vip_refusals_leave_nothing_behind(api: ZStackClient, env: Env) -> None:
    taken = new_vip(api, env)
    before = world_of(api, env)
    pub = env.extra["pub_l3"]
    other_range = api.query("QueryIpRange", f"l3NetworkUuid={env.l3}")[0]["uuid"]
    assert "already used" in fails("L3.1001", new_vip, api, env, requiredIp=taken["ip"])
    assert "not in any IP range" in fails("L3.1001", new_vip, api, env, requiredIp="192.0.2.1")
    assert "not a valid IPv4" in fails("SYS.1007", new_vip, api, env, requiredIp="300.1.1.1")
    assert "is not an IP range of" in fails("SYS.1007", new_vip, api, env, ipRangeUuid=other_range)
    assert "IPv4 only" in fails("SYS.1007", new_vip, api, env, ipVersion=6)
    fails("SYS.1003", api.call, "CreateVip", name="x", l3NetworkUuid="0" * 32)
    api.call("ChangeL3NetworkState", uuid=pub, stateEvent="disable")
    try:
        assert "enabled networks only" in fails("SYS.1007", new_vip, api, env)
    finally:
        api.call("ChangeL3NetworkState", uuid=pub, stateEvent="enable")
    fails("SYS.1003", api.call, "DeleteVip", uuid="0" * 32)
    assert world_of(api, env) == before
    api.call("DeleteVip", uuid=taken["uuid"])


# ---- EIPs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_eip_apis(api: ZStackClient, env: Env, admin: Any, transport: str) -> None:
    vm = new_vm(api, env)
    nic = vm["vmNics"][0]
    vip = new_vip(api, env)
    eip = call(api, transport, "CreateEip", name="e1", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])["inventory"]
    assert (eip["vipIp"], eip["guestIp"], eip["vmNicUuid"], eip["state"]) == (vip["ip"], nic["ip"], nic["uuid"],
                                                                              "Enabled")
    on = applied(admin, env)[vip["ip"]]
    assert (on["host"], on["guestIp"], on["nicMac"], on["eipUuid"]) == (vm["hostUuid"], nic["ip"], nic["mac"],
                                                                         eip["uuid"])
    assert on["guestBridgeName"] == p.bridge_name(env.l2) and on["vipBridgeName"] == p.bridge_name(env.extra["pub_l2"])
    v = api.query("QueryVip", f"uuid={vip['uuid']}")[0]
    assert v["useFor"] == "Eip" and v["serviceProvider"] == "Flat" and v["peerL3NetworkUuids"] == [env.l3]
    assert [r["uuid"] for r in v["servicesRefs"]] == [eip["uuid"]]
    # queries through the new expansions
    assert [e["uuid"] for e in api.query("QueryEip", f"vipIp={vip['ip']}")] == [eip["uuid"]]
    assert [e["uuid"] for e in api.query("QueryEip", f"vmNic.vmInstance.name={vm['name']}")] == [eip["uuid"]]
    assert [x["uuid"] for x in api.query("QueryVip", f"eip.vmNic.vmInstance.name={vm['name']}")] == [vip["uuid"]]
    assert [x["uuid"] for x in api.query("QueryVmInstance", f"vmNics.eip.vipIp={vip['ip']}")] == [vm["uuid"]]

    e = call(api, transport, "DetachEip", uuid=eip["uuid"])["inventory"]
    assert e["vmNicUuid"] is None and e["guestIp"] is None and vip["ip"] not in applied(admin, env)
    assert api.query("QueryVip", f"uuid={vip['uuid']}")[0]["peerL3NetworkUuids"] == []
    cands = call(api, transport, "GetEipAttachableVmNics", eipUuid=eip["uuid"], vmUuid=vm["uuid"])
    assert [n["uuid"] for n in cands["inventories"]] == [nic["uuid"]] and cands["more"] is False
    eips = call(api, transport, "GetVmNicAttachableEips", vmNicUuid=nic["uuid"])["inventories"]
    assert eip["uuid"] in [x["uuid"] for x in eips]
    e = call(api, transport, "AttachEip", eipUuid=eip["uuid"], vmNicUuid=nic["uuid"])["inventory"]
    assert e["guestIp"] == nic["ip"] and applied(admin, env)[vip["ip"]]["eipUuid"] == eip["uuid"]
    assert call(api, transport, "GetEipAttachableVmNics", eipUuid=eip["uuid"])["inventories"] == []
    assert eip["uuid"] not in [x["uuid"] for x in call(api, transport, "GetVmNicAttachableEips",
                                                       vmNicUuid=nic["uuid"])["inventories"]]

    e = call(api, transport, "ChangeEipState", uuid=eip["uuid"], stateEvent="disable")["inventory"]
    assert e["state"] == "Disabled" and e["vmNicUuid"] == nic["uuid"] and vip["ip"] not in applied(admin, env)
    call(api, transport, "ChangeEipState", uuid=eip["uuid"], stateEvent="enable")
    assert vip["ip"] in applied(admin, env)
    call(api, transport, "ChangeVipState", uuid=vip["uuid"], stateEvent="disable")
    assert vip["ip"] not in applied(admin, env)
    call(api, transport, "ChangeVipState", uuid=vip["uuid"], stateEvent="enable")
    assert vip["ip"] in applied(admin, env)
    e = call(api, transport, "UpdateEip", uuid=eip["uuid"], name="e2", description="dd")["inventory"]
    assert (e["name"], e["description"]) == ("e2", "dd")

    call(api, transport, "DeleteEip", uuid=eip["uuid"])
    assert api.query("QueryEip", f"uuid={eip['uuid']}") == [] and vip["ip"] not in applied(admin, env)
    v = api.query("QueryVip", f"uuid={vip['uuid']}")[0]
    assert v["useFor"] is None and v["servicesRefs"] == []
    api.call("DeleteVip", uuid=vip["uuid"])
    api.call("DestroyVmInstance", uuid=vm["uuid"])


def test_eip_without_a_nic_then_attached_to_a_stopped_vm(api: ZStackClient, env: Env, admin: Any) -> None:
    vm = new_vm(api, env)
    api.call("StopVmInstance", uuid=vm["uuid"])
    vip = new_vip(api, env)
    eip = api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"])["inventory"]
    assert eip["vmNicUuid"] is None and eip["guestIp"] is None
    api.call("AttachEip", eipUuid=eip["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])
    assert vip["ip"] not in applied(admin, env)  # a stopped VM is on no host
    vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    api.call("DeleteVip", uuid=vip["uuid"])  # cascades to the EIP, which leaves the host
    assert api.query("QueryEip", f"uuid={eip['uuid']}") == [] and vip["ip"] not in applied(admin, env)
    api.call("DestroyVmInstance", uuid=vm["uuid"])


def test_eip_rules_leave_nothing_behind(api: ZStackClient, env: Env, admin: Any) -> None:
    vm, vm2 = new_vm(api, env), new_vm(api, env)
    nic = vm["vmNics"][0]
    vip, vip2, vip3 = new_vip(api, env), new_vip(api, env), new_vip(api, env)
    eip = api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])["inventory"]
    free = api.call("CreateEip", name=unique("e"), vipUuid=vip3["uuid"])["inventory"]
    # a NIC on the VIP's own network
    pub_vm = api.call("CreateVmInstance", name=unique("pubvm"), instanceOfferingUuid=env.offering,
                      imageUuid=env.image, l3NetworkUuids=[env.extra["pub_l3"]])["inventory"]
    before, on_hosts = world_of(api, env), applied(admin, env)
    assert "already used by EipVO" in fails("SYS.1007", api.call, "CreateEip", name="x", vipUuid=vip["uuid"])
    assert "one EIP per public network" in fails("SYS.1007", api.call, "CreateEip", name="x", vipUuid=vip2["uuid"],
                                                 vmNicUuid=nic["uuid"])
    assert "one EIP per public network" in fails("SYS.1007", api.call, "AttachEip", eipUuid=free["uuid"],
                                                 vmNicUuid=nic["uuid"])
    assert "the network of" in fails("SYS.1007", api.call, "CreateEip", name="x", vipUuid=vip2["uuid"],
                                     vmNicUuid=pub_vm["vmNics"][0]["uuid"])
    assert "already attached" in fails("SYS.1007", api.call, "AttachEip", eipUuid=eip["uuid"],
                                       vmNicUuid=pub_vm["vmNics"][0]["uuid"])
    assert "not attached" in fails("SYS.1007", api.call, "DetachEip", uuid=free["uuid"])
    assert "is not the IP of" in fails("SYS.1007", api.call, "CreateEip", name="x", vipUuid=vip2["uuid"],
                                       vmNicUuid=nic["uuid"], usedIpUuid="0" * 32)
    fails("SYS.1003", api.call, "CreateEip", name="x", vipUuid="0" * 32)
    fails("SYS.1003", api.call, "AttachEip", eipUuid=free["uuid"], vmNicUuid="0" * 32)
    fails("SYS.1003", api.call, "DeleteEip", uuid="0" * 32)
    assert "eipUuid or vipUuid" in fails("SYS.1007", api.call, "GetEipAttachableVmNics")
    assert "stateEvent" in fails("SYS.1007", api.call, "ChangeEipState", uuid=eip["uuid"], stateEvent="nap")
    api.call("DestroyVmInstance", uuid=pub_vm["uuid"])
    assert "Destroyed" in fails("VM.1001", api.call, "AttachEip", eipUuid=free["uuid"],
                                vmNicUuid=pub_vm["vmNics"][0]["uuid"])
    # a VM whose cluster lacks the VIP's L2 network
    api.call("DetachL2NetworkFromCluster", l2NetworkUuid=env.extra["pub_l2"], clusterUuid=env.cluster)
    try:
        assert "not attached to cluster" in fails("SYS.1007", api.call, "AttachEip", eipUuid=free["uuid"],
                                                  vmNicUuid=vm2["vmNics"][0]["uuid"])
    finally:
        api.call("AttachL2NetworkToCluster", l2NetworkUuid=env.extra["pub_l2"], clusterUuid=env.cluster)
    assert world_of(api, env) == before and applied(admin, env) == on_hosts
    for v in (vip, vip2, vip3):
        api.call("DeleteVip", uuid=v["uuid"])
    for v in (vm, vm2):
        api.call("DestroyVmInstance", uuid=v["uuid"])


# ---- rollback -----------------------------------------------------------------------------------

def test_a_host_failing_to_apply_rolls_back(api: ZStackClient, env: Env, admin: Any, faults: set[str]) -> None:
    vm = new_vm(api, env)
    nic = vm["vmNics"][0]
    vip = new_vip(api, env)
    before, on_hosts = world_of(api, env), applied(admin, env)
    admin.inject(eipp.ApplyEipCmd.PATH, vm["hostUuid"], mode="fail", count=1, message="iptables exploded")
    assert "iptables exploded" in fails("HOST.1001", api.call, "CreateEip", name="x", vipUuid=vip["uuid"],
                                        vmNicUuid=nic["uuid"])
    assert world_of(api, env) == before and applied(admin, env) == on_hosts
    eip = api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"])["inventory"]
    before = world_of(api, env)
    admin.inject(eipp.ApplyEipCmd.PATH, vm["hostUuid"], mode="fail", count=1)
    fails("HOST.1001", api.call, "AttachEip", eipUuid=eip["uuid"], vmNicUuid=nic["uuid"])
    assert world_of(api, env) == before and applied(admin, env) == on_hosts
    faults.add("attach-eip:apply")  # applied on the host, then the flow fails: the host is cleaned too
    fails("SYS.1006", api.call, "AttachEip", eipUuid=eip["uuid"], vmNicUuid=nic["uuid"])
    faults.clear()
    assert world_of(api, env) == before and applied(admin, env) == on_hosts
    admin.inject(eipp.DeleteEipCmd.PATH, vm["hostUuid"], mode="fail", count=1)
    api.call("AttachEip", eipUuid=eip["uuid"], vmNicUuid=nic["uuid"])
    fails("HOST.1001", api.call, "DetachEip", uuid=eip["uuid"])  # the host keeps it: so does the database
    assert api.query("QueryEip", f"uuid={eip['uuid']}")[0]["vmNicUuid"] == nic["uuid"]
    assert vip["ip"] in applied(admin, env)
    api.call("DeleteVip", uuid=vip["uuid"])
    assert vip["ip"] not in applied(admin, env)
    api.call("DestroyVmInstance", uuid=vm["uuid"])


# ---- EIPs follow their VMs ----------------------------------------------------------------------

def test_eip_follows_the_vm(api: ZStackClient, env: Env, admin: Any) -> None:
    vm = new_vm(api, env)
    vip = new_vip(api, env)
    eip = api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    api.call("StopVmInstance", uuid=vm["uuid"])
    assert vip["ip"] not in applied(admin, env)
    vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    vm = api.call("MigrateVm", vmInstanceUuid=vm["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]  # only on the destination
    api.call("RebootVmInstance", uuid=vm["uuid"])
    api.call("PauseVmInstance", uuid=vm["uuid"])
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    api.call("ResumeVmInstance", uuid=vm["uuid"])
    # a failed migration leaves it on the source only
    admin.inject(p.MigrateVmCmd.PATH, vm["hostUuid"], mode="fail", count=1)
    fails("HOST.1001", api.call, "MigrateVm", vmInstanceUuid=vm["uuid"])
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"] == vm_of(api, vm["uuid"])["hostUuid"]
    # a host failing to apply fails the start, which rolls back completely
    api.call("StopVmInstance", uuid=vm["uuid"])
    admin.inject(eipp.ApplyEipCmd.PATH, mode="fail", count=1)
    fails("HOST.1001", api.call, "StartVmInstance", uuid=vm["uuid"])
    assert vm_of(api, vm["uuid"])["state"] == "Stopped" and vip["ip"] not in applied(admin, env)
    vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    # the start fails after the EIP was applied: the rollback takes it off again
    api.call("StopVmInstance", uuid=vm["uuid"])
    admin.inject(p.StartVmCmd.PATH, mode="fail", count=1)
    fails("HOST.1001", api.call, "StartVmInstance", uuid=vm["uuid"])
    assert vip["ip"] not in applied(admin, env)
    vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    assert vip["ip"] not in applied(admin, env)
    assert api.query("QueryEip", f"uuid={eip['uuid']}")[0]["vmNicUuid"] == vm["vmNics"][0]["uuid"]
    api.call("RecoverVmInstance", uuid=vm["uuid"])
    vm = api.call("StartVmInstance", uuid=vm["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])  # deleting the NIC detaches the EIP
    e = api.query("QueryEip", f"uuid={eip['uuid']}")[0]
    assert e["vmNicUuid"] is None and e["guestIp"] is None
    api.call("DeleteVip", uuid=vip["uuid"])


def test_a_reconnecting_host_gets_its_eips_again(api: ZStackClient, env: Env, admin: Any) -> None:
    vm = new_vm(api, env)
    vip = new_vip(api, env)
    api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])
    to = eipp.EipTO(**{k: v for k, v in applied(admin, env)[vip["ip"]].items() if k != "host"})
    signed_client(timeout=10).send(admin.host_url(vm["hostUuid"]), eipp.DeleteEipCmd(eips=[to], hostUuid=vm["hostUuid"]))
    assert vip["ip"] not in applied(admin, env)
    api.call("ReconnectHost", uuid=vm["hostUuid"])
    assert applied(admin, env)[vip["ip"]]["host"] == vm["hostUuid"]
    api.call("DeleteVip", uuid=vip["uuid"])
    api.call("DestroyVmInstance", uuid=vm["uuid"])


# ---- cascades -----------------------------------------------------------------------------------

def test_detaching_the_nic_detaches_its_eip(api: ZStackClient, env: Env, admin: Any) -> None:
    vm = new_vm(api, env)
    extra_l3 = api.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=env.l2)["inventory"]["uuid"]
    octet = (int(env.prefix[-2:], 16) + 1) % 200
    api.call("AddIpRange", l3NetworkUuid=extra_l3, name="r", startIp=f"10.{octet}.9.10", endIp=f"10.{octet}.9.20",
             netmask="255.255.255.0", gateway=f"10.{octet}.9.1")
    vm = api.call("AttachL3NetworkToVm", vmInstanceUuid=vm["uuid"], l3NetworkUuid=extra_l3)["inventory"]
    nic = next(n for n in vm["vmNics"] if n["l3NetworkUuid"] == extra_l3)
    vip = new_vip(api, env)
    eip = api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])["inventory"]
    assert applied(admin, env)[vip["ip"]]["guestIp"] == nic["ip"]
    api.call("DetachL3NetworkFromVm", vmNicUuid=nic["uuid"])
    assert api.query("QueryEip", f"uuid={eip['uuid']}")[0]["vmNicUuid"] is None
    assert vip["ip"] not in applied(admin, env)
    api.call("DeleteL3Network", uuid=extra_l3)
    api.call("DeleteVip", uuid=vip["uuid"])
    api.call("DestroyVmInstance", uuid=vm["uuid"])


def test_deleting_the_public_network_deletes_its_vips_and_eips(api: ZStackClient, admin: Any) -> None:
    env = build_env(api, hosts=1)
    l2, l3 = add_public_network(api, env, int(env.prefix[-2:], 16) % 200 + 1)
    env.extra["pub_l2"], env.extra["pub_l3"] = l2, l3
    vm = new_vm(api, env)
    vip, vip2 = new_vip(api, env), new_vip(api, env)
    api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])
    assert "VipVO" in fails("SYS.1004", api.call, "DeleteL3Network", uuid=l3, deleteMode="Enforcing")
    assert "EipVO" in fails("SYS.1004", api.call, "DeleteVip", uuid=vip["uuid"], deleteMode="Enforcing")
    rng = api.query("QueryIpRange", f"l3NetworkUuid={l3}")[0]["uuid"]
    api.call("DeleteIpRange", uuid=rng)  # the range's VIPs go, with their EIP
    assert api.query("QueryVip", f"l3NetworkUuid={l3}") == [] and applied(admin, env) == {}
    assert api.query("QueryEip", f"vipUuid?={vip['uuid']},{vip2['uuid']}") == []
    api.call("AddIpRange", l3NetworkUuid=l3, name="again", startIp="172.31.250.10", endIp="172.31.250.20",
             netmask="255.255.255.0", gateway="172.31.250.1")
    vip3 = new_vip(api, env)
    api.call("CreateEip", name=unique("e"), vipUuid=vip3["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])
    assert list(applied(admin, env)) == [vip3["ip"]]
    api.call("DeleteL3Network", uuid=l3)
    assert api.query("QueryVip", f"uuid={vip3['uuid']}") == [] and applied(admin, env) == {}
    api.call("DeleteZone", uuid=env.zone)


def test_a_vm_stopping_by_itself_loses_its_eip_on_the_host(api: ZStackClient, env: Env, admin: Any) -> None:
    vm = new_vm(api, env)
    vip = new_vip(api, env)
    api.call("CreateEip", name=unique("e"), vipUuid=vip["uuid"], vmNicUuid=vm["vmNics"][0]["uuid"])
    assert admin.set_vm_state(vm["hostUuid"], vm["uuid"], p.VM_STOPPED) is True  # the guest shut down
    deadline = time.monotonic() + 20
    while vm_of(api, vm["uuid"])["state"] != "Stopped" or vip["ip"] in applied(admin, env):
        assert time.monotonic() < deadline, (vm_of(api, vm["uuid"])["state"], applied(admin, env))
        time.sleep(0.2)
    api.call("DeleteVip", uuid=vip["uuid"])
    api.call("DestroyVmInstance", uuid=vm["uuid"])
