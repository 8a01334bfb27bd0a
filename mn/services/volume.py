"""Data volumes: CreateDataVolume, Attach/DetachDataVolumeToVm, DeleteDataVolume,
ExpungeDataVolume, RecoverDataVolume, UpdateVolume, ChangeVolumeState, GetDataVolumeAttachableVm.

Volume status: NotInstantiated (a record only) → Creating → Ready; Deleted (recoverable, still on
storage) → expunged (gone). A volume's capacity on primary storage is held from the moment it is
placed there until it is expunged; recompute_ps_capacity restores that invariant after a crash.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import delete, func, select, update

from kvmagent.protocol import AttachDataVolumeCmd, DetachDataVolumeCmd
from mn import cascade, ownership, quota
from mn.allocator import primary_storage as ps_alloc
from mn.api.registry import Msg, apis, key_of
from mn.context import ApiContext, Services
from mn.db.base import utcnow
from mn.errors import ApiError, invalid
from mn.globalconfig import PS_OVER_PROVISIONING, VOLUME_DELETION_POLICY
from mn.inventory import to_inventories
from mn.models import DiskOffering, PrimaryStorage, PrimaryStorageClusterRef, VmInstance, Volume
from mn.recovery import reconciler
from mn.services.common import (
    add_tags,
    apply_update,
    change_state,
    check_exists,
    forget_resource,
    get_or_404,
    inventory,
    new_resource_uuid,
)
from mn.services.vm_common import CREATED, PAUSED, RUNNING, STOPPED, host_url, volume_to
from mn.services.vm_ops import delete_volume_on_storage, instantiate_volume, uninstantiate_volumes

VOL_KEY = key_of("uuid", "volume")
ATTACHABLE_VM_STATES = (RUNNING, STOPPED, PAUSED, CREATED)


def _inv(ctx: ApiContext, uuid: str) -> dict:
    return {"inventory": inventory(ctx, Volume, uuid)}


def _data_volume(s: Any, uuid: str) -> Volume:
    vol = get_or_404(s, Volume, uuid)
    if vol.type != "Data":
        raise invalid(f"VolumeVO[uuid:{uuid}] is a {vol.type} volume; this API takes data volumes")
    return vol


def _check_create(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        if msg.get("diskOfferingUuid"):
            get_or_404(s, DiskOffering, msg.diskOfferingUuid)
        elif not msg.get("diskSize"):
            raise invalid("CreateDataVolume needs diskOfferingUuid or diskSize")
        if msg.get("diskSize") is not None and msg.diskSize <= 0:
            raise invalid(f"diskSize must be positive, got {msg.diskSize}")
        if msg.get("primaryStorageUuid"):
            get_or_404(s, PrimaryStorage, msg.primaryStorageUuid)


@apis.handler("CreateDataVolume", check=_check_create)
def create_data_volume(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        size = msg.get("diskSize")
        offering = msg.get("diskOfferingUuid")
        if offering:
            off = get_or_404(s, DiskOffering, offering)
            if off.state != "Enabled":
                raise invalid(f"DiskOfferingVO[uuid:{off.uuid}] is {off.state}")
            size = size or off.diskSize
        s.add(Volume(uuid=uuid, name=msg.name, description=msg.get("description"), type="Data", size=size,
                     diskOfferingUuid=offering, format="qcow2", status="NotInstantiated"))
        add_tags(s, uuid, "VolumeVO", msg)
        quota.check(s.connection(), ctx.caller, {"volume.data.num": 1, "volume.capacity": size or 0})
        ownership.own(s, ctx.account_uuid, "VolumeVO", [uuid])
    ps_uuid = msg.get("primaryStorageUuid")
    if ps_uuid:
        d: dict[str, Any] = {}
        try:
            _instantiate_on(ctx, uuid, ps_uuid, d)
        except BaseException:
            uninstantiate_volumes(ctx, d, forgotten=True)
            with ctx.db.tx() as s:
                s.execute(delete(Volume).where(Volume.uuid == uuid))
                forget_resource(s, uuid)
            raise
    return _inv(ctx, uuid)


def _instantiate_on(ctx: ApiContext, vol_uuid: str, ps_uuid: str, d: dict[str, Any]) -> None:
    """Instantiate on a named primary storage (through any cluster it is attached to)."""
    with ctx.db.ro() as s:
        ps = get_or_404(s, PrimaryStorage, ps_uuid)
        cluster = s.scalar(select(PrimaryStorageClusterRef.clusterUuid)
                           .where(PrimaryStorageClusterRef.primaryStorageUuid == ps_uuid).limit(1))
    if cluster is None:
        raise invalid(f"PrimaryStorageVO[uuid:{ps.uuid}] is attached to no cluster")
    _instantiate_pinned(ctx, vol_uuid, ps_uuid, d)


def _instantiate_pinned(ctx: ApiContext, vol_uuid: str, ps_uuid: str, d: dict[str, Any]) -> None:
    from kvmagent.protocol import CreateEmptyVolumeCmd, VolumeRsp
    from mn.services.vm_common import ps_url

    ratio = ctx.gconf.get(PS_OVER_PROVISIONING)
    with ctx.db.tx() as s:
        vol = s.get(Volume, vol_uuid)
        if not ps_alloc.reserve(s, ps_uuid, vol.size, ratio):
            raise ApiError("PRIMARY_STORAGE_ALLOCATION.1001",
                           f"PrimaryStorageVO[uuid:{ps_uuid}] has not {vol.size} bytes free")
        s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(primaryStorageUuid=ps_uuid,
                                                                       status="Creating"))
        url = ps_url(s, ps_uuid)
    rec: dict[str, Any] = {"ps": ps_uuid, "size": vol.size, "ratio": ratio, "host": None, "url": url}
    d.setdefault("instantiated", {})[vol_uuid] = rec
    rsp = ctx.agents.send(url, CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=vol_uuid, size=vol.size),
                          VolumeRsp)
    rec["path"] = rsp.installPath
    with ctx.db.tx() as s:
        s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(
            installPath=rsp.installPath, actualSize=rsp.actualSize, status="Ready"))


def _check_attach(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, Volume, msg.volumeUuid)
    check_exists(ctx, VmInstance, msg.vmInstanceUuid)


@apis.handler("AttachDataVolumeToVm", check=_check_attach, sync_key=key_of("vmInstanceUuid", "vm"))
def attach_data_volume(ctx: ApiContext, msg: Msg) -> dict:
    vol_uuid, vm_uuid = msg.volumeUuid, msg.vmInstanceUuid
    with ctx.db.tx() as s:
        vol = _data_volume(s, vol_uuid)
        vm = get_or_404(s, VmInstance, vm_uuid)
        if vol.vmInstanceUuid:
            raise invalid(f"VolumeVO[uuid:{vol_uuid}] is already attached to VM {vol.vmInstanceUuid}")
        if vol.state != "Enabled" or vol.status not in ("Ready", "NotInstantiated"):
            raise invalid(f"VolumeVO[uuid:{vol_uuid}] is {vol.state}/{vol.status}; it must be Enabled and "
                          "Ready or NotInstantiated")
        if vm.state not in ATTACHABLE_VM_STATES:
            raise ApiError("VM.1001", f"cannot attach a volume to VmInstanceVO[uuid:{vm_uuid}] in state {vm.state}")
        if vol.primaryStorageUuid and vm.clusterUuid and not s.scalar(
                select(PrimaryStorageClusterRef.id).where(
                    PrimaryStorageClusterRef.primaryStorageUuid == vol.primaryStorageUuid,
                    PrimaryStorageClusterRef.clusterUuid == vm.clusterUuid)):
            raise invalid(f"VolumeVO[uuid:{vol_uuid}] is on PrimaryStorageVO[uuid:{vol.primaryStorageUuid}], "
                          f"which the VM's cluster {vm.clusterUuid} cannot reach")
        device = s.scalar(select(func.coalesce(func.max(Volume.deviceId) + 1, 1))
                          .where(Volume.vmInstanceUuid == vm_uuid))
        s.execute(update(Volume).where(Volume.uuid == vol_uuid, Volume.vmInstanceUuid.is_(None)).values(
            vmInstanceUuid=vm_uuid, deviceId=device, lastAttachDate=utcnow()))
        needs_instance = vol.status == "NotInstantiated"
        cluster, running = vm.clusterUuid, vm.state in (RUNNING, PAUSED)
        host_uuid = vm.hostUuid
    d: dict[str, Any] = {}
    try:
        if needs_instance:
            if cluster is None:
                raise invalid(f"VmInstanceVO[uuid:{vm_uuid}] has no cluster yet (never started); start it first "
                              "or create the volume on a primary storage")
            instantiate_volume(ctx, vol_uuid, cluster, host_uuid, d)
        if running and host_uuid:
            with ctx.db.ro() as s:
                to = volume_to(s.get(Volume, vol_uuid))
                url = host_url(s, host_uuid)
            ctx.agents.send(url, AttachDataVolumeCmd(vmUuid=vm_uuid, volume=to, hostUuid=host_uuid))
    except BaseException:
        uninstantiate_volumes(ctx, d)
        with ctx.db.tx() as s:
            s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(vmInstanceUuid=None, deviceId=None))
        raise
    return _inv(ctx, vol_uuid)


def detach_volume(ctx: ApiContext, vol_uuid: str) -> None:
    with ctx.db.ro() as s:
        vol = _data_volume(s, vol_uuid)
        if not vol.vmInstanceUuid:
            raise invalid(f"VolumeVO[uuid:{vol_uuid}] is not attached to a VM")
        vm = s.get(VmInstance, vol.vmInstanceUuid)
        url = None
        if vm is not None and vm.state in (RUNNING, PAUSED) and vm.hostUuid:
            url, to, host_uuid = host_url(s, vm.hostUuid), volume_to(vol), vm.hostUuid
        elif vm is not None and vm.state not in ATTACHABLE_VM_STATES + ("Destroyed", "Unknown"):
            raise ApiError("VM.1001", f"cannot detach a volume from VmInstanceVO[uuid:{vm.uuid}] in state "
                                      f"{vm.state}")
    if url:
        ctx.agents.send(url, DetachDataVolumeCmd(vmUuid=vm.uuid, volume=to, hostUuid=host_uuid))
    with ctx.db.tx() as s:
        s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(
            vmInstanceUuid=None, deviceId=None, lastVmInstanceUuid=vol.vmInstanceUuid, lastDetachDate=utcnow()))


def _check_detach(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        msg["_vmUuid"] = _data_volume(s, msg.uuid).vmInstanceUuid


@apis.handler("DetachDataVolumeFromVm", check=_check_detach, sync_key=lambda m: f"vm-{m.get('_vmUuid')}")
def api_detach(ctx: ApiContext, msg: Msg) -> dict:
    detach_volume(ctx, msg.uuid)
    return _inv(ctx, msg.uuid)


def expunge_volume(ctx: ApiContext, vol_uuid: str) -> None:
    with ctx.db.ro() as s:
        vol = s.get(Volume, vol_uuid)
    if vol is None:
        return
    delete_volume_on_storage(ctx, vol)
    with ctx.db.tx() as s:
        s.execute(delete(Volume).where(Volume.uuid == vol_uuid))
        forget_resource(s, vol_uuid)


def delete_volume(ctx: ApiContext, vol_uuid: str, mode: str = "Permissive") -> None:
    with ctx.db.ro() as s:
        vol = _data_volume(s, vol_uuid)
    if vol.vmInstanceUuid:
        detach_volume(ctx, vol_uuid)
    policy = ctx.gconf.get(VOLUME_DELETION_POLICY)
    if policy == "Direct" or vol.status == "NotInstantiated":
        expunge_volume(ctx, vol_uuid)
    else:
        with ctx.db.tx() as s:
            s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(status="Deleted"))


def _check_vol(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        _data_volume(s, msg.uuid)


@apis.handler("DeleteDataVolume", check=_check_vol, sync_key=VOL_KEY)
def api_delete(ctx: ApiContext, msg: Msg) -> dict:
    delete_volume(ctx, msg.uuid, msg.deleteMode)
    return {}


@apis.handler("ExpungeDataVolume", check=_check_vol, sync_key=VOL_KEY)
def api_expunge(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        vol = _data_volume(s, msg.uuid)
        if vol.status != "Deleted":
            raise invalid(f"only a Deleted volume can be expunged; VolumeVO[uuid:{vol.uuid}] is {vol.status}")
    expunge_volume(ctx, msg.uuid)
    return {}


@apis.handler("RecoverDataVolume", check=_check_vol, sync_key=VOL_KEY)
def api_recover(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        res = s.execute(update(Volume).where(Volume.uuid == msg.uuid, Volume.status == "Deleted")
                        .values(status="Ready"))
        if res.rowcount != 1:
            raise invalid(f"only a Deleted volume can be recovered; VolumeVO[uuid:{msg.uuid}] is not")
        quota.grew_owners(s.connection(), [msg.uuid])
    return _inv(ctx, msg.uuid)


@apis.handler("UpdateVolume", check=lambda ctx, m: check_exists(ctx, Volume, m.uuid), sync_key=VOL_KEY)
def api_update(ctx: ApiContext, msg: Msg) -> dict:
    return apply_update(ctx, Volume, msg, ("name", "description"))


@apis.handler("ChangeVolumeState", check=lambda ctx, m: check_exists(ctx, Volume, m.uuid), sync_key=VOL_KEY)
def api_change_state(ctx: ApiContext, msg: Msg) -> dict:
    return change_state(ctx, Volume, msg)


@apis.handler("GetDataVolumeAttachableVm", check=lambda ctx, m: check_exists(ctx, Volume, m.volumeUuid))
def api_attachable_vms(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        vol = _data_volume(s, msg.volumeUuid)
        q = select(VmInstance).where(VmInstance.state.in_(ATTACHABLE_VM_STATES), VmInstance.type == "UserVm",
                                     *(ownership.owned_by(VmInstance, ctx.caller) or []))
        if vol.vmInstanceUuid:
            return {"inventories": []}
        if vol.primaryStorageUuid:
            q = q.where(VmInstance.clusterUuid.in_(
                select(PrimaryStorageClusterRef.clusterUuid)
                .where(PrimaryStorageClusterRef.primaryStorageUuid == vol.primaryStorageUuid)))
        return {"inventories": to_inventories(s, list(s.scalars(q.limit(1000))))}


# ---- cascades and reconciliation ------------------------------------------------------------------

def _volumes_on_ps(s: Any, ps_uuid: str) -> list[str]:
    return list(s.scalars(select(Volume.uuid).where(Volume.primaryStorageUuid == ps_uuid)))


def _volume_ps_deleted(ctx: ApiContext, vol_uuid: str, mode: str) -> None:
    """Its primary storage is being deleted: a root volume takes its VM along, a data volume goes."""
    from mn.services.vm_ops import destroy_vm, expunge_vm

    with ctx.db.ro() as s:
        vol = s.get(Volume, vol_uuid)
    if vol is None:
        return
    if vol.type == "Root" and vol.vmInstanceUuid:
        with ctx.db.ro() as s:
            vm = s.get(VmInstance, vol.vmInstanceUuid)
        if vm is not None and vm.state != "Destroyed":
            destroy_vm(ctx, vm.uuid, best_effort_agent=True)
        with ctx.db.ro() as s:
            still = s.get(VmInstance, vol.vmInstanceUuid)
        if still is not None:
            expunge_vm(ctx, still.uuid)
        return
    if vol.vmInstanceUuid:
        detach_volume(ctx, vol_uuid)
    expunge_volume(ctx, vol_uuid)


cascade.dependent(PrimaryStorage, "VolumeVO", _volumes_on_ps, _volume_ps_deleted)


def recompute_ps_capacity(s: Any, ps_uuid: str, ratio: float) -> None:
    """availableCapacity = total − what the volumes placed on the storage hold."""
    ps = s.get(PrimaryStorage, ps_uuid, with_for_update=True)
    if ps is None:
        return
    sizes = s.scalars(select(Volume.size).where(Volume.primaryStorageUuid == ps_uuid,
                                                Volume.status != "NotInstantiated")).all()
    used = sum(math.ceil(x / ratio) for x in sizes)
    ps.availableCapacity = max(0, ps.totalCapacity - used)


@reconciler("primary-storage-capacity")
def reconcile_ps(svc: Services) -> None:
    ratio = svc.gconf.get(PS_OVER_PROVISIONING)
    with svc.db.ro() as s:
        all_ps = list(s.scalars(select(PrimaryStorage.uuid)))
    for ps in all_ps:
        with svc.db.tx() as s:
            recompute_ps_capacity(s, ps, ratio)
