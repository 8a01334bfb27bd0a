"""Builders of test environments through the public API only.

build_env() makes one self-contained simulator zone (cluster, hosts, primary and backup storage,
an image, a flat L2/L3 with an IP range, an instance offering), named uniquely so tests that share
one MN do not see each other's resources.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from mn.client import ZStackClient

GB = 1 << 30


@dataclass
class Env:
    prefix: str
    zone: str
    cluster: str
    hosts: list[str]
    ps: str
    bs: str
    image: str
    l2: str
    l3: str
    ip_range: str
    offering: str
    extra: dict[str, Any] = field(default_factory=dict)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def build_env(api: ZStackClient, hosts: int = 2, cpu: int = 8, memory: int = 16 * GB,
              ps_capacity: int = 1000 * GB, cidr_third_octet: int | None = None, prefix: str | None = None,
              zone_name: str | None = None) -> Env:
    p = prefix or unique("env")
    zone = api.call("CreateZone", name=zone_name or f"{p}-zone")["inventory"]["uuid"]
    cluster = api.call("CreateCluster", zoneUuid=zone, name=f"{p}-cluster",
                       hypervisorType="Simulator")["inventory"]["uuid"]
    octet = cidr_third_octet if cidr_third_octet is not None else int(p[-2:], 16)
    host_uuids = [
        api.call("AddSimulatorHost", name=f"{p}-host{i}", clusterUuid=cluster,
                 managementIp=f"{p}-{i}.sim", cpuCapacity=cpu, memoryCapacity=memory)["inventory"]["uuid"]
        for i in range(hosts)
    ]
    ps = api.call("AddSimulatorPrimaryStorage", name=f"{p}-ps", zoneUuid=zone, url=f"/sim/{p}",
                  totalCapacity=ps_capacity, availableCapacity=ps_capacity,
                  totalPhysicalCapacity=ps_capacity, availablePhysicalCapacity=ps_capacity)["inventory"]["uuid"]
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cluster, primaryStorageUuid=ps)
    bs = api.call("AddSimulatorBackupStorage", name=f"{p}-bs", url=f"/sim/bs/{p}",
                  totalCapacity=1000 * GB, availableCapacity=1000 * GB)["inventory"]["uuid"]
    api.call("AttachBackupStorageToZone", zoneUuid=zone, backupStorageUuid=bs)
    image = api.call("AddImage", name=f"{p}-image", url=f"http://images.test/{p}.qcow2?size={GB}",
                     backupStorageUuids=[bs], format="qcow2")["inventory"]["uuid"]
    l2 = api.call("CreateL2NoVlanNetwork", name=f"{p}-l2", zoneUuid=zone,
                  physicalInterface="eth0")["inventory"]["uuid"]
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2, clusterUuid=cluster)
    l3 = api.call("CreateL3Network", name=f"{p}-l3", l2NetworkUuid=l2)["inventory"]["uuid"]
    rng = api.call("AddIpRange", l3NetworkUuid=l3, name=f"{p}-range", startIp=f"10.{octet}.0.10",
                   endIp=f"10.{octet}.0.250", netmask="255.255.255.0",
                   gateway=f"10.{octet}.0.1")["inventory"]["uuid"]
    offering = api.call("CreateInstanceOffering", name=f"{p}-small", cpuNum=1,
                        memorySize=GB)["inventory"]["uuid"]
    return Env(p, zone, cluster, host_uuids, ps, bs, image, l2, l3, rng, offering)


def add_public_network(api: ZStackClient, env: Env, octet: int, interface: str = "eth1") -> tuple[str, str]:
    """A public L2/L3 (172.<octet>.0.10-100) attached to the env's cluster, for VIPs; (l2, l3)."""
    l2 = api.call("CreateL2NoVlanNetwork", name=f"{env.prefix}-pub-l2", zoneUuid=env.zone,
                  physicalInterface=interface)["inventory"]["uuid"]
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2, clusterUuid=env.cluster)
    l3 = api.call("CreateL3Network", name=f"{env.prefix}-pub-l3", l2NetworkUuid=l2, category="Public",
                  system=False)["inventory"]["uuid"]
    api.call("AddIpRange", l3NetworkUuid=l3, name=f"{env.prefix}-pub-range", startIp=f"172.{octet}.0.10",
             endIp=f"172.{octet}.0.100", netmask="255.255.255.0", gateway=f"172.{octet}.0.1")
    return l2, l3


def snapshot(api: ZStackClient, env: Env) -> dict[str, Any]:
    """What a failed operation must leave exactly as it was: capacities, IPs, volumes, VMs."""
    hosts = api.query("QueryHost", f"clusterUuid={env.cluster}")
    ps = api.query("QueryPrimaryStorage", f"uuid={env.ps}")[0]
    vms = api.query("QueryVmInstance", f"zoneUuid={env.zone}")
    return {
        "hosts": sorted((h["uuid"], h["availableCpuCapacity"], h["availableMemoryCapacity"]) for h in hosts),
        "ps": ps["availableCapacity"],
        "ips": sorted(i["ip"] for i in api.query("QueryIpAddress", f"l3NetworkUuid={env.l3}")),
        "vms": sorted((v["uuid"], v["state"]) for v in vms),
        "volumes": sorted((v["uuid"], v["status"]) for v in api.query("QueryVolume",
                                                                      f"primaryStorageUuid={env.ps}")),
        "nics": sorted(n["uuid"] for n in api.query("QueryVmNic", f"l3NetworkUuid={env.l3}")),
    }


TRANSITIONAL = {"Starting", "Stopping", "Rebooting", "Pausing", "Resuming", "Migrating", "Destroying",
                "Expunging"}
HOLDING = {"Starting", "Running", "Stopping", "Rebooting", "Pausing", "Paused", "Resuming", "Migrating",
           "Unknown", "Destroying"}


def assert_consistent(api: ZStackClient, admin: Any, env: Env) -> None:
    """Nothing of `env` left mid-flow: no VM in a transitional state, no volume Creating, each
    host's free CPU is its total minus what its VMs hold, each simulated host runs exactly the
    VMs the database says run there, and IPs are held only by NICs that exist."""
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


def slow_creation(admin: Any, delay: float = 0.3) -> None:
    """Slow the agent steps of VM creation (root volume, start) on the simulator, to widen the
    window in which a kill lands mid-flow; undo with admin.clear_faults()."""
    admin.inject("/primarystorage/volume/createfromimage", mode="slow", delay=delay, count=-1)
    admin.inject("/vm/start", mode="slow", delay=delay, count=-1)
