"""The host allocator: filters, then a strategy, then an atomic capacity reservation.

Filters (all in SQL): host Enabled and Connected, its cluster and zone Enabled, hypervisor type,
zone/cluster/host pins, exclusions, every requested L3's L2 attached to the host's cluster,
a primary storage attached to the cluster (when `need_ps` is set) and free CPU and memory.
When the volumes already live on a primary storage (`ps_uuid`), the storage types' own filters
apply too (PrimaryStorageType.host_filters: on a LocalStorage, only hosts with a share of it, and
only the host holding the VM's volumes there, `vm_uuid`, can run it).
Strategies: DefaultHostAllocatorStrategy (random among candidates) and
LeastVmPreferredHostAllocatorStrategy (fewest VMs first). The reservation is a compare-and-swap
UPDATE, so concurrent allocations never over-commit a host; losing a race tries the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, bindparam, case, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mn.connection import CONNECTED
from mn.db.engine import connection_of
from mn.errors import NO_AVAILABLE_HOST, ApiError
from mn.models import (
    Cluster,
    Host,
    L2NetworkClusterRef,
    L3Network,
    PrimaryStorage,
    PrimaryStorageClusterRef,
    VmInstance,
    Zone,
)
from mn.resource_types import PRIMARY_STORAGES

DEFAULT = "DefaultHostAllocatorStrategy"
LEAST_VM = "LeastVmPreferredHostAllocatorStrategy"
STRATEGIES = (DEFAULT, LEAST_VM)
# VM states in which a VM holds CPU and memory on its host.
HOLDING_STATES = ("Starting", "Running", "Stopping", "Rebooting", "Pausing", "Paused", "Resuming",
                  "Migrating", "Unknown", "Destroying")
CANDIDATE_LIMIT = 64


@dataclass
class HostRequest:
    cpu: int
    memory: int                       # bytes the VM asks for
    memory_ratio: float = 1.0         # mevoco/overProvisioning.memory
    zone_uuid: str | None = None
    cluster_uuid: str | None = None
    host_uuid: str | None = None
    hypervisor_type: str | None = None
    l3_uuids: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    strategy: str = DEFAULT
    need_ps: bool = True              # the host's cluster must have a usable primary storage
    ps_uuid: str | None = None        # ...this one, when the volumes already live on it
    vm_uuid: str | None = None        # the VM whose volumes those are (local storage pins its host)

    @property
    def reserved_memory(self) -> int:
        return math.ceil(self.memory / self.memory_ratio)


def _params(req: HostRequest, with_capacity: bool = True) -> dict[str, Any]:
    """The request's values by the bind parameter names of _filters(template=True)."""
    out: dict[str, Any] = {"hv": req.hypervisor_type, "zone": req.zone_uuid, "cluster": req.cluster_uuid,
                           "host": req.host_uuid, "exclude": list(req.exclude), "ps": req.ps_uuid,
                           "vm": req.vm_uuid}
    out.update({f"l3_{i}": u for i, u in enumerate(dict.fromkeys(req.l3_uuids))})
    if with_capacity:
        out.update(cpu=req.cpu, mem=req.reserved_memory)
    return out


def _shape(req: HostRequest) -> tuple:
    """What decides the form of the filters (not their values)."""
    return (bool(req.hypervisor_type), bool(req.zone_uuid), bool(req.cluster_uuid), bool(req.host_uuid),
            bool(req.exclude), len(dict.fromkeys(req.l3_uuids)), bool(req.need_ps or req.ps_uuid),
            bool(req.ps_uuid), bool(req.vm_uuid), req.strategy, PRIMARY_STORAGES.version)


def _filters(req: HostRequest, with_capacity: bool = True, template: bool = False) -> list:
    """The filters as SQL terms; with `template`, every value is a bind parameter (named as in
    _params) so the statement can be built once per request shape."""
    def v(name: str, value: Any, expanding: bool = False) -> Any:
        return bindparam(name, expanding=expanding) if template else value

    f = [Host.state == "Enabled", Host.status == CONNECTED,
         Host.clusterUuid.in_(select(Cluster.uuid).where(Cluster.state == "Enabled")),
         Host.zoneUuid.in_(select(Zone.uuid).where(Zone.state == "Enabled"))]
    if req.hypervisor_type:
        f.append(Host.hypervisorType == v("hv", req.hypervisor_type))
    if req.zone_uuid:
        f.append(Host.zoneUuid == v("zone", req.zone_uuid))
    if req.cluster_uuid:
        f.append(Host.clusterUuid == v("cluster", req.cluster_uuid))
    if req.host_uuid:
        f.append(Host.uuid == v("host", req.host_uuid))
    if req.exclude:
        f.append(Host.uuid.not_in(v("exclude", list(req.exclude), expanding=True)))
    for i, l3 in enumerate(dict.fromkeys(req.l3_uuids)):
        l2 = select(L3Network.l2NetworkUuid).where(L3Network.uuid == v(f"l3_{i}", l3)).scalar_subquery()
        f.append(Host.clusterUuid.in_(select(L2NetworkClusterRef.clusterUuid)
                                      .where(L2NetworkClusterRef.l2NetworkUuid == l2)))
    if req.need_ps or req.ps_uuid:
        ps = select(PrimaryStorage.uuid).where(PrimaryStorage.state == "Enabled",
                                               PrimaryStorage.status == CONNECTED)
        if req.ps_uuid:
            ps = ps.where(PrimaryStorage.uuid == v("ps", req.ps_uuid))
        f.append(Host.clusterUuid.in_(select(PrimaryStorageClusterRef.clusterUuid)
                                      .where(PrimaryStorageClusterRef.primaryStorageUuid.in_(ps))))
    if req.ps_uuid:
        for t in PRIMARY_STORAGES.types():
            if t.host_filters is not None:
                f.extend(t.host_filters(v("ps", req.ps_uuid), v("vm", req.vm_uuid) if req.vm_uuid else None))
    if with_capacity:
        f.append(Host.availableCpuCapacity >= v("cpu", req.cpu))
        f.append(Host.availableMemoryCapacity >= v("mem", req.reserved_memory))
    return f


_CANDIDATE_QUERIES: dict[tuple, Any] = {}  # (request shape, limit) -> statement with bind parameters


def candidate_rows(s: Session | Connection, req: HostRequest, limit: int = CANDIDATE_LIMIT) -> list[Row]:
    """The hosts that pass every filter, in the strategy's order (no reservation), as rows of
    uuid, clusterUuid, zoneUuid, hypervisorType and agentUrl. The statement is built once per
    request shape (every VM creation asks)."""
    key = (_shape(req), limit)
    q = _CANDIDATE_QUERIES.get(key)
    if q is None:
        q = (select(Host.uuid, Host.clusterUuid, Host.zoneUuid, Host.hypervisorType, Host.agentUrl)
             .where(*_filters(req, template=True)))
        if req.strategy == LEAST_VM:
            vms = (select(func.count()).select_from(VmInstance)
                   .where(VmInstance.hostUuid == Host.uuid, VmInstance.state.in_(HOLDING_STATES))
                   .scalar_subquery())
            q = q.order_by(vms, Host.uuid)
        else:
            q = q.order_by(func.random())
        q = _CANDIDATE_QUERIES.setdefault(key, q.limit(limit))
    return list(connection_of(s).execute(q, _params(req)))


def candidates(s: Session | Connection, req: HostRequest, limit: int = CANDIDATE_LIMIT) -> list[str]:
    """Uuids of the hosts that pass every filter, in the strategy's order (candidate_rows)."""
    return [r.uuid for r in candidate_rows(s, req, limit)]


# Built once: every VM start reserves (a compare-and-swap on the host's free capacity).
_RESERVE = (update(Host).where(Host.uuid == bindparam("h"), Host.availableCpuCapacity >= bindparam("cpu"),
                               Host.availableMemoryCapacity >= bindparam("mem"))
            .values(availableCpuCapacity=Host.availableCpuCapacity - bindparam("cpu"),
                    availableMemoryCapacity=Host.availableMemoryCapacity - bindparam("mem")))


def reserve(s: Session, host_uuid: str, cpu: int, memory: int) -> bool:
    """Take cpu and memory (already over-provisioning adjusted) from a host, or return False.
    Core on the session's connection: no ORM copy of the host is refreshed."""
    return s.connection().execute(_RESERVE, {"h": host_uuid, "cpu": cpu, "mem": memory}).rowcount == 1


def _capped(total, available, amount):  # noqa: ANN001, ANN202
    return case((available + amount > total, total), else_=available + amount)


def release(s: Session, host_uuid: str, cpu: int, memory: int) -> None:
    """Return capacity to a host, never above its totals."""
    s.execute(update(Host).where(Host.uuid == host_uuid).values(
        availableCpuCapacity=_capped(Host.totalCpuCapacity, Host.availableCpuCapacity, cpu),
        availableMemoryCapacity=_capped(Host.totalMemoryCapacity, Host.availableMemoryCapacity, memory)))


def allocate(s: Session, req: HostRequest, prefetched: list[str] | None = None) -> str:
    """Choose a host and reserve the request's capacity on it; raise NO_AVAILABLE_HOST with reasons.
    `prefetched`: candidates(req) read before the caller's write transaction began (so the write
    holds its lock for the reservation only); they are tried first, then fresh candidates."""
    if req.strategy not in STRATEGIES:
        raise ApiError(NO_AVAILABLE_HOST, f"unknown host allocator strategy {req.strategy}; "
                                          f"valid: {list(STRATEGIES)}")
    for attempt in range(3):
        found = candidates(s, req) if attempt or prefetched is None else prefetched
        if not found and attempt:
            break
        for h in found:
            if reserve(s, h, req.cpu, req.reserved_memory):
                return h
    raise ApiError(NO_AVAILABLE_HOST, explain(s, req))


def explain(s: Session, req: HostRequest) -> str:
    """Why no host fits: how many hosts survive each filter, in order."""
    base = [Host.state == "Enabled", Host.status == CONNECTED]
    steps = [("Enabled and Connected", base)]
    full = _filters(req, with_capacity=False)
    steps.append(("in an Enabled zone/cluster, matching the requested zone/cluster/host/hypervisor, "
                  "with the L3 networks' L2 attached and a usable primary storage", full))
    steps.append((f"with {req.cpu} free CPUs and {req.reserved_memory} bytes of free memory",
                  full + [Host.availableCpuCapacity >= req.cpu,
                          Host.availableMemoryCapacity >= req.reserved_memory]))
    parts = []
    for label, f in steps:
        n = s.scalar(select(func.count()).select_from(Host).where(*f))
        parts.append(f"{n} host(s) {label}")
        if not n:
            break
    return "no host can run the VM: " + "; ".join(parts)
