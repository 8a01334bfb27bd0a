"""Local primary storage: AddLocalPrimaryStorage and GetLocalStorageHostDiskCapacity.

A LocalStorage primary storage is the directory `url` on every host of the clusters it is
attached to; its commands go to each host's agent (vm_common.ps_url: the storage has no agent
URL) and a volume stays on the host it was created on (Volume.hostUuid).

Invariants:
- One LocalStorageHostRef per (storage, host) that initialised the directory, with the capacity
  that host's agent reported; the storage's totals are the sums over its refs, and a resync
  keeps what volumes reserved from the logical capacity (primary_storage.resync_capacity).
- A host joins when it connects in an attached cluster (HOST_CONNECTED; a host that cannot
  prepare the directory fails its connect) or when the storage is attached to its cluster; it
  leaves when it is deleted or the storage is detached from its cluster.
- No database transaction is held across an HTTP call to an agent.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session

from kvmagent.protocol import CapacityRsp, InitPrimaryStorageCmd
from mn import extensions
from mn.api.registry import Msg, apis, key_of
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.errors import ApiError, invalid
from mn.models import Host, PrimaryStorage, PrimaryStorageClusterRef, Volume, Zone
from mn.resource_types import PRIMARY_STORAGES, PrimaryStorageType
from mn.services import primary_storage as pss
from mn.services.common import add_tags, check_storage_path, get_or_404, inventory, new_resource_uuid
from zstack_plugins.local_storage.models import LocalStorageHostRef

log = logging.getLogger(__name__)

LOCAL = "LocalStorage"


def host_filters(ps_uuid: Any, vm_uuid: Any | None) -> list:
    """Filters that hold only when the storage is LocalStorage: a host with a share of it, and
    the host of the VM's volumes on it."""
    not_local = ~exists(select(PrimaryStorage.uuid).where(PrimaryStorage.uuid == ps_uuid,
                                                          PrimaryStorage.type == LOCAL))
    f = [or_(not_local, Host.uuid.in_(select(LocalStorageHostRef.hostUuid)
                                      .where(LocalStorageHostRef.primaryStorageUuid == ps_uuid)))]
    if vm_uuid is not None:
        f.append(or_(not_local, Host.uuid.in_(select(Volume.hostUuid).where(
            Volume.vmInstanceUuid == vm_uuid, Volume.primaryStorageUuid == ps_uuid, Volume.hostUuid.is_not(None)))))
    return f


PRIMARY_STORAGES.register(PrimaryStorageType(LOCAL, host_filters=host_filters))


# ---- add ----------------------------------------------------------------------------------------

def _check_add(ctx: ApiContext, msg: Msg) -> None:
    uuid = msg["resourceUuid"] = new_resource_uuid(msg)
    check_storage_path(msg.url, "AddLocalPrimaryStorage")
    if msg.get("type") not in (None, LOCAL):
        raise invalid(f"parameter 'type' of AddLocalPrimaryStorage must be {LOCAL}, got {msg.type!r}")
    with ctx.db.ro() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        if s.get(PrimaryStorage, uuid) is not None:
            raise invalid(f"resourceUuid {uuid} is already used by another primary storage")


@apis.handler("AddLocalPrimaryStorage", check=_check_add, sync_key=key_of("resourceUuid", "primary-storage"))
def add_local_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    """Connected at once, with no capacity until hosts of an attached cluster initialise it."""
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        s.add(PrimaryStorage(uuid=uuid, name=msg.name, description=msg.get("description"), zoneUuid=msg.zoneUuid,
                             url=msg.url.rstrip("/") or "/", type=LOCAL, state="Enabled", status=CONNECTED,
                             mountPath=msg.url, agentUrl=None))
        add_tags(s, uuid, "PrimaryStorageVO", msg)
    return {"inventory": inventory(ctx, PrimaryStorage, uuid)}


# ---- per-host capacity --------------------------------------------------------------------------

def _local_storages_of_cluster(s: Session, cluster_uuid: str) -> list[tuple[str, str]]:
    """(uuid, url) of the LocalStorage storages attached to a cluster."""
    return [(r[0], r[1]) for r in s.execute(
        select(PrimaryStorage.uuid, PrimaryStorage.url)
        .join(PrimaryStorageClusterRef, PrimaryStorageClusterRef.primaryStorageUuid == PrimaryStorage.uuid)
        .where(PrimaryStorageClusterRef.clusterUuid == cluster_uuid, PrimaryStorage.type == LOCAL)
        .order_by(PrimaryStorage.uuid))]


def resum(ctx: ApiContext, ps_uuid: str) -> None:
    """Set the storage's totals to the sums over its host refs (reservations kept)."""
    with ctx.db.ro() as s:
        total, avail = s.execute(select(func.coalesce(func.sum(LocalStorageHostRef.totalCapacity), 0),
                                        func.coalesce(func.sum(LocalStorageHostRef.availablePhysicalCapacity), 0))
                                 .where(LocalStorageHostRef.primaryStorageUuid == ps_uuid)).one()
    pss.resync_capacity(ctx, ps_uuid, int(total), int(avail))


def init_on_host(ctx: ApiContext, ps_uuid: str, host_uuid: str) -> None:
    """Ask the host's agent to prepare the directory; record the capacity it reports, then resum."""
    with ctx.db.ro() as s:
        ps, host = get_or_404(s, PrimaryStorage, ps_uuid), get_or_404(s, Host, host_uuid)
        url, agent = ps.url, host.agentUrl
    rsp: CapacityRsp = ctx.agents.send(agent, InitPrimaryStorageCmd(psUuid=ps_uuid, hostUuid=host_uuid, url=url),
                                       CapacityRsp)
    with ctx.db.tx() as s:
        ref = s.scalars(select(LocalStorageHostRef).where(LocalStorageHostRef.primaryStorageUuid == ps_uuid,
                                                          LocalStorageHostRef.hostUuid == host_uuid)
                        .with_for_update()).first()
        if ref is None:
            ref = LocalStorageHostRef(primaryStorageUuid=ps_uuid, hostUuid=host_uuid)
            s.add(ref)
        ref.totalCapacity = ref.totalPhysicalCapacity = rsp.totalCapacity
        ref.availableCapacity = ref.availablePhysicalCapacity = rsp.availableCapacity
    resum(ctx, ps_uuid)


def _host_connected(ctx: ApiContext, host_uuid: str) -> None:
    with ctx.db.ro() as s:
        host = s.get(Host, host_uuid)
        storages = _local_storages_of_cluster(s, host.clusterUuid) if host is not None else []
    for ps_uuid, _ in storages:
        init_on_host(ctx, ps_uuid, host_uuid)


def _host_deleted(ctx: ApiContext, host: extensions.DeletedHost) -> None:
    with ctx.db.tx() as s:
        s.execute(delete(LocalStorageHostRef).where(LocalStorageHostRef.hostUuid == host.uuid))
        storages = _local_storages_of_cluster(s, host.cluster_uuid)
    for ps_uuid, _ in storages:
        resum(ctx, ps_uuid)


def _attached(ctx: ApiContext, ps_uuid: str, cluster_uuid: str) -> None:
    """Every connected host of the cluster initialises the storage; one that fails is logged and
    joins when it reconnects."""
    with ctx.db.ro() as s:
        if get_or_404(s, PrimaryStorage, ps_uuid).type != LOCAL:
            return
        hosts = list(s.scalars(select(Host.uuid).where(Host.clusterUuid == cluster_uuid,
                                                       Host.status == CONNECTED).order_by(Host.uuid)))
    for h in hosts:
        try:
            init_on_host(ctx, ps_uuid, h)
        except ApiError as exc:
            log.warning("host %s could not initialise local storage %s: %s", h, ps_uuid, exc.details)


def _detached(ctx: ApiContext, ps_uuid: str, cluster_uuid: str) -> None:
    with ctx.db.tx() as s:
        if get_or_404(s, PrimaryStorage, ps_uuid).type != LOCAL:
            return
        s.execute(delete(LocalStorageHostRef).where(
            LocalStorageHostRef.primaryStorageUuid == ps_uuid,
            LocalStorageHostRef.hostUuid.in_(select(Host.uuid).where(Host.clusterUuid == cluster_uuid))))
    resum(ctx, ps_uuid)


extensions.HOST_CONNECTED.register(_host_connected)
extensions.HOST_DELETED.register(_host_deleted)
extensions.PRIMARY_STORAGE_ATTACHED.register(_attached)
extensions.PRIMARY_STORAGE_DETACHED.register(_detached)


# ---- API ----------------------------------------------------------------------------------------

def _check_capacity(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        ps = get_or_404(s, PrimaryStorage, msg.primaryStorageUuid)
        if ps.type != LOCAL:
            raise invalid(f"primary storage[uuid:{ps.uuid}] is of type {ps.type}, not {LOCAL}")
        if msg.get("hostUuid"):
            get_or_404(s, Host, msg.hostUuid)


@apis.handler("GetLocalStorageHostDiskCapacity", check=_check_capacity)
def get_local_storage_host_disk_capacity(ctx: ApiContext, msg: Msg) -> dict:
    """Each host's capacity on the storage (one host's with hostUuid), as its refs hold it."""
    q = select(LocalStorageHostRef).where(LocalStorageHostRef.primaryStorageUuid == msg.primaryStorageUuid)
    if msg.get("hostUuid"):
        q = q.where(LocalStorageHostRef.hostUuid == msg.hostUuid)
    with ctx.db.ro() as s:
        refs = s.scalars(q.order_by(LocalStorageHostRef.hostUuid)).all()
        return {"inventories": [{"hostUuid": r.hostUuid, "totalCapacity": r.totalCapacity,
                                 "availableCapacity": r.availableCapacity,
                                 "totalPhysicalCapacity": r.totalPhysicalCapacity,
                                 "availablePhysicalCapacity": r.availablePhysicalCapacity} for r in refs]}
