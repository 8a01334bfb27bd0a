"""The host allocator on LocalStorage: only hosts with a share of the storage qualify, and a VM
whose volumes are there can only run (start, migrate) on the host that holds them."""

from __future__ import annotations

import pytest

from mn.allocator import host as alloc
from mn.errors import ApiError
from mn.models import (
    Cluster,
    Host,
    PrimaryStorage,
    PrimaryStorageClusterRef,
    VmInstance,
    Volume,
    Zone,
)
from zstack_plugins.local_storage import primary_storage  # noqa: F401  (its host filters)
from zstack_plugins.local_storage.models import LocalStorageHostRef

GB = 1 << 30


def _uuid(prefix: str, i: int = 0) -> str:
    return f"{prefix}{i}".ljust(32, "0")


@pytest.fixture
def env(db):
    """Three connected hosts in one cluster; local storage with a share on hosts 0 and 1 only; a
    shared storage too; VM v0 with its root volume on local storage on host 1."""
    with db.tx() as s:
        s.add(Zone(uuid=_uuid("z"), name="z"))
        s.flush()
        s.add(Cluster(uuid=_uuid("c"), name="c", zoneUuid=_uuid("z"), hypervisorType="KVM"))
        s.flush()
        for h in range(3):
            s.add(Host(uuid=_uuid("h", h), name=f"h{h}", zoneUuid=_uuid("z"), clusterUuid=_uuid("c"),
                       managementIp=f"10.0.0.{h}", hypervisorType="KVM", status="Connected",
                       totalCpuCapacity=8, availableCpuCapacity=8, totalMemoryCapacity=8 * GB,
                       availableMemoryCapacity=8 * GB))
        for name, kind in (("local", "LocalStorage"), ("shared", "Simulator")):
            s.add(PrimaryStorage(uuid=_uuid(name), name=name, zoneUuid=_uuid("z"), url="/ps", type=kind,
                                 status="Connected", totalCapacity=100 * GB, availableCapacity=100 * GB))
        s.flush()
        for name in ("local", "shared"):
            s.add(PrimaryStorageClusterRef(clusterUuid=_uuid("c"), primaryStorageUuid=_uuid(name)))
        for h in range(2):
            s.add(LocalStorageHostRef(primaryStorageUuid=_uuid("local"), hostUuid=_uuid("h", h),
                                      totalCapacity=50 * GB, availableCapacity=50 * GB))
        s.add(VmInstance(uuid=_uuid("v"), name="v", zoneUuid=_uuid("z"), clusterUuid=_uuid("c"),
                         hostUuid=_uuid("h", 1), memorySize=GB, cpuNum=1, state="Stopped"))
        s.flush()
        s.add(Volume(uuid=_uuid("vol"), name="root", vmInstanceUuid=_uuid("v"), primaryStorageUuid=_uuid("local"),
                     hostUuid=_uuid("h", 1), type="Root", size=GB, status="Ready"))
    return db


def test_only_hosts_with_a_share_of_the_local_storage_qualify(env):
    with env.tx() as s:
        req = alloc.HostRequest(cpu=1, memory=GB, ps_uuid=_uuid("local"))
        assert sorted(alloc.candidates(s, req)) == [_uuid("h", 0), _uuid("h", 1)]


def test_a_vm_with_local_volumes_is_pinned_to_their_host(env):
    with env.tx() as s:
        req = alloc.HostRequest(cpu=1, memory=GB, ps_uuid=_uuid("local"), vm_uuid=_uuid("v"))
        assert alloc.candidates(s, req) == [_uuid("h", 1)]
        assert alloc.allocate(s, req) == _uuid("h", 1)
        migrate = alloc.HostRequest(cpu=1, memory=GB, ps_uuid=_uuid("local"), vm_uuid=_uuid("v"),
                                    exclude=[_uuid("h", 1)])
        with pytest.raises(ApiError) as e:
            alloc.allocate(s, migrate)
        assert e.value.code == "HOST_ALLOCATION.1001"


def test_shared_storage_is_not_pinned(env):
    with env.tx() as s:
        req = alloc.HostRequest(cpu=1, memory=GB, ps_uuid=_uuid("shared"), vm_uuid=_uuid("v"))
        assert sorted(alloc.candidates(s, req)) == [_uuid("h", h) for h in range(3)]
