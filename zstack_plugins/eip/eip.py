"""Elastic IPs (flat network): CreateEip, AttachEip, DetachEip, UpdateEip, ChangeEipState,
DeleteEip, GetEipAttachableVmNics, GetVmNicAttachableEips (QueryEip is derived).

ZStack's rules, checked before anything is queued and again inside the transaction that records:
- an EIP uses one VIP and a VIP serves one EIP (unique eip.vipUuid);
- the guest NIC has an IP, is not on the VIP's L3 network, belongs to a user VM of the VIP's zone
  that is Running, Paused or Stopped, and whose cluster has the VIP's L2 network (flat EIP);
- a NIC has at most one EIP per public L3 network (VIPs of different L3 networks may stack).
Attaching is the flow "attach-eip" (record → apply on the VM's host when the EIP is active; a
failure on the host rolls the record back); CreateEip with a vmNicUuid is "create-eip" (the same
steps after creating the EIP). Operations on an attached EIP run on its VM's queue (vm-<uuid>), so
they are ordered with the VM's start, stop and migration (see eip_host for how EIPs follow VMs).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mn import ownership, quota
from mn.api.registry import Msg, apis
from mn.cascade import dependent
from mn.context import ApiContext
from mn.errors import VM_STATE_ERROR, ApiError, invalid
from mn.flow import Flow, Step, register_flow
from mn.inventory import to_inventories, to_inventory
from mn.models import Account, L3Network, VmInstance, VmNic
from mn.services.accounts import owned_of_type
from mn.services.common import (
    STATE_EVENTS,
    add_tags,
    forget_resource,
    get_or_404,
    new_resource_uuid,
    standard_handlers,
)
from mn.services.vm_common import PAUSED, RUNNING, STOPPED
from zstack_plugins.eip import host as eip_host
from zstack_plugins.eip.models import Eip, Vip, VipNetworkServicesRef, VipPeerL3NetworkRef

EIP_VM_STATES = (RUNNING, PAUSED, STOPPED)
SERVICE_TYPE, PROVIDER = "Eip", "Flat"


# ---- rules --------------------------------------------------------------------------------------

def _vip_free(s: Session, vip: Vip, eip_uuid: str | None = None) -> None:
    other = s.scalar(select(Eip.uuid).where(Eip.vipUuid == vip.uuid))
    if other is not None and other != eip_uuid:
        raise invalid(f"VipVO[uuid:{vip.uuid}, ip:{vip.ip}] is already used by EipVO[uuid:{other}]; "
                      f"a VIP serves one EIP")
    if vip.useFor not in (None, SERVICE_TYPE):
        raise invalid(f"VipVO[uuid:{vip.uuid}] is used by the {vip.useFor} service")


def check_nic_for_vip(s: Session, vip: Vip, nic: VmNic, eip_uuid: str | None = None,
                      used_ip_uuid: str | None = None) -> VmInstance:
    """Why the NIC cannot take an EIP on this VIP (an ApiError), or its VM."""
    vm = s.get(VmInstance, nic.vmInstanceUuid) if nic.vmInstanceUuid else None
    if vm is None:
        raise invalid(f"VmNicVO[uuid:{nic.uuid}] belongs to no VM")
    if vm.type != "UserVm":
        raise invalid(f"VmNicVO[uuid:{nic.uuid}] belongs to a {vm.type} VM; EIPs attach to user VMs")
    if vm.state not in EIP_VM_STATES:
        raise ApiError(VM_STATE_ERROR, f"VmInstanceVO[uuid:{vm.uuid}] is {vm.state}; an EIP can be attached "
                                       f"to a NIC of a VM that is one of {list(EIP_VM_STATES)}")
    if not nic.ip:
        raise invalid(f"VmNicVO[uuid:{nic.uuid}] has no IP address")
    if used_ip_uuid is not None and used_ip_uuid != nic.usedIpUuid:
        raise invalid(f"UsedIpVO[uuid:{used_ip_uuid}] is not the IP of VmNicVO[uuid:{nic.uuid}]")
    if nic.l3NetworkUuid == vip.l3NetworkUuid:
        raise invalid(f"VmNicVO[uuid:{nic.uuid}] is on L3NetworkVO[uuid:{vip.l3NetworkUuid}], the network of "
                      f"VipVO[uuid:{vip.uuid}]; an EIP maps a VIP to a guest of another network")
    vip_l3 = s.get(L3Network, vip.l3NetworkUuid)
    if vm.zoneUuid is not None and vip_l3.zoneUuid != vm.zoneUuid:
        raise invalid(f"VipVO[uuid:{vip.uuid}] is in zone {vip_l3.zoneUuid}, VmInstanceVO[uuid:{vm.uuid}] in "
                      f"zone {vm.zoneUuid}")
    same = s.scalar(select(Eip.uuid).join(Vip, Vip.uuid == Eip.vipUuid).where(
        Eip.vmNicUuid == nic.uuid, Vip.l3NetworkUuid == vip.l3NetworkUuid, Eip.uuid != (eip_uuid or "")))
    if same is not None:
        raise invalid(f"VmNicVO[uuid:{nic.uuid}] already has EipVO[uuid:{same}] on L3NetworkVO"
                      f"[uuid:{vip.l3NetworkUuid}]; a NIC takes one EIP per public network")
    eip_host.check_vip_l2_on_cluster(s, vip, vm.clusterUuid)
    return vm


ownership.declare(Eip, ownership.Owned("EipVO"))
quota.define("eip.num", 20, quota.counted(Eip))


# ---- flow steps ---------------------------------------------------------------------------------

def _create(ctx: ApiContext, d: dict[str, Any]) -> None:
    m = d["msg"]
    with ctx.db.tx() as s:
        vip = get_or_404(s, Vip, m["vipUuid"])
        _vip_free(s, vip)
        s.add(Eip(uuid=d["eip"], name=m["name"], description=m.get("description"), vipUuid=vip.uuid,
                  state="Enabled", vipIp=vip.ip))
        s.add(VipNetworkServicesRef(uuid=d["eip"], serviceType=SERVICE_TYPE, vipUuid=vip.uuid))
        vip.useFor, vip.serviceProvider = SERVICE_TYPE, PROVIDER
        add_tags(s, d["eip"], "EipVO", m)
        quota.check(s.connection(), ctx.caller, {"eip.num": 1})
        ownership.own(s, ctx.account_uuid, "EipVO", [d["eip"]])
        try:
            s.flush()
        except IntegrityError:  # a concurrent CreateEip took the VIP first (unique eip.vipUuid)
            raise invalid(f"VipVO[uuid:{vip.uuid}] is already used by another EIP; a VIP serves one EIP") from None


def _create_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.tx() as s:
        _drop(s, d["eip"])


def _drop(s: Session, eip_uuid: str) -> None:
    """Delete the EIP's rows and free its VIP (idempotent)."""
    eip = s.get(Eip, eip_uuid)
    s.execute(delete(VipNetworkServicesRef).where(VipNetworkServicesRef.uuid == eip_uuid))
    if eip is None:
        return
    s.execute(delete(VipPeerL3NetworkRef).where(VipPeerL3NetworkRef.vipUuid == eip.vipUuid))
    vip = s.get(Vip, eip.vipUuid)
    if vip is not None:
        vip.useFor, vip.serviceProvider = None, None
    forget_resource(s, eip_uuid)
    s.delete(eip)


def _attach(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.tx() as s:
        eip = get_or_404(s, Eip, d["eip"])
        if eip.vmNicUuid is not None:
            raise invalid(f"EipVO[uuid:{eip.uuid}] is already attached to VmNicVO[uuid:{eip.vmNicUuid}]")
        vip = get_or_404(s, Vip, eip.vipUuid)
        nic = get_or_404(s, VmNic, d["nic"])
        check_nic_for_vip(s, vip, nic, eip.uuid, d.get("usedIp"))
        eip.vmNicUuid, eip.guestIp = nic.uuid, nic.ip
        s.add(VipPeerL3NetworkRef(vipUuid=vip.uuid, l3NetworkUuid=nic.l3NetworkUuid))


def _unrecord(s: Session, eip: Eip) -> None:
    eip.vmNicUuid, eip.guestIp = None, None
    s.execute(delete(VipPeerL3NetworkRef).where(VipPeerL3NetworkRef.vipUuid == eip.vipUuid))


def _attach_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.tx() as s:
        eip = s.get(Eip, d["eip"])
        if eip is not None and eip.vmNicUuid == d["nic"]:
            _unrecord(s, eip)


def _apply(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.ro() as s:
        eip = s.get(Eip, d["eip"])
        host = eip_host.active_host(s, eip)
        to = eip_host.eip_to(s, eip) if host else None
    if host:
        d["applied"] = {"host": host, "to": to.__dict__}
        eip_host.send_apply(ctx, host, [to])


def _apply_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    rec = d.get("applied")
    if rec:
        from zstack_plugins.eip.protocol import EipTO

        eip_host.send_delete(ctx, rec["host"], [EipTO(**rec["to"])])


CREATE = Step("create", _create, _create_rollback)
ATTACH = Step("attach", _attach, _attach_rollback)
APPLY = Step("apply", _apply, _apply_rollback)


@register_flow("create-eip")
def create_flow() -> Flow:
    return Flow("create-eip", [CREATE, ATTACH, APPLY])


@register_flow("attach-eip")
def attach_flow() -> Flow:
    return Flow("attach-eip", [ATTACH, APPLY])


# ---- APIs ---------------------------------------------------------------------------------------

def _vm_of_nic(s: Session, nic_uuid: str | None) -> str | None:
    nic = s.get(VmNic, nic_uuid) if nic_uuid else None
    return nic.vmInstanceUuid if nic is not None else None


def _key(msg: Msg) -> str:
    """Operations touching a VM run on its queue; the others on the EIP's (or the VIP's)."""
    if msg.get("_vmUuid"):
        return f"vm-{msg['_vmUuid']}"
    return f"eip-{msg.get('uuid') or msg.get('eipUuid') or msg.get('vipUuid')}"


def _check_create(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    with ctx.db.ro() as s:
        vip = get_or_404(s, Vip, msg.vipUuid)
        _vip_free(s, vip)
        if msg.get("resourceUuid") and s.get(Eip, msg.resourceUuid) is not None:
            raise invalid(f"resourceUuid {msg.resourceUuid} is already used by an EIP")
        if msg.get("vmNicUuid"):
            check_nic_for_vip(s, vip, get_or_404(s, VmNic, msg.vmNicUuid), used_ip_uuid=msg.get("usedIpUuid"))
            msg["_vmUuid"] = _vm_of_nic(s, msg.vmNicUuid)
        elif msg.get("usedIpUuid"):
            raise invalid("usedIpUuid needs vmNicUuid")


@apis.handler("CreateEip", check=_check_create, sync_key=_key)
def create_eip(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    data = {"eip": uuid, "nic": msg.get("vmNicUuid"), "usedIp": msg.get("usedIpUuid"),
            "msg": {k: v for k, v in msg.items() if not k.startswith("_")}}
    flow = create_flow() if data["nic"] else Flow("create-eip", [CREATE])
    ctx.run_flow(flow, data)
    return {"inventory": _inventory(ctx, uuid)}


def _inventory(ctx: ApiContext, uuid: str) -> dict:
    with ctx.db.ro() as s:
        return to_inventory(s, get_or_404(s, Eip, uuid))


def _check_attach(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        eip = get_or_404(s, Eip, msg.eipUuid)
        if eip.vmNicUuid is not None:
            raise invalid(f"EipVO[uuid:{eip.uuid}] is already attached to VmNicVO[uuid:{eip.vmNicUuid}]")
        check_nic_for_vip(s, get_or_404(s, Vip, eip.vipUuid), get_or_404(s, VmNic, msg.vmNicUuid), eip.uuid,
                          msg.get("usedIpUuid"))
        msg["_vmUuid"] = _vm_of_nic(s, msg.vmNicUuid)


@apis.handler("AttachEip", check=_check_attach, sync_key=_key)
def attach_eip(ctx: ApiContext, msg: Msg) -> dict:
    ctx.run_flow(attach_flow(), {"eip": msg.eipUuid, "nic": msg.vmNicUuid, "usedIp": msg.get("usedIpUuid")})
    return {"inventory": _inventory(ctx, msg.eipUuid)}


def detach(ctx: ApiContext, eip_uuid: str) -> None:
    """Off the host (if active there), then unrecorded; a host failure leaves it attached."""
    with ctx.db.ro() as s:
        eip = s.get(Eip, eip_uuid)
        if eip is None or eip.vmNicUuid is None:
            return
        host = eip_host.active_host(s, eip)
        to = eip_host.eip_to(s, eip) if host else None
    if host:
        eip_host.send_delete(ctx, host, [to])
    with ctx.db.tx() as s:
        eip = s.get(Eip, eip_uuid)
        if eip is not None:
            _unrecord(s, eip)


def _check_eip(ctx: ApiContext, msg: Msg) -> None:
    """The EIP exists; an attached one is operated on its VM's queue."""
    with ctx.db.ro() as s:
        eip = get_or_404(s, Eip, msg.uuid)
        msg["_vmUuid"] = _vm_of_nic(s, eip.vmNicUuid)


def _check_detach(ctx: ApiContext, msg: Msg) -> None:
    _check_eip(ctx, msg)
    if not msg.get("_vmUuid"):
        raise invalid(f"EipVO[uuid:{msg.uuid}] is not attached to any VM NIC")


@apis.handler("DetachEip", check=_check_detach, sync_key=_key)
def api_detach_eip(ctx: ApiContext, msg: Msg) -> dict:
    detach(ctx, msg.uuid)
    return {"inventory": _inventory(ctx, msg.uuid)}


@apis.handler("ChangeEipState", check=_check_eip, sync_key=_key)
def change_eip_state(ctx: ApiContext, msg: Msg) -> dict:
    """Enabled/Disabled: a disabled EIP stays attached but is taken off its host."""
    new = STATE_EVENTS[msg.stateEvent]
    with ctx.db.ro() as s:
        eip = get_or_404(s, Eip, msg.uuid)
        before, after = eip_host.active_host(s, eip), eip_host.active_host(s, eip, eip_state=new)
        to = eip_host.eip_to(s, eip) if before or after else None
    eip_host.move(ctx, to, before, after)
    with ctx.db.tx() as s:
        eip = get_or_404(s, Eip, msg.uuid)
        eip.state = new
        s.flush()
        return {"inventory": to_inventory(s, eip)}


standard_handlers(Eip, "eip", update_api="UpdateEip")


def delete_eip(ctx: ApiContext, uuid: str, mode: str = "Permissive") -> None:
    """Detach (off the host first), then delete the EIP and free its VIP (idempotent)."""
    detach(ctx, uuid)
    with ctx.db.tx() as s:
        _drop(s, uuid)


@apis.handler("DeleteEip", check=_check_eip, sync_key=_key)
def api_delete_eip(ctx: ApiContext, msg: Msg) -> dict:
    delete_eip(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- candidates ---------------------------------------------------------------------------------

def _check_candidates(ctx: ApiContext, msg: Msg) -> None:
    if not msg.get("eipUuid") and not msg.get("vipUuid"):
        raise invalid("GetEipAttachableVmNics needs eipUuid or vipUuid")
    for name in ("limit", "start"):
        if msg.get(name) is not None and msg[name] < 0:
            raise invalid(f"{name} must not be negative, got {msg[name]}")


@apis.handler("GetEipAttachableVmNics", check=_check_candidates)
def attachable_nics(ctx: ApiContext, msg: Msg) -> dict:
    """NICs the EIP (or an EIP on the VIP) could attach to, by the rules of check_nic_for_vip."""
    limit, start = msg.get("limit", 1000), msg.get("start", 0) or 0
    with ctx.db.ro() as s:
        if msg.get("eipUuid"):
            eip = get_or_404(s, Eip, msg.eipUuid)
            if eip.vmNicUuid is not None:
                return {"inventories": [], "start": start, "more": False}
            vip, eip_uuid = get_or_404(s, Vip, eip.vipUuid), eip.uuid
        else:
            vip, eip_uuid = get_or_404(s, Vip, msg.vipUuid), None
        if msg.get("attachedToVm") is False:  # every NIC here belongs to a VM
            return {"inventories": [], "start": start, "more": False}
        zone = s.get(L3Network, vip.l3NetworkUuid).zoneUuid
        q = (select(VmNic).join(VmInstance, VmInstance.uuid == VmNic.vmInstanceUuid)
             .where(VmInstance.zoneUuid == zone, VmInstance.state.in_(EIP_VM_STATES), VmInstance.type == "UserVm",
                    VmNic.l3NetworkUuid != vip.l3NetworkUuid, VmNic.ip.is_not(None),
                    *(ownership.owned_by(VmNic, ctx.caller) or [])))
        if msg.get("vmUuid"):
            q = q.where(VmInstance.uuid == msg.vmUuid)
        if msg.get("vmName"):
            q = q.where(VmInstance.name == msg.vmName)
        ok = []
        for nic in s.scalars(q.order_by(VmNic.createDate, VmNic.uuid)):
            try:
                check_nic_for_vip(s, vip, nic, eip_uuid)
            except ApiError:
                continue
            ok.append(nic)
            if len(ok) > start + limit:
                break
        page = ok[start:start + limit]
        return {"inventories": to_inventories(s, page), "start": start, "more": len(ok) > start + limit}


@apis.handler("GetVmNicAttachableEips")
def attachable_eips(ctx: ApiContext, msg: Msg) -> dict:
    """Unattached EIPs whose VIP the NIC could take, by the rules of check_nic_for_vip."""
    if msg.get("ipVersion") == 6:
        return {"inventories": []}
    limit, start = msg.get("limit", 1000), msg.get("start", 0) or 0
    with ctx.db.ro() as s:
        nic = get_or_404(s, VmNic, msg.vmNicUuid)
        ok = []
        mine = ownership.owned_by(Eip, ctx.caller) or []
        for eip in s.scalars(select(Eip).where(Eip.vmNicUuid.is_(None), *mine).order_by(Eip.createDate, Eip.uuid)):
            try:
                check_nic_for_vip(s, s.get(Vip, eip.vipUuid), nic, eip.uuid)
            except ApiError:
                continue
            ok.append(eip)
            if len(ok) >= start + limit:
                break
        return {"inventories": to_inventories(s, ok[start:start + limit])}


# ---- cascade edges ------------------------------------------------------------------------------

def _eip_of_vip(s: Session, vip_uuid: str) -> list[str]:
    return list(s.scalars(select(Eip.uuid).where(Eip.vipUuid == vip_uuid)))


def _eips_of_nic(s: Session, nic_uuid: str) -> list[str]:
    return list(s.scalars(select(Eip.uuid).where(Eip.vmNicUuid == nic_uuid).order_by(Eip.uuid)))


def _detach_for_nic(ctx: ApiContext, eip_uuid: str, mode: str) -> None:
    detach(ctx, eip_uuid)


dependent(Vip, "EipVO", _eip_of_vip, delete_eip)
dependent(VmNic, "EipVO", _eips_of_nic, _detach_for_nic)
dependent(Account, "EipVO", owned_of_type("EipVO"), delete_eip)
