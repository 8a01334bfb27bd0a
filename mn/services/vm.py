"""VM APIs: creation, lifecycle, offering changes and migration (handlers only; logic lives in
vm_create, vm_ops and vm_nic). Every operation on one VM runs in order on the key vm-<uuid>."""

from __future__ import annotations

import math

from sqlalchemy import select, update

from mn import quota
from mn.allocator import host as host_alloc
from mn.api.registry import Msg, apis, key_of
from mn.context import ApiContext
from mn.errors import ApiError, invalid
from mn.globalconfig import MEMORY_OVER_PROVISIONING
from mn.inventory import to_inventories
from mn.models import Host, InstanceOffering, VmInstance
from mn.services import vm_nic, vm_sync  # noqa: F401  (register their handlers and hooks)
from mn.services.common import apply_update, check_exists, get_or_404, inventory
from mn.services.vm_common import CREATED, RUNNING, STOPPED, state_error
from mn.services.vm_create import check_create, create_vm
from mn.services.vm_ops import (
    destroy_vm,
    expunge_vm,
    migrate_vm,
    migration_request,
    pause_vm,
    reboot_vm,
    recover_vm,
    resume_vm,
    start_vm,
    stop_vm,
)

VM_KEY = key_of("uuid", "vm")
VM_KEY2 = key_of("vmInstanceUuid", "vm")


def _vm_inv(ctx: ApiContext, uuid: str) -> dict:
    return {"inventory": inventory(ctx, VmInstance, uuid)}


def _check_vm(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, VmInstance, msg.get("uuid") or msg.get("vmInstanceUuid"))


@apis.handler("CreateVmInstance", check=check_create)
def api_create_vm(ctx: ApiContext, msg: Msg) -> dict:
    return _vm_inv(ctx, create_vm(ctx, msg))


@apis.handler("StartVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_start(ctx: ApiContext, msg: Msg) -> dict:
    check_exists(ctx, Host, msg.get("hostUuid"))
    start_vm(ctx, msg.uuid, msg.get("hostUuid"), msg.get("clusterUuid"))
    return _vm_inv(ctx, msg.uuid)


@apis.handler("StopVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_stop(ctx: ApiContext, msg: Msg) -> dict:
    stop_vm(ctx, msg.uuid, msg.get("type") or "grace")
    return _vm_inv(ctx, msg.uuid)


@apis.handler("RebootVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_reboot(ctx: ApiContext, msg: Msg) -> dict:
    reboot_vm(ctx, msg.uuid)
    return _vm_inv(ctx, msg.uuid)


@apis.handler("PauseVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_pause(ctx: ApiContext, msg: Msg) -> dict:
    pause_vm(ctx, msg.uuid)
    return _vm_inv(ctx, msg.uuid)


@apis.handler("ResumeVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_resume(ctx: ApiContext, msg: Msg) -> dict:
    resume_vm(ctx, msg.uuid)
    return _vm_inv(ctx, msg.uuid)


@apis.handler("DestroyVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_destroy(ctx: ApiContext, msg: Msg) -> dict:
    destroy_vm(ctx, msg.uuid)
    return {}


@apis.handler("RecoverVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_recover(ctx: ApiContext, msg: Msg) -> dict:
    recover_vm(ctx, msg.uuid)
    return _vm_inv(ctx, msg.uuid)


@apis.handler("ExpungeVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_expunge(ctx: ApiContext, msg: Msg) -> dict:
    expunge_vm(ctx, msg.uuid)
    return {}


@apis.handler("MigrateVm", check=_check_vm, sync_key=VM_KEY2)
def api_migrate(ctx: ApiContext, msg: Msg) -> dict:
    migrate_vm(ctx, msg.vmInstanceUuid, msg.get("hostUuid"))
    return _vm_inv(ctx, msg.vmInstanceUuid)


@apis.handler("GetVmMigrationCandidateHosts", check=_check_vm)
def api_migration_candidates(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        vm = get_or_404(s, VmInstance, msg.vmInstanceUuid)
        if vm.state != RUNNING:
            raise state_error(vm, "migrate")
        uuids = host_alloc.candidates(s, migration_request(ctx, s, vm), limit=1000)
        hosts = list(s.scalars(select(Host).where(Host.uuid.in_(uuids)))) if uuids else []
        return {"inventories": to_inventories(s, hosts)}


@apis.handler("UpdateVmInstance", check=_check_vm, sync_key=VM_KEY)
def api_update(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        vm = get_or_404(s, VmInstance, msg.uuid)
        if (msg.get("cpuNum") or msg.get("memorySize")) and vm.state not in (STOPPED, CREATED):
            raise ApiError("VM.1001", f"cpuNum and memorySize of VmInstanceVO[uuid:{vm.uuid}] can be changed "
                                      f"only when it is Stopped; it is {vm.state}")
        dl3 = msg.get("defaultL3NetworkUuid")
        if dl3:
            from mn.models import VmNic

            if dl3 not in s.scalars(select(VmNic.l3NetworkUuid).where(VmNic.vmInstanceUuid == vm.uuid)).all():
                raise invalid(f"defaultL3NetworkUuid {dl3} is not an L3 network of the VM")
        if msg.get("state") is not None:
            raise invalid("UpdateVmInstance cannot change the state; use Start/StopVmInstance")
    return apply_update(ctx, VmInstance, msg, ("name", "description", "defaultL3NetworkUuid", "platform",
                                               "cpuNum", "memorySize", "reservedMemorySize", "guestOsType"))


@apis.handler("ChangeInstanceOffering", check=_check_vm, sync_key=VM_KEY2)
def api_change_offering(ctx: ApiContext, msg: Msg) -> dict:
    """Stopped VMs take the new size at once; a Running VM's host must hold the difference."""
    ratio = ctx.gconf.get(MEMORY_OVER_PROVISIONING)
    with ctx.db.tx() as s:
        vm = get_or_404(s, VmInstance, msg.vmInstanceUuid)
        off = get_or_404(s, InstanceOffering, msg.instanceOfferingUuid)
        if off.state != "Enabled":
            raise invalid(f"InstanceOfferingVO[uuid:{off.uuid}] is {off.state}")
        if vm.state not in (STOPPED, CREATED, RUNNING):
            raise ApiError("VM.1001", f"cannot change the offering of VmInstanceVO[uuid:{vm.uuid}] in state "
                                      f"{vm.state}")
        if vm.state == RUNNING and vm.hostUuid:
            dcpu = off.cpuNum - vm.cpuNum
            dmem = math.ceil(off.memorySize / ratio) - math.ceil(vm.memorySize / ratio)
            if (dcpu > 0 or dmem > 0) and not host_alloc.reserve(s, vm.hostUuid, max(dcpu, 0), max(dmem, 0)):
                raise ApiError("HOST_ALLOCATION.1001",
                               f"HostVO[uuid:{vm.hostUuid}] has not enough free CPU/memory for "
                               f"InstanceOfferingVO[uuid:{off.uuid}]")
            if dcpu < 0 or dmem < 0:
                host_alloc.release(s, vm.hostUuid, max(-dcpu, 0), max(-dmem, 0))
        s.execute(update(VmInstance).where(VmInstance.uuid == vm.uuid).values(
            cpuNum=off.cpuNum, memorySize=off.memorySize, instanceOfferingUuid=off.uuid,
            reservedMemorySize=off.reservedMemorySize))
        quota.grew_owners(s.connection(), [vm.uuid])
    return _vm_inv(ctx, msg.vmInstanceUuid)
