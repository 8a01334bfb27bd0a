"""Clusters, simulator hosts, host tracking and CPU/memory capacity, through the public API.

Both transports are used: RPC (`api.call`) and REST (`api.rest`). Every test names its resources
uniquely, because the MN and the simulator are shared by the whole session.
"""

from __future__ import annotations

import itertools
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mn import extensions
from mn.client import ClientError, ZStackClient
from mn.globalconfig import HOST_PING_FAILURES, HOST_PING_INTERVAL

GB = 1 << 30
_ips = itertools.count(1)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def new_ip() -> str:
    n = next(_ips)
    return f"10.{uuidlib.uuid4().int % 200 + 20}.{n // 250}.{n % 250 + 1}"


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def sim_admin(sim):  # noqa: ANN001, ANN201
    from simulator.client import SimulatorAdmin

    return SimulatorAdmin(sim.url)


def sim_has_host(admin: Any, uuid: str) -> bool:
    try:
        return admin.host(uuid) is not None
    except Exception:  # noqa: BLE001 - an unknown host is an error of the admin API
        return False


@pytest.fixture(scope="module")
def zone(api: ZStackClient) -> dict:
    return api.call("CreateZone", name=uniq("zone-ch"))["inventory"]


@pytest.fixture(scope="module")
def cluster(api: ZStackClient, zone: dict) -> dict:
    return api.call("CreateCluster", zoneUuid=zone["uuid"], name=uniq("cl-sim"),
                    hypervisorType="Simulator")["inventory"]


def add_host(api: ZStackClient, cluster: dict, **kw: Any) -> dict:
    params = {"name": uniq("h"), "managementIp": new_ip(), "clusterUuid": cluster["uuid"],
              "cpuCapacity": 8, "memoryCapacity": 16 * GB, **kw}
    return api.call("AddSimulatorHost", **params)["inventory"]


def hosts_named(api: ZStackClient, name: str) -> list[dict]:
    return api.query("QueryHost", f"name={name}")


def expect_error(fn: Callable[[], Any], code: str, *words: str) -> dict:
    with pytest.raises(ClientError) as ei:
        fn()
    err = ei.value.error
    assert err["code"] == code, err
    for w in words:
        assert w in err["details"], err
    return err


def set_config(api: ZStackClient, mn: Any, d: Any, value: str) -> None:
    """Through UpdateGlobalConfig when it exists, else the MN's cache (same process)."""
    try:
        api.call("UpdateGlobalConfig", category=d.category, name=d.name, value=value)
        return
    except ClientError as exc:
        if exc.code not in ("SYS.1014", "SYS.1008"):
            raise
    mn.services.gconf.set_cached(d, value)


# ---- clusters -----------------------------------------------------------------------------------

def test_cluster_lifecycle_over_rpc_and_rest(api: ZStackClient, zone: dict) -> None:
    name = uniq("cl")
    c = api.call("CreateCluster", zoneUuid=zone["uuid"], name=name, hypervisorType="KVM",
                 description="d1")["inventory"]
    assert (c["name"], c["hypervisorType"], c["zoneUuid"], c["state"], c["type"]) == \
        (name, "KVM", zone["uuid"], "Enabled", "zstack")
    assert [x["uuid"] for x in api.query("QueryCluster", f"name={name}")] == [c["uuid"]]

    st, body = api.rest("POST", "/clusters", {"params": {"zoneUuid": zone["uuid"], "name": uniq("cl-r"),
                                                          "hypervisorType": "Simulator"}})
    assert st == 200, body
    c2 = body["inventory"]

    new_name = uniq("cl-renamed")
    assert api.call("UpdateCluster", uuid=c["uuid"], name=new_name)["inventory"]["name"] == new_name
    st, body = api.rest("PUT", f"/clusters/{c['uuid']}/actions", {"changeClusterState": {"stateEvent": "disable"}})
    assert st == 200 and body["inventory"]["state"] == "Disabled", body
    assert api.call("ChangeClusterState", uuid=c["uuid"], stateEvent="enable")["inventory"]["state"] == "Enabled"
    st, body = api.rest("GET", f"/clusters/{c2['uuid']}")
    assert st == 200 and body["inventories"][0]["uuid"] == c2["uuid"]

    api.call("DeleteCluster", uuid=c["uuid"])
    st, body = api.rest("DELETE", f"/clusters/{c2['uuid']}")
    assert st == 200, body
    assert api.query("QueryCluster", f"uuid?={c['uuid']},{c2['uuid']}") == []


def test_cluster_bad_input(api: ZStackClient, zone: dict) -> None:
    name = uniq("cl-bad")
    expect_error(lambda: api.call("CreateCluster", zoneUuid=zone["uuid"], name=name), "SYS.1007",
                 "hypervisorType")
    expect_error(lambda: api.call("CreateCluster", zoneUuid=zone["uuid"], name=name, hypervisorType="Xen"),
                 "SYS.1007", "hypervisorType")
    expect_error(lambda: api.call("CreateCluster", zoneUuid="f" * 32, name=name, hypervisorType="KVM"),
                 "SYS.1003", "ZoneVO", "f" * 32)
    expect_error(lambda: api.call("UpdateCluster", uuid="e" * 32, name="x"), "SYS.1003", "ClusterVO")
    assert api.query("QueryCluster", f"name={name}") == []


def test_delete_zone_enforcing_then_permissive(api: ZStackClient, sim_admin: Any) -> None:
    z = api.call("CreateZone", name=uniq("zone-del"))["inventory"]
    c = api.call("CreateCluster", zoneUuid=z["uuid"], name=uniq("cl"), hypervisorType="Simulator")["inventory"]
    h = add_host(api, c)
    expect_error(lambda: api.call("DeleteZone", uuid=z["uuid"], deleteMode="Enforcing"), "SYS.1004",
                 "ClusterVO", c["uuid"])
    api.call("DeleteZone", uuid=z["uuid"], deleteMode="Permissive")
    assert api.query("QueryCluster", f"uuid={c['uuid']}") == []
    assert api.query("QueryHost", f"uuid={h['uuid']}") == []
    assert not sim_has_host(sim_admin, h["uuid"])


# ---- hosts --------------------------------------------------------------------------------------

def test_add_simulator_host_over_rpc(api: ZStackClient, cluster: dict, zone: dict, sim_admin: Any) -> None:
    name = uniq("h-rpc")
    h = add_host(api, cluster, name=name, cpuCapacity=4, memoryCapacity=8 * GB, description="rack 1",
                 userTags=["ut1"])
    assert (h["name"], h["status"], h["state"], h["hypervisorType"]) == (name, "Connected", "Enabled", "Simulator")
    assert (h["zoneUuid"], h["clusterUuid"], h["description"]) == (zone["uuid"], cluster["uuid"], "rack 1")
    assert h["cpuNum"] == 4
    assert h["totalCpuCapacity"] == h["availableCpuCapacity"] == 4 * 10  # cpu.overProvisioning.ratio 10
    assert h["totalMemoryCapacity"] == h["availableMemoryCapacity"] == 8 * GB
    assert h["architecture"]
    sh = sim_admin.host(h["uuid"])
    assert (sh["cpuNum"], sh["memory"], sh["managementIp"], sh["connected"]) == (4, 8 * GB, h["managementIp"], True)
    assert sh["sendCommandUrl"].endswith("/agent/events")
    [q] = hosts_named(api, name)
    assert q["uuid"] == h["uuid"] and q["status"] == "Connected"
    assert [x["uuid"] for x in api.query("QueryHost", "__userTag__=ut1", f"name={name}")] == [h["uuid"]]
    assert [x["uuid"] for x in api.query("QueryHost", f"cluster.name={cluster['name']}", f"name={name}")] \
        == [h["uuid"]]


def test_add_simulator_host_over_rest(api: ZStackClient, cluster: dict) -> None:
    name, ip = uniq("h-rest"), new_ip()
    st, body = api.rest("POST", "/hosts/simulators", {"params": {
        "name": name, "managementIp": ip, "clusterUuid": cluster["uuid"], "cpuCapacity": 2,
        "memoryCapacity": 4 * GB}})
    assert st == 200, body
    h = body["inventory"]
    assert (h["name"], h["managementIp"], h["status"]) == (name, ip, "Connected")
    st, body = api.rest("GET", f"/hosts/{h['uuid']}")
    assert st == 200 and body["inventories"][0]["cpuNum"] == 2
    st, body = api.rest("GET", "/hosts", fields=[("q", f"name={name}")])
    assert st == 200 and [x["uuid"] for x in body["inventories"]] == [h["uuid"]]
    # an invalid add over REST: the error is in ZStack's shape and nothing is created
    st, body = api.rest("POST", "/hosts/simulators", {"params": {
        "name": uniq("h-rest-bad"), "managementIp": ip, "clusterUuid": cluster["uuid"]}})
    assert st >= 400 and body["error"]["code"] == "SYS.1007" and ip in body["error"]["details"], body


def test_add_host_bad_input_leaves_nothing(api: ZStackClient, cluster: dict, zone: dict) -> None:
    name = uniq("h-bad")
    base = {"name": name, "clusterUuid": cluster["uuid"], "cpuCapacity": 2, "memoryCapacity": GB}
    # missing mandatory parameter
    expect_error(lambda: api.call("AddSimulatorHost", **base), "SYS.1007", "managementIp")
    # wrong type
    expect_error(lambda: api.call("AddSimulatorHost", **{**base, "managementIp": new_ip(), "cpuCapacity": "many"}),
                 "SYS.1007", "cpuCapacity")
    expect_error(lambda: api.call("AddSimulatorHost", **{**base, "managementIp": new_ip(), "cpuCapacity": 0}),
                 "SYS.1007", "cpuCapacity")
    # unknown cluster
    expect_error(lambda: api.call("AddSimulatorHost", **{**base, "managementIp": new_ip(), "clusterUuid": "d" * 32}),
                 "SYS.1003", "ClusterVO", "d" * 32)
    # a cluster of another hypervisor
    kvm = api.call("CreateCluster", zoneUuid=zone["uuid"], name=uniq("cl-kvm"), hypervisorType="KVM")["inventory"]
    expect_error(lambda: api.call("AddSimulatorHost", **{**base, "managementIp": new_ip(), "clusterUuid": kvm["uuid"]}),
                 "SYS.1007", "hypervisorType KVM", "Simulator")
    # duplicate managementIp
    first = add_host(api, cluster)
    expect_error(lambda: api.call("AddSimulatorHost", **{**base, "managementIp": first["managementIp"]}),
                 "SYS.1007", first["managementIp"], first["uuid"])
    # bad resourceUuid
    expect_error(lambda: api.call("AddSimulatorHost", **{**base, "managementIp": new_ip(), "resourceUuid": "xyz"}),
                 "SYS.1007", "resourceUuid")
    assert hosts_named(api, name) == []
    assert api.query("QueryHost", f"clusterUuid={kvm['uuid']}") == []
    api.call("DeleteCluster", uuid=kvm["uuid"])


@pytest.mark.parametrize(("path", "mode"), [("/host/connect", "fail"), ("/host/facts", "error"),
                                            ("/host/facts", "timeout")])
def test_agent_failure_rolls_the_add_back(api: ZStackClient, cluster: dict, sim_admin: Any,
                                          path: str, mode: str) -> None:
    u, name, ip = uuidlib.uuid4().hex, uniq("h-fault"), new_ip()
    sim_admin.inject(path, target=u, mode=mode, count=1, delay=0.05)
    try:
        err = expect_error(lambda: api.call("AddSimulatorHost", resourceUuid=u, name=name, managementIp=ip,
                                            clusterUuid=cluster["uuid"], cpuCapacity=2, memoryCapacity=GB),
                           "HOST.1001", path)
        assert name in err["details"]
    finally:
        sim_admin.clear_faults()
    assert api.query("QueryHost", f"uuid={u}") == []
    assert hosts_named(api, name) == []
    assert not sim_has_host(sim_admin, u)
    # the same uuid and IP work once the agent behaves
    h = add_host(api, cluster, resourceUuid=u, name=name, managementIp=ip)
    assert h["uuid"] == u and h["status"] == "Connected"


def test_update_host(api: ZStackClient, cluster: dict) -> None:
    a, b = add_host(api, cluster), add_host(api, cluster)
    new_name, new_ip_ = uniq("h-upd"), new_ip()
    h = api.call("UpdateHost", uuid=a["uuid"], name=new_name, description="moved",
                 managementIp=new_ip_)["inventory"]
    assert (h["name"], h["description"], h["managementIp"]) == (new_name, "moved", new_ip_)
    expect_error(lambda: api.call("UpdateHost", uuid=a["uuid"], managementIp=b["managementIp"]), "SYS.1007",
                 b["managementIp"], b["uuid"])
    st, body = api.rest("PUT", f"/hosts/{b['uuid']}/actions", {"updateHost": {"name": "b2"}})
    assert st == 200 and body["inventory"]["name"] == "b2", body
    expect_error(lambda: api.call("UpdateHost", uuid="c" * 32, name="x"), "SYS.1003", "HostVO")


def test_change_host_state(api: ZStackClient, cluster: dict) -> None:
    h = add_host(api, cluster)
    u = h["uuid"]
    assert api.call("ChangeHostState", uuid=u, stateEvent="disable")["inventory"]["state"] == "Disabled"
    st, body = api.rest("PUT", f"/hosts/{u}/actions", {"changeHostState": {"stateEvent": "enable"}})
    assert st == 200 and body["inventory"]["state"] == "Enabled", body
    seen: list[str] = []

    def hook(ctx: Any, host_uuid: str) -> None:
        seen.append(host_uuid)

    extensions.HOST_MAINTENANCE.register(hook)
    try:
        assert api.call("ChangeHostState", uuid=u, stateEvent="maintain")["inventory"]["state"] == "Maintenance"
    finally:
        extensions.HOST_MAINTENANCE.unregister(hook)
    assert u in seen
    assert api.call("ChangeHostState", uuid=u, stateEvent="enable")["inventory"]["state"] == "Enabled"
    expect_error(lambda: api.call("ChangeHostState", uuid=u, stateEvent="preMaintain"), "SYS.1007", "stateEvent")


def test_failed_maintenance_returns_to_previous_state(api: ZStackClient, cluster: dict) -> None:
    h = add_host(api, cluster)
    api.call("ChangeHostState", uuid=h["uuid"], stateEvent="disable")

    def hook(ctx: Any, host_uuid: str) -> None:
        if host_uuid == h["uuid"]:
            raise RuntimeError("VM abc cannot be migrated")

    extensions.HOST_MAINTENANCE.register(hook)
    try:
        expect_error(lambda: api.call("ChangeHostState", uuid=h["uuid"], stateEvent="maintain"), "SYS.1006",
                     "maintenance", "Disabled", "VM abc cannot be migrated")
    finally:
        extensions.HOST_MAINTENANCE.unregister(hook)
    assert api.query("QueryHost", f"uuid={h['uuid']}")[0]["state"] == "Disabled"


def test_reconnect_host(api: ZStackClient, cluster: dict, sim_admin: Any) -> None:
    h = add_host(api, cluster)
    u = h["uuid"]
    assert api.call("ReconnectHost", uuid=u)["inventory"]["status"] == "Connected"
    st, body = api.rest("PUT", f"/hosts/{u}/actions", {"reconnectHost": {}})
    assert st == 200 and body["inventory"]["status"] == "Connected", body
    sim_admin.inject("/host/connect", target=u, mode="fail", count=1)
    try:
        expect_error(lambda: api.call("ReconnectHost", uuid=u), "HOST.1001", "/host/connect", "Disconnected")
    finally:
        sim_admin.clear_faults()
    [q] = api.query("QueryHost", f"uuid={u}")
    assert q["status"] in ("Disconnected", "Connecting", "Connected")  # the tracker may already be at it
    wait_for(lambda: _try_reconnect(api, u), what="a reconnect to succeed")
    assert api.query("QueryHost", f"uuid={u}")[0]["status"] == "Connected"
    expect_error(lambda: api.call("ReconnectHost", uuid="b" * 32), "SYS.1003", "HostVO")


def _try_reconnect(api: ZStackClient, uuid: str) -> bool:
    try:
        return api.call("ReconnectHost", uuid=uuid)["inventory"]["status"] == "Connected"
    except ClientError:
        return False


def test_delete_host_and_cluster_modes(api: ZStackClient, zone: dict, sim_admin: Any) -> None:
    c = api.call("CreateCluster", zoneUuid=zone["uuid"], name=uniq("cl-del"), hypervisorType="Simulator")["inventory"]
    h1, h2, h3 = add_host(api, c), add_host(api, c), add_host(api, c)
    expect_error(lambda: api.call("DeleteCluster", uuid=c["uuid"], deleteMode="Enforcing"), "SYS.1004",
                 "HostVO", "Enforcing")
    assert len(api.query("QueryHost", f"clusterUuid={c['uuid']}")) == 3
    api.call("DeleteHost", uuid=h1["uuid"], deleteMode="Enforcing")   # no VMs: nothing to refuse on
    st, body = api.rest("DELETE", f"/hosts/{h2['uuid']}")
    assert st == 200, body
    assert not sim_has_host(sim_admin, h1["uuid"]) and not sim_has_host(sim_admin, h2["uuid"])
    api.call("DeleteCluster", uuid=c["uuid"], deleteMode="Permissive")
    assert api.query("QueryHost", f"clusterUuid={c['uuid']}") == []
    assert api.query("QueryCluster", f"uuid={c['uuid']}") == []
    assert not sim_has_host(sim_admin, h3["uuid"])
    expect_error(lambda: api.call("DeleteHost", uuid=h1["uuid"]), "SYS.1003", "HostVO")


def test_hypervisor_types(api: ZStackClient) -> None:
    assert {"KVM", "Simulator"} <= set(api.call("GetHypervisorTypes")["hypervisorTypes"])
    st, body = api.rest("GET", "/hosts/hypervisor-types")
    assert st == 200 and "Simulator" in body["hypervisorTypes"], body


# ---- tracking -----------------------------------------------------------------------------------

@pytest.fixture
def fast_pings(api: ZStackClient, mn: Any) -> Iterator[None]:
    set_config(api, mn, HOST_PING_INTERVAL, "1")
    set_config(api, mn, HOST_PING_FAILURES, "1")
    yield
    set_config(api, mn, HOST_PING_INTERVAL, HOST_PING_INTERVAL.default)
    set_config(api, mn, HOST_PING_FAILURES, HOST_PING_FAILURES.default)


def _status(api: ZStackClient, uuid: str) -> str:
    return api.query("QueryHost", f"uuid={uuid}")[0]["status"]


def test_missed_pings_disconnect_and_answers_reconnect(api: ZStackClient, cluster: dict, sim_admin: Any,
                                                       fast_pings: None) -> None:
    down, up = add_host(api, cluster), add_host(api, cluster)
    sim_admin.inject("/host/ping", target=down["uuid"], mode="fail", count=-1)
    try:
        wait_for(lambda: _status(api, down["uuid"]) == "Disconnected", what="the host to be Disconnected")
        assert _status(api, up["uuid"]) == "Connected"
    finally:
        sim_admin.clear_faults()
    wait_for(lambda: _status(api, down["uuid"]) == "Connected", what="the host to reconnect")
    [h] = api.query("QueryHost", f"uuid={down['uuid']}")
    assert h["availableCpuCapacity"] == h["totalCpuCapacity"] == 8 * 10


def test_restarted_agent_is_reconnected(api: ZStackClient, cluster: dict, sim_admin: Any,
                                        fast_pings: None) -> None:
    h = add_host(api, cluster)
    sim_admin.restart_agent(h["uuid"])
    wait_for(lambda: sim_admin.host(h["uuid"])["connected"], what="the tracker to reconnect the agent")
    wait_for(lambda: _status(api, h["uuid"]) == "Connected", what="the host to be Connected")


# ---- capacity -----------------------------------------------------------------------------------

def test_cpu_memory_capacity(api: ZStackClient) -> None:
    z = api.call("CreateZone", name=uniq("zone-cap"))["inventory"]
    c1 = api.call("CreateCluster", zoneUuid=z["uuid"], name=uniq("cl"), hypervisorType="Simulator")["inventory"]
    c2 = api.call("CreateCluster", zoneUuid=z["uuid"], name=uniq("cl"), hypervisorType="Simulator")["inventory"]
    a = add_host(api, c1, cpuCapacity=4, memoryCapacity=8 * GB)
    b = add_host(api, c1, cpuCapacity=2, memoryCapacity=4 * GB)
    d = add_host(api, c2, cpuCapacity=8, memoryCapacity=16 * GB)

    r = api.call("GetCpuMemoryCapacity", hostUuids=[a["uuid"], b["uuid"]])
    assert (r["totalCpu"], r["availableCpu"], r["totalMemory"], r["availableMemory"], r["managedCpuNum"]) == \
        (60, 60, 12 * GB, 12 * GB, 6)
    assert r["resourceType"] == "HostVO"
    assert sorted((x["resourceUuid"], x["managedCpuNum"]) for x in r["capacityData"]) == \
        sorted([(a["uuid"], 4), (b["uuid"], 2)])

    r = api.call("GetCpuMemoryCapacity", clusterUuids=[c1["uuid"], c2["uuid"]])
    assert r["resourceType"] == "ClusterVO" and r["managedCpuNum"] == 14 and r["totalMemory"] == 28 * GB
    assert {x["resourceUuid"]: x["totalCpu"] for x in r["capacityData"]} == {c1["uuid"]: 60, c2["uuid"]: 80}

    # only Enabled and Connected hosts count
    api.call("ChangeHostState", uuid=d["uuid"], stateEvent="disable")
    st, body = api.rest("GET", "/hosts/capacities/cpu-memory", fields=[("zoneUuids", z["uuid"])])
    assert st == 200, body
    assert (body["resourceType"], body["totalCpu"], body["managedCpuNum"]) == ("ZoneVO", 60, 6)
    assert [x["resourceUuid"] for x in body["capacityData"]] == [z["uuid"]]

    r = api.call("GetCpuMemoryCapacity", all=True)
    assert r["resourceType"] == "ZoneVO" and z["uuid"] in [x["resourceUuid"] for x in r["capacityData"]]
    assert r["totalCpu"] >= 60

    expect_error(lambda: api.call("GetCpuMemoryCapacity"), "SYS.1007", "all")
    expect_error(lambda: api.call("GetCpuMemoryCapacity", hostUuids=[a["uuid"], "9" * 32]), "SYS.1003",
                 "HostVO", "9" * 32)
    api.call("DeleteZone", uuid=z["uuid"])
