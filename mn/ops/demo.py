"""A ready-to-use demo cloud on the simulator, made through the public API only.

seed() is idempotent: it does nothing if a zone named DEMO_ZONE exists. It returns the uuids a
newcomer needs for CreateVmInstance.
"""

from __future__ import annotations

from typing import Any

from mn.client import ZStackClient

GB = 1 << 30
DEMO_ZONE = "demo-zone"


def seed(api: ZStackClient, hosts: int = 2) -> dict[str, Any]:
    found = api.query("QueryZone", f"name={DEMO_ZONE}")
    if found:
        return describe(api)
    zone = api.call("CreateZone", name=DEMO_ZONE, description="a simulator zone to try the API")["inventory"]
    cluster = api.call("CreateCluster", zoneUuid=zone["uuid"], name="demo-cluster",
                       hypervisorType="Simulator")["inventory"]
    for i in range(hosts):
        api.call("AddSimulatorHost", name=f"demo-host-{i + 1}", clusterUuid=cluster["uuid"],
                 managementIp=f"192.168.0.{i + 11}", cpuCapacity=16, memoryCapacity=64 * GB)
    ps = api.call("AddSimulatorPrimaryStorage", name="demo-ps", zoneUuid=zone["uuid"], url="/demo/ps",
                  totalCapacity=4096 * GB, availableCapacity=4096 * GB, totalPhysicalCapacity=4096 * GB,
                  availablePhysicalCapacity=4096 * GB)["inventory"]
    api.call("AttachPrimaryStorageToCluster", clusterUuid=cluster["uuid"], primaryStorageUuid=ps["uuid"])
    bs = api.call("AddSimulatorBackupStorage", name="demo-bs", url="/demo/bs", totalCapacity=4096 * GB,
                  availableCapacity=4096 * GB)["inventory"]
    api.call("AttachBackupStorageToZone", zoneUuid=zone["uuid"], backupStorageUuid=bs["uuid"])
    api.call("AddImage", name="demo-image", url=f"http://demo.local/demo-image.qcow2?size={GB}",
             backupStorageUuids=[bs["uuid"]], format="qcow2", platform="Linux")
    l2 = api.call("CreateL2NoVlanNetwork", name="demo-l2", zoneUuid=zone["uuid"],
                  physicalInterface="eth0")["inventory"]
    api.call("AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=cluster["uuid"])
    l3 = api.call("CreateL3Network", name="demo-l3", l2NetworkUuid=l2["uuid"])["inventory"]
    api.call("AddIpRange", l3NetworkUuid=l3["uuid"], name="demo-range", startIp="192.168.100.10",
             endIp="192.168.100.250", netmask="255.255.255.0", gateway="192.168.100.1")
    api.call("CreateInstanceOffering", name="demo-small", cpuNum=1, memorySize=GB)
    return describe(api)


def describe(api: ZStackClient) -> dict[str, Any]:
    def one(query: str, name: str) -> str:
        rows = api.query(query, f"name={name}")
        return rows[0]["uuid"] if rows else ""

    return {"zoneUuid": one("QueryZone", DEMO_ZONE), "imageUuid": one("QueryImage", "demo-image"),
            "l3NetworkUuid": one("QueryL3Network", "demo-l3"),
            "instanceOfferingUuid": one("QueryInstanceOffering", "demo-small")}


def next_command(d: dict[str, Any]) -> str:
    return (f"CreateVmInstance name=vm1 instanceOfferingUuid={d['instanceOfferingUuid']} "
            f"imageUuid={d['imageUuid']} l3NetworkUuids={d['l3NetworkUuid']}")
