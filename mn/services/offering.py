"""Instance and disk offerings: Create, Update, ChangeState and Delete for each (queries are derived).

Invariants: an instance offering has cpuNum > 0, memorySize > 0 and 0 <= reservedMemorySize <=
memorySize, and its allocatorStrategy, when set, is a known host allocator strategy; a disk
offering has diskSize > 0 and its allocationStrategy, when set, is a known primary storage
strategy. VMs and volumes keep working when their offering is deleted (their reference becomes
null).
"""

from __future__ import annotations

from mn import ownership
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade
from mn.context import ApiContext
from mn.errors import invalid
from mn.globalconfig import HOST_ALLOCATOR_STRATEGY
from mn.inventory import to_inventory
from mn.models import DiskOffering, InstanceOffering
from mn.services.common import (
    add_tags,
    check_exists,
    forget_resource,
    get_or_404,
    new_resource_uuid,
    standard_handlers,
)
from mn.services.primary_storage import ALLOCATOR_STRATEGIES, check_delete_mode

HOST_ALLOCATOR_STRATEGIES: tuple[str, ...] = HOST_ALLOCATOR_STRATEGY.valid_values or ()


def _check_strategy(api: str, strategy: str | None) -> None:
    if strategy is not None and strategy not in HOST_ALLOCATOR_STRATEGIES:
        raise invalid(f"parameter 'allocatorStrategy' of {api} must be one of {list(HOST_ALLOCATOR_STRATEGIES)}, "
                      f"got {strategy!r}")


def _positive(api: str, msg: Msg, *names: str) -> None:
    for n in names:
        if msg[n] <= 0:
            raise invalid(f"parameter '{n}' of {api} must be greater than 0, got {msg[n]}")


def _check_new_uuid(ctx: ApiContext, model: type, msg: Msg) -> None:
    uuid = new_resource_uuid(msg)
    if msg.get("resourceUuid"):
        with ctx.db.ro() as s:
            if s.get(model, uuid) is not None:
                raise invalid(f"resourceUuid {uuid} is already used by another {model.__name__}")


def _delete(ctx: ApiContext, model: type, uuid: str, mode: str) -> None:
    cascade(ctx, model, uuid, mode)
    with ctx.db.tx() as s:
        row = s.get(model, uuid)
        if row is not None:
            forget_resource(s, uuid)
            s.delete(row)


# ---- instance offerings -------------------------------------------------------------------------

def _check_create_instance(ctx: ApiContext, msg: Msg) -> None:
    _check_new_uuid(ctx, InstanceOffering, msg)
    _positive("CreateInstanceOffering", msg, "cpuNum", "memorySize")
    reserved = msg.get("reservedMemorySize") or 0
    if reserved < 0 or reserved > msg.memorySize:
        raise invalid(f"parameter 'reservedMemorySize' of CreateInstanceOffering must be within [0, memorySize "
                      f"{msg.memorySize}], got {reserved}")
    _check_strategy("CreateInstanceOffering", msg.get("allocatorStrategy"))


@apis.handler("CreateInstanceOffering", check=_check_create_instance)
def create_instance_offering(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        o = InstanceOffering(uuid=uuid, name=msg.name, description=msg.get("description"), cpuNum=msg.cpuNum,
                             cpuSpeed=0, memorySize=msg.memorySize,
                             reservedMemorySize=msg.get("reservedMemorySize") or 0,
                             allocatorStrategy=msg.get("allocatorStrategy"), sortKey=msg.get("sortKey") or 0,
                             type=msg.get("type") or "UserVm", state="Enabled")
        s.add(o)
        add_tags(s, uuid, "InstanceOfferingVO", msg)
        ownership.own(s, ctx.account_uuid, "InstanceOfferingVO", [uuid])
        s.flush()
        return {"inventory": to_inventory(s, o)}


def _check_instance(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, InstanceOffering, msg.uuid)


standard_handlers(InstanceOffering, "instance-offering", update_api="UpdateInstanceOffering",
                  update_fields=("name", "description", "allocatorStrategy"),
                  update_check=lambda msg: _check_strategy("UpdateInstanceOffering", msg.get("allocatorStrategy")),
                  state_api="ChangeInstanceOfferingState")


def _check_delete_instance(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    _check_instance(ctx, msg)


@apis.handler("DeleteInstanceOffering", check=_check_delete_instance, sync_key=key_of("uuid", "instance-offering"))
def delete_instance_offering(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, InstanceOffering, msg.uuid)
    _delete(ctx, InstanceOffering, msg.uuid, msg.deleteMode)
    return {}


# ---- disk offerings -----------------------------------------------------------------------------

def _check_create_disk(ctx: ApiContext, msg: Msg) -> None:
    _check_new_uuid(ctx, DiskOffering, msg)
    _positive("CreateDiskOffering", msg, "diskSize")
    strategy = msg.get("allocationStrategy")
    if strategy is not None and strategy not in ALLOCATOR_STRATEGIES:
        raise invalid(f"parameter 'allocationStrategy' of CreateDiskOffering must be one of "
                      f"{ALLOCATOR_STRATEGIES}, got {strategy!r}")


@apis.handler("CreateDiskOffering", check=_check_create_disk)
def create_disk_offering(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        o = DiskOffering(uuid=uuid, name=msg.name, description=msg.get("description"), diskSize=msg.diskSize,
                         sortKey=msg.get("sortKey") or 0, state="Enabled", type=msg.get("type") or "zstack",
                         allocatorStrategy=msg.get("allocationStrategy"))
        s.add(o)
        add_tags(s, uuid, "DiskOfferingVO", msg)
        ownership.own(s, ctx.account_uuid, "DiskOfferingVO", [uuid])
        s.flush()
        return {"inventory": to_inventory(s, o)}


def _check_disk(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, DiskOffering, msg.uuid)


standard_handlers(DiskOffering, "disk-offering", update_api="UpdateDiskOffering",
                  state_api="ChangeDiskOfferingState")


def _check_delete_disk(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    _check_disk(ctx, msg)


@apis.handler("DeleteDiskOffering", check=_check_delete_disk, sync_key=key_of("uuid", "disk-offering"))
def delete_disk_offering(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, DiskOffering, msg.uuid)
    _delete(ctx, DiskOffering, msg.uuid, msg.deleteMode)
    return {}
