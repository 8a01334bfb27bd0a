"""recompute_host_capacity: totals minus what the VMs on a host hold, in SQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from mn.db.base import Base
from mn.models import Cluster, GlobalConfig, Host, VmInstance, Zone
from mn.services.host_capacity import (
    drifted_hosts,
    host_totals,
    recompute_host_capacity,
    reserved_memory,
    stored_memory_ratio,
    used_capacity,
)

GB = 1 << 30


@pytest.fixture
def s() -> Iterator[Session]:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with sessionmaker(bind=engine)() as session:
        session.add(Zone(uuid="z" * 32, name="z"))
        session.add(Cluster(uuid="c" * 32, name="c", zoneUuid="z" * 32, hypervisorType="Simulator"))
        for h in ("a", "b"):
            session.add(Host(uuid=h * 32, name=h, zoneUuid="z" * 32, clusterUuid="c" * 32,
                             managementIp=f"10.0.0.{ord(h)}", hypervisorType="Simulator",
                             status="Connected", cpuNum=8, totalCpuCapacity=80, availableCpuCapacity=80,
                             totalMemoryCapacity=16 * GB, availableMemoryCapacity=16 * GB))
        session.commit()
        yield session
    engine.dispose()


def _vm(s: Session, n: int, state: str, cpu: int, mem: int, host: str | None = "a" * 32) -> None:
    s.add(VmInstance(uuid=f"{n:032x}", name=f"vm{n}", state=state, cpuNum=cpu, memorySize=mem,
                     hostUuid=host))


def test_totals_and_reserved_memory() -> None:
    assert host_totals(8, 16 * GB, 10) == (80, 16 * GB)
    assert reserved_memory(4 * GB, 1.0) == 4 * GB
    assert reserved_memory(3 * GB, 1.5) == 2 * GB
    assert reserved_memory(10, 3.0) == 4  # rounded up, as the allocator reserves


def test_no_vms_gives_totals(s: Session) -> None:
    assert recompute_host_capacity(s, "a" * 32, 1.0) == (80, 16 * GB)


def test_only_holding_states_count(s: Session) -> None:
    _vm(s, 1, "Running", 2, 2 * GB)
    _vm(s, 2, "Paused", 1, 1 * GB)
    _vm(s, 3, "Unknown", 1, 1 * GB)
    _vm(s, 4, "Starting", 2, 2 * GB)
    _vm(s, 5, "Stopped", 4, 4 * GB)
    _vm(s, 6, "Created", 4, 4 * GB)
    _vm(s, 7, "Destroyed", 4, 4 * GB)
    _vm(s, 8, "Running", 8, 8 * GB, host="b" * 32)   # another host
    _vm(s, 9, "Running", 8, 8 * GB, host=None)
    s.flush()
    assert used_capacity(s, "a" * 32, 1.0) == (6, 6 * GB)
    assert recompute_host_capacity(s, "a" * 32, 1.0) == (74, 10 * GB)
    h = s.get(Host, "a" * 32)
    s.refresh(h)
    assert (h.availableCpuCapacity, h.availableMemoryCapacity) == (74, 10 * GB)
    assert (h.totalCpuCapacity, h.totalMemoryCapacity) == (80, 16 * GB)
    other = s.get(Host, "b" * 32)
    assert other.availableCpuCapacity == 80  # untouched


def test_memory_ratio_applies_per_vm(s: Session) -> None:
    _vm(s, 1, "Running", 1, 3 * GB)
    _vm(s, 2, "Running", 1, 3 * GB)
    _vm(s, 3, "Running", 1, 1 * GB)
    s.flush()
    cpu, mem = recompute_host_capacity(s, "a" * 32, 2.0)
    assert cpu == 77
    assert mem == 16 * GB - (2 * reserved_memory(3 * GB, 2.0) + reserved_memory(GB, 2.0))


def test_ratio_defaults_to_stored_global_config(s: Session) -> None:
    assert stored_memory_ratio(s) == 1.0
    s.add(GlobalConfig(category="mevoco", name="overProvisioning.memory", value="2.0", defaultValue="1.0"))
    _vm(s, 1, "Running", 1, 4 * GB)
    s.flush()
    assert stored_memory_ratio(s) == 2.0
    assert recompute_host_capacity(s, "a" * 32) == (79, 14 * GB)


def test_overcommitted_host_goes_negative(s: Session) -> None:
    _vm(s, 1, "Running", 100, 20 * GB)
    s.flush()
    assert recompute_host_capacity(s, "a" * 32, 1.0) == (-20, -4 * GB)


def test_unknown_host(s: Session) -> None:
    assert recompute_host_capacity(s, "f" * 32, 1.0) is None


def test_drifted_hosts_are_those_whose_available_capacity_disagrees(s: Session) -> None:
    _vm(s, 1, "Running", 2, 4 * GB)
    _vm(s, 2, "Stopped", 4, 8 * GB)  # holds nothing
    s.commit()
    assert drifted_hosts(s, 1.0) == ["a" * 32]  # a's VM holds capacity its row does not show
    recompute_host_capacity(s, "a" * 32, 1.0)
    s.commit()
    assert drifted_hosts(s, 1.0) == []
    assert drifted_hosts(s, 2.0) == ["a" * 32]  # the memory ratio changes what the VM holds

