from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from mn.allocator import host as alloc
from mn.errors import ApiError
from mn.models import (
    Cluster,
    Host,
    L2Network,
    L2NetworkClusterRef,
    L3Network,
    PrimaryStorage,
    PrimaryStorageClusterRef,
    VmInstance,
    Zone,
)

GB = 1 << 30


def _uuid(prefix: str, i: int = 0) -> str:
    return f"{prefix}{i}".ljust(32, "0")


@pytest.fixture
def env(db):
    with db.tx() as s:
        s.add(Zone(uuid=_uuid("z"), name="z"))
        s.flush()
        for c in range(2):
            s.add(Cluster(uuid=_uuid("c", c), name=f"c{c}", zoneUuid=_uuid("z"), hypervisorType="Simulator"))
        s.flush()
        for h in range(4):
            s.add(Host(uuid=_uuid("h", h), name=f"h{h}", zoneUuid=_uuid("z"), clusterUuid=_uuid("c", h % 2),
                       managementIp=f"10.0.0.{h}", hypervisorType="Simulator", status="Connected",
                       totalCpuCapacity=8, availableCpuCapacity=8, totalMemoryCapacity=8 * GB,
                       availableMemoryCapacity=8 * GB))
        s.add(L2Network(uuid=_uuid("l2"), name="l2", zoneUuid=_uuid("z"), physicalInterface="eth0",
                        type="L2NoVlanNetwork"))
        s.flush()
        s.add(L3Network(uuid=_uuid("l3"), name="l3", zoneUuid=_uuid("z"), l2NetworkUuid=_uuid("l2")))
        s.add(PrimaryStorage(uuid=_uuid("ps"), name="ps", zoneUuid=_uuid("z"), url="/", type="Simulator",
                             status="Connected", totalCapacity=100 * GB, availableCapacity=100 * GB))
        s.flush()
        # Only cluster 0 has the L2 and the primary storage.
        s.add(L2NetworkClusterRef(clusterUuid=_uuid("c", 0), l2NetworkUuid=_uuid("l2")))
        s.add(PrimaryStorageClusterRef(clusterUuid=_uuid("c", 0), primaryStorageUuid=_uuid("ps")))
    return db


def test_filters_keep_only_hosts_of_clusters_with_the_l2_and_storage(env):
    with env.tx() as s:
        req = alloc.HostRequest(cpu=1, memory=GB, l3_uuids=[_uuid("l3")])
        assert sorted(alloc.candidates(s, req)) == [_uuid("h", 0), _uuid("h", 2)]


def test_reservation_takes_capacity_and_respects_over_provisioning(env):
    with env.tx() as s:
        h = alloc.allocate(s, alloc.HostRequest(cpu=2, memory=4 * GB, memory_ratio=2.0, l3_uuids=[_uuid("l3")]))
        row = s.get(Host, h)
        assert row.availableCpuCapacity == 6 and row.availableMemoryCapacity == 6 * GB
        alloc.release(s, h, 2, 2 * GB)
        alloc.release(s, h, 2, 2 * GB)  # never above the total
        row = s.get(Host, h)
        s.refresh(row)
        assert row.availableCpuCapacity == 8 and row.availableMemoryCapacity == 8 * GB


def test_no_host_explains_why(env):
    with env.tx() as s, pytest.raises(ApiError) as e:
        alloc.allocate(s, alloc.HostRequest(cpu=64, memory=GB, l3_uuids=[_uuid("l3")]))
    assert e.value.code == "HOST_ALLOCATION.1001"
    assert "2 host(s) in an Enabled zone/cluster" in e.value.details and "0 host(s) with 64 free CPUs" in e.value.details


def test_disabled_and_disconnected_hosts_are_skipped(env):
    with env.tx() as s:
        s.get(Host, _uuid("h", 0)).state = "Disabled"
        s.get(Host, _uuid("h", 2)).status = "Disconnected"
    with env.tx() as s, pytest.raises(ApiError):
        alloc.allocate(s, alloc.HostRequest(cpu=1, memory=GB, l3_uuids=[_uuid("l3")]))


def test_least_vm_strategy_prefers_emptier_hosts(env):
    with env.tx() as s:
        s.add(VmInstance(uuid=_uuid("vm"), name="vm", hostUuid=_uuid("h", 0), state="Running", cpuNum=1,
                         memorySize=GB))
    with env.tx() as s:
        req = alloc.HostRequest(cpu=1, memory=GB, l3_uuids=[_uuid("l3")], strategy=alloc.LEAST_VM)
        assert alloc.candidates(s, req)[0] == _uuid("h", 2)


def test_concurrent_allocations_never_over_commit(env):
    errors, got = [], []

    def worker():
        for _ in range(5):
            try:
                with env.tx() as s:
                    got.append(alloc.allocate(s, alloc.HostRequest(cpu=1, memory=GB, l3_uuids=[_uuid("l3")])))
            except ApiError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 and len(errors) == 24  # two hosts of 8 CPUs each
    with env.ro() as s:
        for h in s.scalars(select(Host).where(Host.clusterUuid == _uuid("c", 0))):
            assert h.availableCpuCapacity == 0
