"""L2 and L3 networks, IP ranges, free IPs and IP capacity, through the public API only.

Both transports are used (RPC `api.call`, REST `api.rest`); bridges are checked on the simulated
hosts. Every resource is named uniquely because the MN and the simulator are shared by the session.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from integration.envs import build_env, unique
from kvmagent.protocol import CheckBridgeCmd, bridge_name
from mn.client import ClientError, ZStackClient

GB = 1 << 30
INVALID, NOT_FOUND, DELETE_ERROR = "SYS.1007", "SYS.1003", "SYS.1004"


@pytest.fixture(scope="module")
def admin(sim):  # noqa: ANN001, ANN201
    from simulator.client import SimulatorAdmin

    return SimulatorAdmin(sim.url)


def add_host(api: ZStackClient, cluster: str) -> str:
    name = unique("nh")
    return api.call("AddSimulatorHost", name=name, clusterUuid=cluster, managementIp=f"{name}.sim",
                    cpuCapacity=4, memoryCapacity=8 * GB)["inventory"]["uuid"]


@pytest.fixture(scope="module")
def site(api: ZStackClient) -> dict[str, Any]:
    """A zone with a cluster of three connected simulated hosts."""
    zone = api.call("CreateZone", name=unique("net-zone"))["inventory"]["uuid"]
    cluster = api.call("CreateCluster", zoneUuid=zone, name=unique("net-cluster"),
                       hypervisorType="Simulator")["inventory"]["uuid"]
    return {"zone": zone, "cluster": cluster, "hosts": [add_host(api, cluster) for _ in range(3)]}


def bridges(admin: Any, host: str) -> list[str]:
    return admin.host(host)["bridges"]


def vlan_bridge_ok(admin: Any, host: str, l2: dict, vlan: int) -> bool:
    """Ask the simulated agent itself whether the L2's bridge exists with this VLAN."""
    from integration.agent_keys import signed_client
    from mn.errors import ApiError

    cmd = CheckBridgeCmd(physicalInterfaceName=l2["physicalInterface"], bridgeName=bridge_name(l2["uuid"], vlan),
                         l2NetworkUuid=l2["uuid"], vlan=vlan, hostUuid=host)
    try:
        signed_client(timeout=10).send(admin.host_url(host), cmd)
        return True
    except ApiError:
        return False


def fails(code: str, fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(*args, **kw)
    assert ei.value.code == code, ei.value.error
    return ei.value.error["details"]


def iface() -> str:
    return f"eth{uuidlib.uuid4().int % 10**6}"


def l2_novlan(api: ZStackClient, zone: str, interface: str | None = None) -> dict:
    return api.call("CreateL2NoVlanNetwork", name=unique("l2"), zoneUuid=zone,
                    physicalInterface=interface or iface())["inventory"]


def l3_with_range(api: ZStackClient, l2: str, octet: int) -> tuple[str, str]:
    l3 = api.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=l2)["inventory"]["uuid"]
    r = api.call("AddIpRange", l3NetworkUuid=l3, name=unique("r"), startIp=f"10.{octet}.0.10",
                 endIp=f"10.{octet}.0.19", netmask="255.255.255.0", gateway=f"10.{octet}.0.1")
    return l3, r["inventory"]["uuid"]


# ---- L2 -----------------------------------------------------------------------------------------

def test_novlan_attach_creates_bridges_and_detach_removes_them(api, site, admin):
    l2 = l2_novlan(api, site["zone"], "eth0")
    assert (l2["type"], l2["physicalInterface"], l2["zoneUuid"], l2["attachedClusterUuids"]) == (
        "L2NoVlanNetwork", "eth0", site["zone"], [])
    assert l2["vSwitchType"] == "LinuxBridge" and "vlan" not in l2
    br = bridge_name(l2["uuid"])
    inv = api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=site["cluster"])["inventory"]
    assert inv["attachedClusterUuids"] == [site["cluster"]]
    for h in site["hosts"]:
        assert br in bridges(admin, h)
    assert "already attached" in fails(INVALID, api.call, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"],
                                       clusterUuid=site["cluster"])
    inv = api.call("DetachL2NetworkFromCluster", l2NetworkUuid=l2["uuid"], clusterUuid=site["cluster"])["inventory"]
    assert inv["attachedClusterUuids"] == []
    for h in site["hosts"]:
        assert br not in bridges(admin, h)
    assert "not attached" in fails(INVALID, api.call, "DetachL2NetworkFromCluster", l2NetworkUuid=l2["uuid"],
                                   clusterUuid=site["cluster"])
    api.call("DeleteL2Network", uuid=l2["uuid"])


def test_vlan_l2_over_rest(api, site, admin):
    status, body = api.rest("POST", "/l2-networks/vlan", {"params": {
        "name": unique("vlan"), "zoneUuid": site["zone"], "physicalInterface": "eth1", "vlan": 321}})
    assert status == 200, body
    l2 = body["inventory"]
    assert (l2["type"], l2["vlan"], l2["virtualNetworkId"]) == ("L2VlanNetwork", 321, 321)
    status, body = api.rest("POST", f"/l2-networks/{l2['uuid']}/clusters/{site['cluster']}", {"params": {}})
    assert status == 200 and body["inventory"]["attachedClusterUuids"] == [site["cluster"]], body
    br = bridge_name(l2["uuid"], 321)
    assert all(br in bridges(admin, h) and vlan_bridge_ok(admin, h, l2, 321) for h in site["hosts"])
    assert not vlan_bridge_ok(admin, site["hosts"][0], l2, 322)
    status, body = api.rest("GET", f"/l2-networks/vlan/{l2['uuid']}")
    assert status == 200 and body["inventories"][0]["vlan"] == 321
    assert api.query("QueryL2Network", f"uuid={l2['uuid']}")[0]["attachedClusterUuids"] == [site["cluster"]]
    status, body = api.rest("PUT", f"/l2-networks/{l2['uuid']}/actions",
                            {"updateL2Network": {"name": "renamed-vlan", "description": "d"}})
    assert status == 200 and body["inventory"]["name"] == "renamed-vlan", body
    status, body = api.rest("DELETE", f"/l2-networks/{l2['uuid']}/clusters/{site['cluster']}")
    assert status == 200, body
    assert all(br not in bridges(admin, h) for h in site["hosts"])
    status, body = api.rest("DELETE", f"/l2-networks/{l2['uuid']}")
    assert status == 200, body
    assert api.query("QueryL2Network", f"uuid={l2['uuid']}") == []


def test_l2_input_errors_leave_nothing_behind(api, site):
    other_zone = api.call("CreateZone", name=unique("net-zone2"))["inventory"]["uuid"]
    eth = iface()
    first = l2_novlan(api, site["zone"], eth)
    name = unique("dup")
    assert "already a no-VLAN L2 network" in fails(
        INVALID, api.call, "CreateL2NoVlanNetwork", name=name, zoneUuid=site["zone"], physicalInterface=eth)
    l2_novlan(api, other_zone, eth)  # another zone may use the same interface
    vlan = api.call("CreateL2VlanNetwork", name=unique("v"), zoneUuid=site["zone"], physicalInterface=eth,
                    vlan=10)["inventory"]  # a VLAN on the interface of a no-VLAN L2 is fine
    assert "with vlan 10" in fails(INVALID, api.call, "CreateL2VlanNetwork", name=name, zoneUuid=site["zone"],
                                   physicalInterface=eth, vlan=10)
    api.call("CreateL2VlanNetwork", name=unique("v"), zoneUuid=site["zone"], physicalInterface=eth, vlan=11)
    for bad in (0, 4095):
        assert "[1, 4094]" in fails(INVALID, api.call, "CreateL2VlanNetwork", name=name, zoneUuid=site["zone"],
                                    physicalInterface=eth, vlan=bad)
    assert "ZoneVO" in fails(NOT_FOUND, api.call, "CreateL2NoVlanNetwork", name=name, zoneUuid="0" * 32,
                             physicalInterface=iface())
    assert "OvsDpdk" in fails(INVALID, api.call, "CreateL2NoVlanNetwork", name=name, zoneUuid=site["zone"],
                              physicalInterface=iface(), vSwitchType="OvsDpdk")
    cluster2 = api.call("CreateCluster", zoneUuid=other_zone, name=unique("c"),
                        hypervisorType="Simulator")["inventory"]["uuid"]
    assert "same zone" in fails(INVALID, api.call, "AttachL2NetworkToCluster", l2NetworkUuid=vlan["uuid"],
                                clusterUuid=cluster2)
    assert fails(NOT_FOUND, api.call, "AttachL2NetworkToCluster", l2NetworkUuid="0" * 32,
                 clusterUuid=site["cluster"])
    assert api.query("QueryL2Network", f"name={name}") == []
    assert api.query("QueryL2Network", f"uuid={first['uuid']}")[0]["attachedClusterUuids"] == []


def test_a_failing_host_rolls_the_attach_back_everywhere(api, site, admin):
    l2 = api.call("CreateL2VlanNetwork", name=unique("vf"), zoneUuid=site["zone"], physicalInterface="eth2",
                  vlan=777)["inventory"]
    br = bridge_name(l2["uuid"], 777)
    bad = site["hosts"][1]
    fid = admin.inject("/network/l2vlan/createbridge", target=bad, message="no such NIC eth2")
    try:
        details = fails("HOST.1001", api.call, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"],
                        clusterUuid=site["cluster"])
    finally:
        try:
            admin.remove_fault(fid)
        except Exception:  # noqa: BLE001 - the fault was used up
            pass
    assert bad in details and br in details
    assert all(br not in bridges(admin, h) for h in site["hosts"])
    assert api.query("QueryL2Network", f"uuid={l2['uuid']}")[0]["attachedClusterUuids"] == []
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=site["cluster"])
    assert all(vlan_bridge_ok(admin, h, l2, 777) for h in site["hosts"])
    api.call("DeleteL2Network", uuid=l2["uuid"])
    assert all(br not in bridges(admin, h) for h in site["hosts"])


def test_a_host_added_later_gets_the_bridges_of_its_cluster(api, site, admin):
    l2 = l2_novlan(api, site["zone"])
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=site["cluster"])
    h = add_host(api, site["cluster"])
    assert bridge_name(l2["uuid"]) in bridges(admin, h)
    api.call("ReconnectHost", uuid=h)  # idempotent
    api.call("DeleteHost", uuid=h)
    api.call("DeleteL2Network", uuid=l2["uuid"])


# ---- L3 -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def l2(api, site) -> str:
    return l2_novlan(api, site["zone"])["uuid"]


def test_l3_create_update_state_dns(api, site, l2):
    l3 = api.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=l2, dnsDomain="corp.example.com",
                  systemTags=["test::tag"])["inventory"]
    assert (l3["zoneUuid"], l3["l2NetworkUuid"], l3["type"], l3["category"], l3["ipVersion"], l3["state"],
            l3["system"], l3["enableIPAM"], l3["ipRanges"], l3["dns"]) == (
        site["zone"], l2, "L3BasicNetwork", "Private", 4, "Enabled", False, True, [], [])
    status, body = api.rest("POST", "/l3-networks", {"params": {
        "name": unique("l3r"), "l2NetworkUuid": l2, "category": "Public", "system": True}})
    assert status == 200 and body["inventory"]["category"] == "Public" and body["inventory"]["system"], body
    u = l3["uuid"]
    inv = api.call("UpdateL3Network", uuid=u, name="renamed", dnsDomain="x.org")["inventory"]
    assert (inv["name"], inv["dnsDomain"]) == ("renamed", "x.org")
    assert "system" in fails(INVALID, api.call, "UpdateL3Network", uuid=u, system=True)
    assert api.call("ChangeL3NetworkState", uuid=u, stateEvent="disable")["inventory"]["state"] == "Disabled"
    status, body = api.rest("PUT", f"/l3-networks/{u}/actions", {"changeL3NetworkState": {"stateEvent": "enable"}})
    assert status == 200 and body["inventory"]["state"] == "Enabled"
    assert api.call("AddDnsToL3Network", l3NetworkUuid=u, dns="8.8.8.8")["inventory"]["dns"] == ["8.8.8.8"]
    status, body = api.rest("POST", f"/l3-networks/{u}/dns", {"params": {"dns": "1.1.1.1"}})
    assert status == 200 and body["inventory"]["dns"] == ["8.8.8.8", "1.1.1.1"], body
    assert "already" in fails(INVALID, api.call, "AddDnsToL3Network", l3NetworkUuid=u, dns="8.8.8.8")
    assert "not a valid IP" in fails(INVALID, api.call, "AddDnsToL3Network", l3NetworkUuid=u, dns="dns.google")
    status, body = api.rest("DELETE", f"/l3-networks/{u}/dns/8.8.8.8")
    assert status == 200 and body["inventory"]["dns"] == ["1.1.1.1"], body
    assert "not on" in fails(INVALID, api.call, "RemoveDnsFromL3Network", l3NetworkUuid=u, dns="8.8.8.8")


def test_l3_input_errors_leave_nothing_behind(api, l2):
    name = unique("bad-l3")
    assert "IPv4" in fails(INVALID, api.call, "CreateL3Network", name=name, l2NetworkUuid=l2, ipVersion=6)
    assert "Private" in fails(INVALID, api.call, "CreateL3Network", name=name, l2NetworkUuid=l2, system=True)
    assert "System" in fails(INVALID, api.call, "CreateL3Network", name=name, l2NetworkUuid=l2, category="System")
    assert "not supported" in fails(INVALID, api.call, "CreateL3Network", name=name, l2NetworkUuid=l2,
                                    type="L3VpcNetwork")
    assert "dnsDomain" in fails(INVALID, api.call, "CreateL3Network", name=name, l2NetworkUuid=l2,
                                dnsDomain="bad domain!")
    assert "L2NetworkVO" in fails(NOT_FOUND, api.call, "CreateL3Network", name=name, l2NetworkUuid="0" * 32)
    assert api.query("QueryL3Network", f"name={name}") == []


# ---- IP ranges, free IPs, capacity --------------------------------------------------------------

def test_ip_ranges_rules(api, l2):
    l3 = api.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=l2)["inventory"]["uuid"]
    r = api.call("AddIpRange", l3NetworkUuid=l3, name="a", startIp="192.168.50.10", endIp="192.168.50.100",
                 netmask="255.255.255.0", gateway="192.168.50.1")["inventory"]
    assert (r["networkCidr"], r["prefixLen"], r["ipVersion"], r["ipRangeType"], r["l3NetworkUuid"]) == (
        "192.168.50.0/24", 24, 4, "Normal", l3)
    name = unique("bad-range")
    base = {"l3NetworkUuid": l3, "name": name, "netmask": "255.255.255.0", "gateway": "192.168.50.1"}
    cases = [
        ({"startIp": "192.168.50.200", "endIp": "192.168.50.150"}, "greater than endIp"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.200", "gateway": "192.168.50.160"}, "inside the IP range"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.51.10"}, "not a host address"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.255"}, "not a host address"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.200", "gateway": "10.0.0.1"}, "gateway 10.0.0.1"),
        ({"startIp": "192.168.50.90", "endIp": "192.168.50.120"}, "overlaps"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.200", "netmask": "255.255.0.0"}, "share one network"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.200", "gateway": "192.168.50.254"}, "share one gateway"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.200", "netmask": "255.0.255.0"}, "not contiguous"),
        ({"startIp": "192.168.50.150", "endIp": "192.168.50.200", "gateway": None}, "gateway is required"),
        ({"startIp": "192.168.50.x", "endIp": "192.168.50.200"}, "not a valid IPv4"),
    ]
    for extra, words in cases:
        params = {k: v for k, v in {**base, **extra}.items() if v is not None}
        assert words in fails(INVALID, api.call, "AddIpRange", **params), extra
    status, body = api.rest("POST", f"/l3-networks/{l3}/ip-ranges", {"params": {
        "name": "b", "startIp": "192.168.50.150", "endIp": "192.168.50.200", "netmask": "255.255.255.0",
        "gateway": "192.168.50.1"}})
    assert status == 200, body
    ranges = api.query("QueryIpRange", f"l3NetworkUuid={l3}")
    assert sorted(x["name"] for x in ranges) == ["a", "b"]
    inv = api.call("UpdateIpRange", uuid=r["uuid"], name="a2")["inventory"]
    assert inv["name"] == "a2"
    l3inv = api.query("QueryL3Network", f"uuid={l3}")[0]
    assert [x["startIp"] for x in l3inv["ipRanges"]] == ["192.168.50.10", "192.168.50.150"]
    assert fails(NOT_FOUND, api.call, "AddIpRange", **{**base, "l3NetworkUuid": "0" * 32,
                                                         "startIp": "192.168.50.2", "endIp": "192.168.50.3"})


def test_ip_range_by_cidr(api, l2):
    l3 = api.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=l2)["inventory"]["uuid"]
    status, body = api.rest("POST", f"/l3-networks/{l3}/ip-ranges/by-cidr",
                            {"params": {"name": "c", "networkCidr": "172.20.0.0/24"}})
    assert status == 200, body
    (r,) = body["inventories"]
    assert body["inventory"] == r
    assert (r["startIp"], r["endIp"], r["gateway"], r["netmask"]) == ("172.20.0.2", "172.20.0.254", "172.20.0.1",
                                                                      "255.255.255.0")
    l3b = api.call("CreateL3Network", name=unique("l3"), l2NetworkUuid=l2)["inventory"]["uuid"]
    ev = api.call("AddIpRangeByNetworkCidr", l3NetworkUuid=l3b, name="mid", networkCidr="172.21.0.0/28",
                  gateway="172.21.0.5")
    assert [(x["startIp"], x["endIp"]) for x in ev["inventories"]] == [
        ("172.21.0.1", "172.21.0.4"), ("172.21.0.6", "172.21.0.14")]
    for bad, words in (("172.22.0.1/24", "host bits"), ("172.22.0.0", "valid IPv4 CIDR"),
                       ("172.22.0.0/31", "prefix length")):
        assert words in fails(INVALID, api.call, "AddIpRangeByNetworkCidr", l3NetworkUuid=l3b, name="x",
                              networkCidr=bad)
    assert "overlaps" in fails(INVALID, api.call, "AddIpRangeByNetworkCidr", l3NetworkUuid=l3b, name="x",
                               networkCidr="172.21.0.0/28", gateway="172.21.0.5")
    assert len(api.query("QueryIpRange", f"l3NetworkUuid={l3b}")) == 2


def test_free_ips_and_capacity(api, site, l2):
    l3, rng = l3_with_range(api, l2, 201)  # 10.201.0.10 - .19
    got = api.call("GetFreeIp", l3NetworkUuid=l3, limit=3)["inventories"]
    assert got == [{"ipRangeUuid": rng, "ip": f"10.201.0.{i}", "netmask": "255.255.255.0",
                    "gateway": "10.201.0.1"} for i in (10, 11, 12)]
    status, body = api.rest("GET", f"/l3-networks/{l3}/ip/free", fields={"limit": "2", "start": "10.201.0.18"})
    assert status == 200 and [x["ip"] for x in body["inventories"]] == ["10.201.0.18", "10.201.0.19"], body
    status, body = api.rest("GET", f"/l3-networks/ip-ranges/{rng}/ip/free")
    assert status == 200 and len(body["inventories"]) == 10
    assert "l3NetworkUuid or ipRangeUuid" in fails(INVALID, api.call, "GetFreeIp")
    assert fails(NOT_FOUND, api.call, "GetFreeIp", l3NetworkUuid="0" * 32)
    assert "IPv4" in fails(INVALID, api.call, "GetFreeIp", l3NetworkUuid=l3, ipVersion=6)

    cap = api.call("GetIpAddressCapacity", l3NetworkUuids=[l3])
    assert (cap["totalCapacity"], cap["availableCapacity"], cap["usedIpAddressNumber"], cap["resourceType"]) == (
        10, 10, 0, "L3NetworkVO")
    assert cap["ipv4TotalCapacity"] == 10 and cap["ipv6TotalCapacity"] == 0
    assert cap["capacityData"] == [{"resourceUuid": l3, "totalCapacity": 10, "availableCapacity": 10,
                                    "usedIpAddressNumber": 0, "ipv4TotalCapacity": 10,
                                    "ipv4AvailableCapacity": 10, "ipv4UsedIpAddressNumber": 0,
                                    "ipv6TotalCapacity": 0, "ipv6AvailableCapacity": 0,
                                    "ipv6UsedIpAddressNumber": 0}]
    status, body = api.rest("GET", "/ip-capacity", fields={"ipRangeUuids": rng})
    assert status == 200 and body["totalCapacity"] == 10 and body["resourceType"] == "IpRangeVO", body
    zone_cap = api.call("GetIpAddressCapacity", zoneUuids=[site["zone"]])
    assert zone_cap["resourceType"] == "ZoneVO" and zone_cap["totalCapacity"] >= 10
    assert api.call("GetIpAddressCapacity", all=True)["totalCapacity"] >= zone_cap["totalCapacity"]
    assert fails(INVALID, api.call, "GetIpAddressCapacity")
    assert fails(NOT_FOUND, api.call, "GetIpAddressCapacity", l3NetworkUuids=["0" * 32])


# ---- VMs on the network -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(api):
    return build_env(api, hosts=1, cidr_third_octet=202)


def test_used_ips_capacity_and_detach_refused_while_nics(api, env, admin):
    vm = api.call("CreateVmInstance", name=unique("vm"), instanceOfferingUuid=env.offering,
                  imageUuid=env.image, l3NetworkUuids=[env.l3])["inventory"]
    ip = vm["vmNics"][0]["ip"]
    (used,) = api.query("QueryIpAddress", f"l3NetworkUuid={env.l3}")
    assert used["ip"] == ip and used["vmNicUuid"] == vm["vmNics"][0]["uuid"]
    cap = api.call("GetIpAddressCapacity", ipRangeUuids=[env.ip_range])
    assert (cap["totalCapacity"], cap["usedIpAddressNumber"], cap["availableCapacity"]) == (241, 1, 240)
    free = [x["ip"] for x in api.call("GetFreeIp", l3NetworkUuid=env.l3, limit=1000)["inventories"]]
    assert len(free) == 240 and ip not in free
    details = fails("SYS.1006", api.call, "DetachL2NetworkFromCluster", l2NetworkUuid=env.l2,
                    clusterUuid=env.cluster)
    assert vm["uuid"] in details
    assert "VmNicVO" in fails(DELETE_ERROR, api.call, "DeleteIpRange", uuid=env.ip_range, deleteMode="Enforcing")
    api.call("DestroyVmInstance", uuid=vm["uuid"])
    api.call("ExpungeVmInstance", uuid=vm["uuid"])
    assert api.query("QueryIpAddress", f"l3NetworkUuid={env.l3}") == []
    api.call("DetachL2NetworkFromCluster", l2NetworkUuid=env.l2, clusterUuid=env.cluster)
    assert bridge_name(env.l2) not in bridges(admin, env.hosts[0])
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=env.l2, clusterUuid=env.cluster)


# ---- cascades -----------------------------------------------------------------------------------

def test_cascade_enforcing_refuses_permissive_deletes(api, site, admin):
    l2 = l2_novlan(api, site["zone"])["uuid"]
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2, clusterUuid=site["cluster"])
    l3, rng = l3_with_range(api, l2, 203)
    details = fails(DELETE_ERROR, api.call, "DeleteL2Network", uuid=l2, deleteMode="Enforcing")
    assert "L3NetworkVO" in details and l3 in details
    assert "IpRangeVO" in fails(DELETE_ERROR, api.call, "DeleteL3Network", uuid=l3, deleteMode="Enforcing")
    status, body = api.rest("DELETE", f"/l3-networks/ip-ranges/{rng}", fields={"deleteMode": "Enforcing"})
    assert status == 200, body  # no NIC uses it
    assert api.query("QueryIpRange", f"uuid={rng}") == []
    api.call("AddIpRange", l3NetworkUuid=l3, name="again", startIp="10.203.0.10", endIp="10.203.0.19",
             netmask="255.255.255.0", gateway="10.203.0.1")
    api.call("DeleteL2Network", uuid=l2)  # Permissive by default
    assert api.query("QueryL2Network", f"uuid={l2}") == []
    assert api.query("QueryL3Network", f"l2NetworkUuid={l2}") == []
    assert api.query("QueryIpRange", f"l3NetworkUuid={l3}") == []
    assert all(bridge_name(l2) not in bridges(admin, h) for h in site["hosts"])
    assert fails(NOT_FOUND, api.call, "DeleteL2Network", uuid=l2)


def test_deleting_a_zone_or_cluster_takes_its_networks(api, admin):
    zone = api.call("CreateZone", name=unique("cz"))["inventory"]["uuid"]
    cluster = api.call("CreateCluster", zoneUuid=zone, name=unique("cc"), hypervisorType="Simulator")["inventory"]["uuid"]
    host = add_host(api, cluster)
    l2 = l2_novlan(api, zone)["uuid"]
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2, clusterUuid=cluster)
    l3, _ = l3_with_range(api, l2, 204)
    assert bridge_name(l2) in bridges(admin, host)
    api.call("DeleteCluster", uuid=cluster)
    assert api.query("QueryL2Network", f"uuid={l2}")[0]["attachedClusterUuids"] == []
    api.call("DeleteZone", uuid=zone)
    assert api.query("QueryL2Network", f"uuid={l2}") == []
    assert api.query("QueryL3Network", f"uuid={l3}") == []
