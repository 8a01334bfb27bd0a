"""GetCpuMemoryCapacity: CPU and memory capacity of hosts, summed per host, cluster or zone.

As in ZStack: the most specific non-empty list wins (hostUuids, then clusterUuids, then
zoneUuids); `all` means every zone; only Enabled and Connected hosts count. The sums are SQL
aggregates grouped by the chosen level: hosts are never loaded into Python.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mn.api.registry import Msg, apis
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.errors import invalid, not_found
from mn.models import Cluster, Host, Zone


def _check_exist(s: Session, model: type, uuids: list[str], vo: str) -> None:
    found = set(s.scalars(select(model.uuid).where(model.uuid.in_(uuids))))
    for u in uuids:
        if u not in found:
            raise not_found(vo, u)


@apis.handler("GetCpuMemoryCapacity")
def get_cpu_memory_capacity(ctx: ApiContext, msg: Msg) -> dict:
    hosts, clusters, zones = msg.get("hostUuids"), msg.get("clusterUuids"), msg.get("zoneUuids")
    if not (hosts or clusters or zones or msg.get("all")):
        raise invalid("GetCpuMemoryCapacity needs a non-empty hostUuids, clusterUuids or zoneUuids, "
                      "or all=true")
    if hosts:
        key, ids, model, rtype = Host.uuid, hosts, Host, "HostVO"
    elif clusters:
        key, ids, model, rtype = Host.clusterUuid, clusters, Cluster, "ClusterVO"
    else:
        key, ids, model, rtype = Host.zoneUuid, zones or None, Zone, "ZoneVO"
    q = (select(key, func.sum(Host.totalCpuCapacity), func.sum(Host.availableCpuCapacity),
                func.sum(Host.totalMemoryCapacity), func.sum(Host.availableMemoryCapacity),
                func.sum(Host.cpuNum))
         .where(Host.state == "Enabled", Host.status == CONNECTED).group_by(key).order_by(key))
    if ids is not None:
        q = q.where(key.in_(ids))
    if msg.get("hypervisorType"):
        q = q.where(Host.hypervisorType == msg.hypervisorType)
    with ctx.db.ro() as s:
        if ids is not None:
            _check_exist(s, model, ids, rtype)
        rows = s.execute(q).all()
    data = [{"resourceUuid": r[0], "totalCpu": int(r[1] or 0), "availableCpu": int(r[2] or 0),
             "totalMemory": int(r[3] or 0), "availableMemory": max(0, int(r[4] or 0)),
             "managedCpuNum": int(r[5] or 0)} for r in rows]
    out: dict = {f: sum(d[f] for d in data)
                 for f in ("totalCpu", "availableCpu", "totalMemory", "availableMemory", "managedCpuNum")}
    return {**out, "capacityData": data, "resourceType": rtype}
