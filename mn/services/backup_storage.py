"""Backup storage: UpdateBackupStorage, ChangeBackupStorageState,
ReconnectBackupStorage, Attach/DetachBackupStorageToZone, DeleteBackupStorage,
GetBackupStorageCapacity and GetBackupStorageTypes (QueryBackupStorage is derived).

Invariants:
- `status` is connectivity (Connecting -> Connected | Disconnected), `state` the admin state.
  Adding (each type's plugin: AddSftpBackupStorage, AddSimulatorBackupStorage) is a flow that ends
  with the steps here (CONNECT_STEPS: connect over the agent protocol, Connected); a failed add
  leaves no row (delete_row).
- The agent is the truth for capacity: connect and reconnect adopt what it reports.
- An attachment to a zone exists at most once.
- Deleting a backup storage removes its image refs; an image left with no ref is deleted.
- No database transaction is held across an HTTP call to an agent.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kvmagent.protocol import CapacityRsp, ConnectBackupStorageCmd
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
from mn.models import ApiJob, BackupStorage, BackupStorageZoneRef, Image, ImageBackupStorageRef, Zone
from mn.recovery import reconciler
from mn.resource_types import BACKUP_STORAGES
from mn.services.common import (
    apply_update,
    cas,
    change_state,
    check_exists,
    forget_resource,
    get_or_404,
    inventory,
)
from mn.services.primary_storage import check_delete_mode

log = logging.getLogger(__name__)



def sync_key(uuid: str | None) -> str:
    return f"backup-storage-{uuid}"


# ---- add ----------------------------------------------------------------------------------------

def _drop_row(s: Session, uuid: str) -> None:
    s.execute(delete(BackupStorageZoneRef).where(BackupStorageZoneRef.backupStorageUuid == uuid))
    forget_resource(s, uuid)
    s.execute(delete(BackupStorage).where(BackupStorage.uuid == uuid))


def delete_row(ctx: ApiContext, d: dict) -> None:
    """Rollback of an add's insert: the row, its zone attachments and tags."""
    with ctx.db.tx() as s:
        _drop_row(s, d["uuid"])


def _connect_agent(ctx: ApiContext, uuid: str, agent_url: str | None, url: str) -> CapacityRsp:
    if not agent_url:
        raise operr(f"backup storage[uuid:{uuid}] has no agent URL to connect to")
    rsp: CapacityRsp = ctx.agents.send(agent_url, ConnectBackupStorageCmd(bsUuid=uuid, url=url), CapacityRsp)
    if rsp.totalCapacity < 0 or rsp.availableCapacity < 0 or rsp.availableCapacity > rsp.totalCapacity:
        raise ApiError(AGENT_ERROR, f"the agent of backup storage[uuid:{uuid}] reported an impossible "
                                    f"capacity: total {rsp.totalCapacity}, available {rsp.availableCapacity}")
    return rsp


def connect_step(ctx: ApiContext, d: dict) -> None:
    """Add: connect the agent (d['agentUrl']) to the storage at d['msg']['url']; keep its capacity."""
    rsp = _connect_agent(ctx, d["uuid"], d["agentUrl"], d["msg"]["url"])
    d["total"], d["available"] = rsp.totalCapacity, rsp.availableCapacity


def connected_step(ctx: ApiContext, d: dict) -> None:
    """Add: Connected, with the capacity connect_step read."""
    with ctx.db.tx() as s:
        if not cas(s, BackupStorage, d["uuid"], [CONNECTING], CONNECTED, field="status",
                   totalCapacity=d["total"], availableCapacity=d["available"]):
            raise operr(f"backup storage[uuid:{d['uuid']}] was deleted or changed while it was connecting")


CONNECT_STEPS = (Step("connect", connect_step), Step("connected", connected_step))
"""The last steps of every backup-storage add flow."""


# ---- update, state, reconnect ---------------------------------------------------------------------

def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, BackupStorage, msg.uuid)


@apis.handler("UpdateBackupStorage", check=_check, sync_key=key_of("uuid", "backup-storage"))
def update_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    return apply_update(ctx, BackupStorage, msg, ("name", "description"))


@apis.handler("ChangeBackupStorageState", check=_check, sync_key=key_of("uuid", "backup-storage"))
def change_backup_storage_state(ctx: ApiContext, msg: Msg) -> dict:
    return change_state(ctx, BackupStorage, msg)


def reconnect(ctx: ApiContext, uuid: str) -> None:
    """Claim the storage (status CAS to Connecting), connect it, then Connected or Disconnected."""
    with ctx.db.tx() as s:
        bs = get_or_404(s, BackupStorage, uuid)
        url, agent = bs.url, bs.agentUrl
        if not cas(s, BackupStorage, uuid, [CONNECTED, DISCONNECTED], CONNECTING, field="status"):
            raise ApiError(CHANGE_RESOURCE_STATE_ERROR,
                           f"backup storage[uuid:{uuid}] is being connected now (status {bs.status}); "
                           "retry when that ends")
    try:
        rsp = _connect_agent(ctx, uuid, agent, url)
    except Exception:
        with ctx.db.tx() as s:
            cas(s, BackupStorage, uuid, [CONNECTING], DISCONNECTED, field="status")
        raise
    with ctx.db.tx() as s:
        cas(s, BackupStorage, uuid, [CONNECTING], CONNECTED, field="status",
            totalCapacity=rsp.totalCapacity, availableCapacity=rsp.availableCapacity)


@apis.handler("ReconnectBackupStorage", check=_check, sync_key=key_of("uuid", "backup-storage"))
def reconnect_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    reconnect(ctx, msg.uuid)
    return {"inventory": inventory(ctx, BackupStorage, msg.uuid)}


# ---- zone attachment ----------------------------------------------------------------------------

def _check_attachment(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        get_or_404(s, BackupStorage, msg.backupStorageUuid)


def _ref(s: Session, bs_uuid: str, zone_uuid: str) -> BackupStorageZoneRef | None:
    return s.scalars(select(BackupStorageZoneRef).where(BackupStorageZoneRef.backupStorageUuid == bs_uuid,
                                                        BackupStorageZoneRef.zoneUuid == zone_uuid)).first()


@apis.handler("AttachBackupStorageToZone", check=_check_attachment,
              sync_key=key_of("backupStorageUuid", "backup-storage"))
def attach_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    bs_uuid, zone_uuid = msg.backupStorageUuid, msg.zoneUuid
    dup = invalid(f"backup storage[uuid:{bs_uuid}] is already attached to zone[uuid:{zone_uuid}]")
    try:
        with ctx.db.tx() as s:
            get_or_404(s, BackupStorage, bs_uuid)
            get_or_404(s, Zone, zone_uuid)
            if _ref(s, bs_uuid, zone_uuid) is not None:
                raise dup
            s.add(BackupStorageZoneRef(backupStorageUuid=bs_uuid, zoneUuid=zone_uuid))
    except IntegrityError:
        raise dup from None
    return {"inventory": inventory(ctx, BackupStorage, bs_uuid)}


def detach(ctx: ApiContext, bs_uuid: str, zone_uuid: str, missing_ok: bool = False) -> None:
    with ctx.db.tx() as s:
        ref = _ref(s, bs_uuid, zone_uuid)
        if ref is None:
            if missing_ok:
                return
            raise invalid(f"backup storage[uuid:{bs_uuid}] is not attached to zone[uuid:{zone_uuid}]")
        s.delete(ref)


@apis.handler("DetachBackupStorageFromZone", check=_check_attachment,
              sync_key=key_of("backupStorageUuid", "backup-storage"))
def detach_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    detach(ctx, msg.backupStorageUuid, msg.zoneUuid)
    return {"inventory": inventory(ctx, BackupStorage, msg.backupStorageUuid)}


# ---- delete -------------------------------------------------------------------------------------

def _live_images(s: Session, bs_uuid: str) -> list[str]:
    """Images with a ref on the storage that is not in the recycle bin (status Deleted)."""
    return list(s.scalars(select(ImageBackupStorageRef.imageUuid)
                          .where(ImageBackupStorageRef.backupStorageUuid == bs_uuid,
                                 ImageBackupStorageRef.status != "Deleted")
                          .order_by(ImageBackupStorageRef.imageUuid)))


def _drop_image_refs(s: Session, bs_uuid: str) -> None:
    """Remove the storage's image refs and every image they leave with no ref at all."""
    images = list(s.scalars(select(ImageBackupStorageRef.imageUuid)
                            .where(ImageBackupStorageRef.backupStorageUuid == bs_uuid)))
    s.execute(delete(ImageBackupStorageRef).where(ImageBackupStorageRef.backupStorageUuid == bs_uuid))
    for img in images:
        left = s.scalar(select(func.count()).select_from(ImageBackupStorageRef)
                        .where(ImageBackupStorageRef.imageUuid == img))
        if not left:
            forget_resource(s, img)
            s.execute(delete(Image).where(Image.uuid == img))


def delete_backup_storage(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Enforcing refuses while the storage holds images or is attached to zones; Permissive removes
    its image refs (and images left with none) and its attachments, then the storage."""
    with ctx.db.ro() as s:
        bs = s.get(BackupStorage, uuid)
        if bs is None:
            return
        bs_type, agent_url = bs.type, bs.agentUrl
        images = _live_images(s, uuid)
        zones = list(s.scalars(select(BackupStorageZoneRef.zoneUuid)
                               .where(BackupStorageZoneRef.backupStorageUuid == uuid)))
    if mode == "Enforcing" and (images or zones):
        what = "; ".join(x for x in (f"ImageVO{images[:5]}" if images else "",
                                     f"attachments to ZoneVO{zones[:5]}" if zones else "") if x)
        raise ApiError(DELETE_RESOURCE_ERROR,
                       f"cannot delete BackupStorageVO[uuid:{uuid}] with deleteMode Enforcing: it still has {what}")
    cascade(ctx, BackupStorage, uuid, mode)
    with ctx.db.tx() as s:
        _drop_image_refs(s, uuid)
        _drop_row(s, uuid)
    extensions.BACKUP_STORAGE_DELETED.run(ctx, extensions.DeletedStorage(uuid, bs_type, agent_url))


def _check_delete(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    _check(ctx, msg)


@apis.handler("DeleteBackupStorage", check=_check_delete, sync_key=key_of("uuid", "backup-storage"))
def api_delete_backup_storage(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, BackupStorage, msg.uuid)
    delete_backup_storage(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- capacity and listings ----------------------------------------------------------------------

@apis.handler("GetBackupStorageCapacity")
def get_backup_storage_capacity(ctx: ApiContext, msg: Msg) -> dict:
    """Sums over the storages matching every given filter (zones, uuids), or all of them."""
    zones, uuids = msg.get("zoneUuids"), msg.get("backupStorageUuids")
    if not msg.get("all") and not (zones or uuids):
        raise invalid("GetBackupStorageCapacity needs zoneUuids or backupStorageUuids, or all=true")
    B = BackupStorage
    q = select(func.coalesce(func.sum(B.totalCapacity), 0), func.coalesce(func.sum(B.availableCapacity), 0))
    if not msg.get("all"):
        if zones:
            q = q.where(B.uuid.in_(select(BackupStorageZoneRef.backupStorageUuid)
                                   .where(BackupStorageZoneRef.zoneUuid.in_(zones))))
        if uuids:
            q = q.where(B.uuid.in_(uuids))
    with ctx.db.ro() as s:
        total, avail = s.execute(q).one()
    return {"totalCapacity": int(total), "availableCapacity": int(avail)}


@apis.handler("GetBackupStorageTypes")
def get_backup_storage_types(ctx: ApiContext, msg: Msg) -> dict:
    return {"backupStorageTypes": BACKUP_STORAGES.names()}


# ---- cascades and recovery ----------------------------------------------------------------------

def _attachments_of_zone(s: Session, zone_uuid: str) -> list[str]:
    """Attachment ids `<backupStorageUuid>:<zoneUuid>` (a deleter needs both)."""
    return [f"{b}:{zone_uuid}" for b in s.scalars(
        select(BackupStorageZoneRef.backupStorageUuid).where(BackupStorageZoneRef.zoneUuid == zone_uuid)
        .order_by(BackupStorageZoneRef.backupStorageUuid))]


def _detach_attachment(ctx: ApiContext, ref_id: str, mode: str) -> None:
    bs_uuid, _, zone_uuid = ref_id.partition(":")
    detach(ctx, bs_uuid, zone_uuid, missing_ok=True)


dependent(Zone, "BackupStorageZoneRefVO(backupStorage:zone)", _attachments_of_zone, _detach_attachment)


@reconciler("backup-storage")
def reconcile_backup_storages(svc: Any) -> None:
    """At MN start: storages left Connecting, with no running job on them, become Disconnected."""
    with svc.db.tx() as s:
        busy = set(s.scalars(select(ApiJob.syncKey).where(ApiJob.state == "Processing",
                                                          ApiJob.syncKey.is_not(None))))
        for uuid in s.scalars(select(BackupStorage.uuid).where(BackupStorage.status == CONNECTING)).all():
            if sync_key(uuid) not in busy and cas(s, BackupStorage, uuid, [CONNECTING], DISCONNECTED,
                                                  field="status"):
                log.warning("backup storage %s was left Connecting by a stopped management node; "
                            "now Disconnected", uuid)
