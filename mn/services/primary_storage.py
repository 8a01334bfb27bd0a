"""Primary storage: UpdatePrimaryStorage, ChangePrimaryStorageState,
ReconnectPrimaryStorage, SyncPrimaryStorageCapacity, Attach/DetachPrimaryStorageToCluster,
DeletePrimaryStorage, GetPrimaryStorageCapacity and the type/strategy listings (QueryPrimaryStorage
is derived).

Invariants:
- `status` is connectivity (Connecting -> Connected | Disconnected), `state` the admin state.
  Adding (each type's plugin: AddLocalPrimaryStorage, AddSimulatorPrimaryStorage) is a flow that
  ends with the steps here (INIT_STEPS: init over the agent protocol, Connected); a failed add
  leaves no row (DELETE_ROW) and nothing on the agent.
- Capacity: total/available are logical (what the allocator reserves from); the physical pair is
  what the agent reports. A reconnect keeps what volumes have reserved: available = new total -
  (old total - old available), in one UPDATE.
- A storage and a cluster it is attached to are in the same zone; an attachment exists at most once.
- No database transaction is held across an HTTP call to an agent.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kvmagent.protocol import CapacityRsp, InitPrimaryStorageCmd, PrimaryStorageCapacityCmd
from mn import extensions
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade, dependent
from mn.connection import CONNECTED, CONNECTING, DISCONNECTED
from mn.context import ApiContext
from mn.errors import (
    AGENT_ERROR,
    CHANGE_RESOURCE_STATE_ERROR,
    DELETE_RESOURCE_ERROR,
    ApiError,
    invalid,
    operr,
)
from mn.flow import Step
from mn.models import ApiJob, Cluster, PrimaryStorage, PrimaryStorageClusterRef, VmInstance, Volume, Zone
from mn.recovery import reconciler
from mn.resource_types import PRIMARY_STORAGES
from mn.services.common import (
    apply_update,
    cas,
    change_state,
    check_exists,
    forget_resource,
    get_or_404,
    inventory,
)

log = logging.getLogger(__name__)

ALLOCATOR_STRATEGIES = ["DefaultPrimaryStorageAllocationStrategy"]
DELETE_MODES = ("Permissive", "Enforcing")


def sync_key(uuid: str | None) -> str:
    return f"primary-storage-{uuid}"


def check_delete_mode(msg: Msg) -> None:
    mode = msg.get("deleteMode") or "Permissive"
    if mode not in DELETE_MODES:
        raise invalid(f"deleteMode must be one of {list(DELETE_MODES)}, got {mode!r}")


# ---- add ----------------------------------------------------------------------------------------

def delete_row(ctx: ApiContext, d: dict) -> None:
    """Rollback of an add's insert: the row, its attachments and tags."""
    with ctx.db.tx() as s:
        _drop_row(s, d["uuid"])


def _drop_row(s: Session, uuid: str) -> None:
    s.execute(delete(PrimaryStorageClusterRef).where(PrimaryStorageClusterRef.primaryStorageUuid == uuid))
    forget_resource(s, uuid)
    s.execute(delete(PrimaryStorage).where(PrimaryStorage.uuid == uuid))


def init_step(ctx: ApiContext, d: dict) -> None:
    """Add: ask the agent (d['agentUrl']) to init the storage at d['msg']['url']; keep its capacity."""
    rsp: CapacityRsp = ctx.agents.send(d["agentUrl"], InitPrimaryStorageCmd(psUuid=d["uuid"], url=d["msg"]["url"]),
                                       CapacityRsp)
    if rsp.totalCapacity < 0 or rsp.availableCapacity < 0 or rsp.availableCapacity > rsp.totalCapacity:
        raise ApiError(AGENT_ERROR, f"the agent of primary storage[uuid:{d['uuid']}] reported an impossible "
                                    f"capacity: total {rsp.totalCapacity}, available {rsp.availableCapacity}")
    d["total"], d["available"] = rsp.totalCapacity, rsp.availableCapacity


def connected_step(ctx: ApiContext, d: dict) -> None:
    """Add: Connected, with the capacity init_step read."""
    with ctx.db.tx() as s:
        if not cas(s, PrimaryStorage, d["uuid"], [CONNECTING], CONNECTED, field="status",
                   totalCapacity=d["total"], availableCapacity=d["available"],
                   totalPhysicalCapacity=d["total"], availablePhysicalCapacity=d["available"]):
            raise operr(f"primary storage[uuid:{d['uuid']}] was deleted or changed while it was connecting")


INIT_STEPS = (Step("init", init_step), Step("connected", connected_step))
"""The last steps of every primary-storage add flow."""


# ---- update, state, reconnect ---------------------------------------------------------------------

def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, PrimaryStorage, msg.uuid)


@apis.handler("UpdatePrimaryStorage", check=_check, sync_key=key_of("uuid", "primary-storage"))
def update_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    return apply_update(ctx, PrimaryStorage, msg, ("name", "description", "url"))


@apis.handler("ChangePrimaryStorageState", check=_check, sync_key=key_of("uuid", "primary-storage"))
def change_primary_storage_state(ctx: ApiContext, msg: Msg) -> dict:
    return change_state(ctx, PrimaryStorage, msg)


def resync_capacity(ctx: ApiContext, uuid: str, total: int, available: int) -> None:
    """Adopt the agent's capacity, keeping what volumes reserved from the logical capacity.

    The reservation is read under a row lock and written as constants: MySQL evaluates SET
    clauses left to right, so an expression over columns set earlier would see their new values.
    """
    with ctx.db.tx() as s:
        ps = s.get(PrimaryStorage, uuid, with_for_update=True)
        if ps is None:
            return
        used = ps.totalCapacity - ps.availableCapacity
        s.execute(update(PrimaryStorage).where(PrimaryStorage.uuid == uuid).values(
            availableCapacity=max(total - used, 0), totalCapacity=total,
            totalPhysicalCapacity=total, availablePhysicalCapacity=available,
        ).execution_options(synchronize_session=False))


def reconnect(ctx: ApiContext, uuid: str) -> None:
    """Claim the storage (status CAS to Connecting), init it, then Connected or Disconnected."""
    with ctx.db.tx() as s:
        ps = get_or_404(s, PrimaryStorage, uuid)
        url, agent = ps.url, ps.agentUrl
        if not cas(s, PrimaryStorage, uuid, [CONNECTED, DISCONNECTED], CONNECTING, field="status"):
            raise ApiError(CHANGE_RESOURCE_STATE_ERROR,
                           f"primary storage[uuid:{uuid}] is being connected now (status {ps.status}); "
                           "retry when that ends")
    try:
        if not agent:
            raise operr(f"primary storage[uuid:{uuid}] has no agent URL to connect to")
        rsp: CapacityRsp = ctx.agents.send(agent, InitPrimaryStorageCmd(psUuid=uuid, url=url), CapacityRsp)
    except Exception:
        with ctx.db.tx() as s:
            cas(s, PrimaryStorage, uuid, [CONNECTING], DISCONNECTED, field="status")
        raise
    resync_capacity(ctx, uuid, rsp.totalCapacity, rsp.availableCapacity)
    with ctx.db.tx() as s:
        cas(s, PrimaryStorage, uuid, [CONNECTING], CONNECTED, field="status")


@apis.handler("ReconnectPrimaryStorage", check=_check, sync_key=key_of("uuid", "primary-storage"))
def reconnect_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    reconnect(ctx, msg.uuid)
    return {"inventory": inventory(ctx, PrimaryStorage, msg.uuid)}


def _check_sync(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, PrimaryStorage, msg.primaryStorageUuid)


@apis.handler("SyncPrimaryStorageCapacity", check=_check_sync,
              sync_key=key_of("primaryStorageUuid", "primary-storage"))
def sync_primary_storage_capacity(ctx: ApiContext, msg: Msg) -> dict:
    uuid = msg.primaryStorageUuid
    with ctx.db.ro() as s:
        ps = get_or_404(s, PrimaryStorage, uuid)
        agent, url = ps.agentUrl, ps.url
    if not agent:
        raise operr(f"primary storage[uuid:{uuid}] has no agent URL to ask for its capacity")
    rsp: CapacityRsp = ctx.agents.send(agent, PrimaryStorageCapacityCmd(psUuid=uuid, url=url), CapacityRsp)
    resync_capacity(ctx, uuid, rsp.totalCapacity, rsp.availableCapacity)
    return {"inventory": inventory(ctx, PrimaryStorage, uuid)}


# ---- cluster attachment -------------------------------------------------------------------------

def _check_attachment(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, Cluster, msg.clusterUuid)
        get_or_404(s, PrimaryStorage, msg.primaryStorageUuid)


def _ref(s: Session, ps_uuid: str, cluster_uuid: str) -> PrimaryStorageClusterRef | None:
    return s.scalars(select(PrimaryStorageClusterRef).where(
        PrimaryStorageClusterRef.primaryStorageUuid == ps_uuid,
        PrimaryStorageClusterRef.clusterUuid == cluster_uuid)).first()


@apis.handler("AttachPrimaryStorageToCluster", check=_check_attachment,
              sync_key=key_of("primaryStorageUuid", "primary-storage"))
def attach_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    ps_uuid, cluster_uuid = msg.primaryStorageUuid, msg.clusterUuid
    try:
        with ctx.db.tx() as s:
            ps = get_or_404(s, PrimaryStorage, ps_uuid)
            cluster = get_or_404(s, Cluster, cluster_uuid)
            if cluster.zoneUuid != ps.zoneUuid:
                raise invalid(f"primary storage[uuid:{ps_uuid}] is in zone[uuid:{ps.zoneUuid}] but cluster"
                              f"[uuid:{cluster_uuid}] is in zone[uuid:{cluster.zoneUuid}]; they must be in "
                              "the same zone")
            if _ref(s, ps_uuid, cluster_uuid) is not None:
                raise invalid(f"primary storage[uuid:{ps_uuid}] is already attached to cluster[uuid:{cluster_uuid}]")
            s.add(PrimaryStorageClusterRef(primaryStorageUuid=ps_uuid, clusterUuid=cluster_uuid))
    except IntegrityError:
        raise invalid(f"primary storage[uuid:{ps_uuid}] is already attached to cluster[uuid:{cluster_uuid}]") \
            from None
    extensions.PRIMARY_STORAGE_ATTACHED.run(ctx, ps_uuid, cluster_uuid)
    return {"inventory": inventory(ctx, PrimaryStorage, ps_uuid)}


def _busy_vms(s: Session, ps_uuid: str, cluster_uuid: str) -> list[str]:
    """VMs of the cluster, not Stopped or Destroyed, with a volume on the storage."""
    q = (select(VmInstance.uuid).distinct()
         .join(Volume, Volume.vmInstanceUuid == VmInstance.uuid)
         .where(Volume.primaryStorageUuid == ps_uuid, VmInstance.clusterUuid == cluster_uuid,
                VmInstance.state.not_in(["Stopped", "Destroyed"]))
         .order_by(VmInstance.uuid))
    return list(s.scalars(q))


def detach(ctx: ApiContext, ps_uuid: str, cluster_uuid: str, force: bool = False) -> None:
    """Remove the attachment; unless `force`, refuse while VMs of the cluster use the storage."""
    with ctx.db.tx() as s:
        ref = _ref(s, ps_uuid, cluster_uuid)
        if ref is None:
            if force:
                return
            raise invalid(f"primary storage[uuid:{ps_uuid}] is not attached to cluster[uuid:{cluster_uuid}]")
        if not force:
            vms = _busy_vms(s, ps_uuid, cluster_uuid)
            if vms:
                raise operr(f"cannot detach primary storage[uuid:{ps_uuid}] from cluster[uuid:{cluster_uuid}]: "
                            f"VMs {vms[:5]} of the cluster use volumes on it and are not stopped")
        s.delete(ref)


@apis.handler("DetachPrimaryStorageFromCluster", check=_check_attachment,
              sync_key=key_of("primaryStorageUuid", "primary-storage"))
def detach_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    detach(ctx, msg.primaryStorageUuid, msg.clusterUuid)
    extensions.PRIMARY_STORAGE_DETACHED.run(ctx, msg.primaryStorageUuid, msg.clusterUuid)
    return {"inventory": inventory(ctx, PrimaryStorage, msg.primaryStorageUuid)}


# ---- delete -------------------------------------------------------------------------------------

def _attached_clusters(s: Session, ps_uuid: str) -> list[str]:
    return list(s.scalars(select(PrimaryStorageClusterRef.clusterUuid)
                          .where(PrimaryStorageClusterRef.primaryStorageUuid == ps_uuid)
                          .order_by(PrimaryStorageClusterRef.clusterUuid)))


def delete_primary_storage(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Enforcing refuses while attached or with dependents; Permissive detaches and cascades first."""
    with ctx.db.ro() as s:
        ps = s.get(PrimaryStorage, uuid)
        if ps is None:
            return
        ps_type, agent_url, clusters = ps.type, ps.agentUrl, _attached_clusters(s, uuid)
    if mode == "Enforcing" and clusters:
        raise ApiError(DELETE_RESOURCE_ERROR,
                       f"cannot delete PrimaryStorageVO[uuid:{uuid}] with deleteMode Enforcing: it is still "
                       f"attached to ClusterVO{clusters[:5]}; detach it first")
    cascade(ctx, PrimaryStorage, uuid, mode)
    with ctx.db.tx() as s:
        _drop_row(s, uuid)
    extensions.PRIMARY_STORAGE_DELETED.run(ctx, extensions.DeletedStorage(uuid, ps_type, agent_url))


def _check_delete(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    _check(ctx, msg)


@apis.handler("DeletePrimaryStorage", check=_check_delete, sync_key=key_of("uuid", "primary-storage"))
def api_delete_primary_storage(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, PrimaryStorage, msg.uuid)
    delete_primary_storage(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- capacity and listings ----------------------------------------------------------------------

@apis.handler("GetPrimaryStorageCapacity")
def get_primary_storage_capacity(ctx: ApiContext, msg: Msg) -> dict:
    """Sums over the storages matching every given filter (zones, clusters, uuids), or all of them."""
    zones, clusters, uuids = msg.get("zoneUuids"), msg.get("clusterUuids"), msg.get("primaryStorageUuids")
    if not msg.get("all") and not (zones or clusters or uuids):
        raise invalid("GetPrimaryStorageCapacity needs zoneUuids, clusterUuids or primaryStorageUuids, "
                      "or all=true")
    P = PrimaryStorage
    q = select(func.coalesce(func.sum(P.totalCapacity), 0), func.coalesce(func.sum(P.availableCapacity), 0),
               func.coalesce(func.sum(P.totalPhysicalCapacity), 0),
               func.coalesce(func.sum(P.availablePhysicalCapacity), 0))
    if not msg.get("all"):
        if zones:
            q = q.where(P.zoneUuid.in_(zones))
        if clusters:
            q = q.where(P.uuid.in_(select(PrimaryStorageClusterRef.primaryStorageUuid)
                                   .where(PrimaryStorageClusterRef.clusterUuid.in_(clusters))))
        if uuids:
            q = q.where(P.uuid.in_(uuids))
    with ctx.db.ro() as s:
        total, avail, ptotal, pavail = s.execute(q).one()
    return {"totalCapacity": int(total), "availableCapacity": int(avail),
            "totalPhysicalCapacity": int(ptotal), "availablePhysicalCapacity": int(pavail)}


@apis.handler("GetPrimaryStorageTypes")
def get_primary_storage_types(ctx: ApiContext, msg: Msg) -> dict:
    return {"primaryStorageTypes": PRIMARY_STORAGES.names()}


@apis.handler("GetPrimaryStorageAllocatorStrategies")
def get_primary_storage_allocator_strategies(ctx: ApiContext, msg: Msg) -> dict:
    return {"primaryStorageAllocatorStrategies": list(ALLOCATOR_STRATEGIES)}


# ---- cascades and recovery ----------------------------------------------------------------------

def _storages_of_zone(s: Session, zone_uuid: str) -> list[str]:
    return list(s.scalars(select(PrimaryStorage.uuid).where(PrimaryStorage.zoneUuid == zone_uuid)
                          .order_by(PrimaryStorage.uuid)))


def _attachments_of_cluster(s: Session, cluster_uuid: str) -> list[str]:
    """Attachment ids `<primaryStorageUuid>:<clusterUuid>` (a deleter needs both)."""
    return [f"{p}:{cluster_uuid}" for p in s.scalars(
        select(PrimaryStorageClusterRef.primaryStorageUuid)
        .where(PrimaryStorageClusterRef.clusterUuid == cluster_uuid)
        .order_by(PrimaryStorageClusterRef.primaryStorageUuid))]


def _detach_attachment(ctx: ApiContext, ref_id: str, mode: str) -> None:
    ps_uuid, _, cluster_uuid = ref_id.partition(":")
    detach(ctx, ps_uuid, cluster_uuid, force=True)


dependent(Zone, "PrimaryStorageVO", _storages_of_zone, delete_primary_storage)
dependent(Cluster, "PrimaryStorageClusterRefVO(primaryStorage:cluster)", _attachments_of_cluster,
          _detach_attachment)


@reconciler("primary-storage")
def reconcile_primary_storages(svc: Any) -> None:
    """At MN start: storages left Connecting, with no running job on them, become Disconnected."""
    with svc.db.tx() as s:
        busy = set(s.scalars(select(ApiJob.syncKey).where(ApiJob.state == "Processing",
                                                          ApiJob.syncKey.is_not(None))))
        for uuid in s.scalars(select(PrimaryStorage.uuid).where(PrimaryStorage.status == CONNECTING)).all():
            if sync_key(uuid) not in busy and cas(s, PrimaryStorage, uuid, [CONNECTING], DISCONNECTED,
                                                  field="status"):
                log.warning("primary storage %s was left Connecting by a stopped management node; "
                            "now Disconnected", uuid)
