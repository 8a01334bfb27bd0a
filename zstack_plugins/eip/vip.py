"""Virtual IPs: CreateVip, UpdateVip, ChangeVipState, DeleteVip (QueryVip is derived).

A VIP is an address reserved on an L3 network (usually a public one) through mn.ipam, in the
same transaction that records the VIP, so a failed creation leaves no IP behind; deleting the VIP
releases it. Network services use a VIP (today: one EIP per VIP); deleting a VIP deletes its EIP
first (cascade), and so does deleting the VIP's L3 network or IP range (to the VIP).
Disabling a VIP takes its EIP off the host; enabling it puts it back.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mn import ipam, ownership, quota
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade, dependent
from mn.context import ApiContext
from mn.errors import IP_ALLOCATION_FAILURE, ApiError, invalid
from mn.inventory import Collection, register_collections, to_inventory
from mn.iputil import int_to_ip, parse_ipv4
from mn.models import Account, IpRange, L3Network, UsedIp
from mn.services.accounts import owned_of_type
from mn.services.common import (
    STATE_EVENTS,
    add_tags,
    forget_resource,
    get_or_404,
    new_resource_uuid,
    standard_handlers,
)
from zstack_plugins.eip import host as eip_host
from zstack_plugins.eip.models import Eip, Vip, VipNetworkServicesRef, VipPeerL3NetworkRef

VIP_KEY = key_of("uuid", "vip")

register_collections(Vip, {
    "peerL3NetworkUuids": Collection(VipPeerL3NetworkRef, "vipUuid", attr="l3NetworkUuid", order_by="id"),
    "servicesRefs": Collection(VipNetworkServicesRef, "vipUuid"),
})



def _check_create(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    if msg.get("ipVersion") not in (None, 4):
        raise invalid(f"ipVersion {msg.ipVersion} is not supported: VIPs are IPv4 only")
    if msg.get("requiredIp"):
        parse_ipv4(msg.requiredIp, "requiredIp")
    with ctx.db.ro() as s:
        _check_l3_and_range(s, msg)


def _check_l3_and_range(s: Session, msg: Msg) -> IpRange | None:
    l3 = get_or_404(s, L3Network, msg.l3NetworkUuid)
    if l3.state != "Enabled":
        raise invalid(f"L3NetworkVO[uuid:{l3.uuid}] is {l3.state}: VIPs are allocated on enabled networks only")
    if l3.ipVersion != 4:
        raise invalid(f"L3NetworkVO[uuid:{l3.uuid}] is not an IPv4 network")
    if not msg.get("ipRangeUuid"):
        return None
    r = get_or_404(s, IpRange, msg.ipRangeUuid)
    if r.l3NetworkUuid != l3.uuid:
        raise invalid(f"IpRangeVO[uuid:{r.uuid}] is not an IP range of L3NetworkVO[uuid:{l3.uuid}]")
    if msg.get("requiredIp"):
        n = int(parse_ipv4(msg.requiredIp, "requiredIp"))
        if not r.startIpInLong <= n <= r.endIpInLong:
            raise invalid(f"requiredIp {msg.requiredIp} is not in IpRangeVO[uuid:{r.uuid}] "
                          f"({r.startIp}-{r.endIp})")
    return r


def _allocate(s: Session, msg: Msg, r: IpRange | None) -> UsedIp:
    """The VIP's address: requiredIp, else a free one of ipRangeUuid, else a random free one."""
    if msg.get("requiredIp"):
        return ipam.allocate_ip(s, msg.l3NetworkUuid, ip=msg.requiredIp, used_for="Vip")
    if r is None:
        return ipam.allocate_ip(s, msg.l3NetworkUuid, used_for="Vip")
    for _ in range(ipam.MAX_CONFLICTS):  # lowest free address of the range; a lost race tries the next
        n = ipam.first_free(s, r.l3NetworkUuid, r.startIpInLong, r.endIpInLong)
        if n is None:
            break
        try:
            return ipam.allocate_ip(s, r.l3NetworkUuid, ip=int_to_ip(n), used_for="Vip")
        except ApiError as exc:  # only "already used" (a concurrent winner) is retried
            if exc.code != IP_ALLOCATION_FAILURE:
                raise
    raise ApiError(IP_ALLOCATION_FAILURE, f"no free IP in IpRangeVO[uuid:{r.uuid}] ({r.startIp}-{r.endIp})")


ownership.declare(Vip, ownership.Owned("VipVO"))
quota.define("vip.num", 20, quota.counted(Vip))


@apis.handler("CreateVip", check=_check_create)
def create_vip(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        r = _check_l3_and_range(s, msg)
        if s.get(Vip, uuid) is not None:
            raise invalid(f"resourceUuid {uuid} is already used by a VIP")
        used = _allocate(s, msg, r)
        prefix = r.prefixLen if r is not None else s.get(IpRange, used.ipRangeUuid).prefixLen
        vip = Vip(uuid=uuid, name=msg.name, description=msg.get("description"), l3NetworkUuid=msg.l3NetworkUuid,
                  usedIpUuid=used.uuid, ip=used.ip, state="Enabled", gateway=used.gateway, netmask=used.netmask,
                  prefixLen=prefix, system=False)
        s.add(vip)
        add_tags(s, uuid, "VipVO", msg)
        quota.check(s.connection(), ctx.caller, {"vip.num": 1})
        ownership.own(s, ctx.account_uuid, "VipVO", [uuid])
        s.flush()
        return {"inventory": to_inventory(s, vip)}


standard_handlers(Vip, "vip", update_api="UpdateVip")


def _check_vip(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, Vip, msg.uuid)


@apis.handler("ChangeVipState", check=_check_vip, sync_key=VIP_KEY)
def change_vip_state(ctx: ApiContext, msg: Msg) -> dict:
    """Enabled/Disabled; the VIP's active EIP is removed from (or applied again on) its host."""
    new = STATE_EVENTS[msg.stateEvent]
    with ctx.db.ro() as s:
        vip = get_or_404(s, Vip, msg.uuid)
        eip = s.scalar(select(Eip).where(Eip.vipUuid == vip.uuid))
        before = eip_host.active_host(s, eip) if eip is not None else None
        after = eip_host.active_host(s, eip, vip_state=new) if eip is not None else None
        to = eip_host.eip_to(s, eip) if eip is not None and (before or after) else None
    eip_host.move(ctx, to, before, after)
    with ctx.db.tx() as s:
        vip = get_or_404(s, Vip, msg.uuid)
        vip.state = new
        s.flush()
        return {"inventory": to_inventory(s, vip)}


def delete_vip(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Cascade to the VIP's EIP, then release its IP and delete it (idempotent)."""
    cascade(ctx, Vip, uuid, mode)
    with ctx.db.tx() as s:
        vip = s.get(Vip, uuid)
        if vip is None:
            return
        used = vip.usedIpUuid
        forget_resource(s, uuid)
        s.delete(vip)
        s.flush()
        ipam.release_ip(s, used)


@apis.handler("DeleteVip", check=_check_vip, sync_key=VIP_KEY)
def api_delete_vip(ctx: ApiContext, msg: Msg) -> dict:
    delete_vip(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- cascade edges ----------------------------------------------------------------------------

def _vips_on_l3(s: Session, l3_uuid: str) -> list[str]:
    return list(s.scalars(select(Vip.uuid).where(Vip.l3NetworkUuid == l3_uuid).order_by(Vip.uuid)))


def _vips_in_range(s: Session, range_uuid: str) -> list[str]:
    return list(s.scalars(select(Vip.uuid).join(UsedIp, UsedIp.uuid == Vip.usedIpUuid)
                          .where(UsedIp.ipRangeUuid == range_uuid).order_by(Vip.uuid)))


dependent(L3Network, "VipVO", _vips_on_l3, delete_vip)
dependent(IpRange, "VipVO", _vips_in_range, delete_vip)
dependent(Account, "VipVO", owned_of_type("VipVO"), delete_vip)
