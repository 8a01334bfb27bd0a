"""Host CPU and memory capacity: what a host offers and what its VMs hold.

Invariants:
- totalCpuCapacity = cpuNum * host/cpu.overProvisioning.ratio; totalMemoryCapacity = the physical
  memory the agent reports (memory over-provisioning is applied per VM, below).
- A VM holds capacity on its `hostUuid` while in one of the allocator's HOLDING_STATES: `cpuNum`
  vCPUs and reserved_memory(memorySize, mevoco/overProvisioning.memory) bytes. These are exactly
  the amounts the allocator reserves, so a recomputation agrees with incremental reservations.
- available = total - what the VMs hold. It may be negative when a host shrank under its VMs;
  the allocator then simply finds no room there.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mn.allocator.host import HOLDING_STATES
from mn.globalconfig import MEMORY_OVER_PROVISIONING
from mn.models import GlobalConfig, Host, VmInstance


def reserved_memory(memory_size: int, memory_ratio: float = 1.0) -> int:
    """Bytes of host memory a VM of `memory_size` bytes holds (the allocator's rounding: up)."""
    return math.ceil(memory_size / memory_ratio)


def host_totals(cpu_num: int, total_memory: int, cpu_ratio: int) -> tuple[int, int]:
    """(totalCpuCapacity, totalMemoryCapacity) of a host with these facts."""
    return cpu_num * cpu_ratio, total_memory


def stored_memory_ratio(s: Session) -> float:
    """mevoco/overProvisioning.memory as stored in the database (its default if absent or bad)."""
    d = MEMORY_OVER_PROVISIONING
    raw = s.scalars(select(GlobalConfig.value).where(GlobalConfig.category == d.category,
                                                     GlobalConfig.name == d.name)).first()
    try:
        return d.parse(raw if raw is not None else d.default)
    except Exception:  # noqa: BLE001 - a bad stored value must not break capacity accounting
        return d.parse(d.default)


def used_capacity(s: Session, host_uuid: str, memory_ratio: float) -> tuple[int, int]:
    """(vCPUs, memory bytes) held by the VMs on a host: one query grouped by memory size."""
    rows = s.execute(
        select(VmInstance.memorySize, func.count(), func.coalesce(func.sum(VmInstance.cpuNum), 0))
        .where(VmInstance.hostUuid == host_uuid, VmInstance.state.in_(HOLDING_STATES))
        .group_by(VmInstance.memorySize)
    ).all()
    cpu = sum(int(r[2]) for r in rows)
    memory = sum(reserved_memory(int(r[0] or 0), memory_ratio) * int(r[1]) for r in rows)
    return cpu, memory


def recompute_host_capacity(s: Session, host_uuid: str, memory_ratio: float | None = None,
                            ) -> tuple[int, int] | None:
    """Set a host's available CPU and memory to its totals minus what its VMs hold.

    Runs in the caller's write transaction; the host row is locked first (SELECT ... FOR UPDATE
    where the database has row locks, BEGIN IMMEDIATE on SQLite) so a concurrent reservation
    cannot be lost. `memory_ratio` defaults to the stored global config. Returns
    (availableCpuCapacity, availableMemoryCapacity), or None if the host does not exist.
    """
    totals = s.execute(select(Host.totalCpuCapacity, Host.totalMemoryCapacity)
                       .where(Host.uuid == host_uuid).with_for_update()).first()
    if totals is None:
        return None
    ratio = memory_ratio if memory_ratio is not None else stored_memory_ratio(s)
    cpu_used, memory_used = used_capacity(s, host_uuid, ratio)
    available = (int(totals[0]) - cpu_used, int(totals[1]) - memory_used)
    s.execute(update(Host).where(Host.uuid == host_uuid)
              .values(availableCpuCapacity=available[0], availableMemoryCapacity=available[1]))
    return available


def drifted_hosts(s: Session, memory_ratio: float | None = None) -> list[str]:
    """Hosts whose stored available capacity differs from total minus what their VMs hold.

    Two grouped reads for all hosts (no per-host query), so a start-up check of 10,000 hosts and
    1,000,000 VMs costs seconds; recompute_host_capacity then repairs only the hosts returned.
    """
    ratio = memory_ratio if memory_ratio is not None else stored_memory_ratio(s)
    used: dict[str, list[int]] = {}
    held = (select(VmInstance.hostUuid, VmInstance.memorySize, func.count(),
                   func.coalesce(func.sum(VmInstance.cpuNum), 0))
            .where(VmInstance.hostUuid.is_not(None), VmInstance.state.in_(HOLDING_STATES))
            .group_by(VmInstance.hostUuid, VmInstance.memorySize))
    for host, mem, n, cpu in s.execute(held):
        u = used.setdefault(host, [0, 0])
        u[0] += int(cpu)
        u[1] += reserved_memory(int(mem or 0), ratio) * int(n)
    out = []
    for uuid, tcpu, tmem, acpu, amem in s.execute(select(
            Host.uuid, Host.totalCpuCapacity, Host.totalMemoryCapacity, Host.availableCpuCapacity,
            Host.availableMemoryCapacity)):
        cpu, mem = used.get(uuid, (0, 0))
        if (int(tcpu) - cpu, int(tmem) - mem) != (int(acpu), int(amem)):
            out.append(uuid)
    return out

