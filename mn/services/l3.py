"""L3 networks and IP ranges: CreateL3Network, UpdateL3Network, ChangeL3NetworkState,
DeleteL3Network, AddDnsToL3Network, RemoveDnsFromL3Network, AddIpRange, AddIpRangeByNetworkCidr,
UpdateIpRange, DeleteIpRange, GetFreeIp, GetIpAddressCapacity (QueryL3Network, QueryIpRange and
QueryIpAddress are derived).

Only IPv4 is supported for now: ipVersion 6 is rejected with a clear error.

Invariants (ZStack's rules):
- An L3 network lives in the zone of its L2 network.
- An IP range's start, end and gateway are host addresses of one subnet, start <= end, and the
  gateway is outside [start, end]; a Normal range needs a gateway.
- All ranges of an L3 share one network CIDR and gateway, and never overlap. Range changes of
  one L3 run one at a time (sync key l3-<uuid>), so these checks cannot race.
- Deleting an IP range first cascades to the NICs using its IPs (registered by the VM module),
  then deletes its remaining UsedIps; deleting an L3 cascades to its ranges and NICs.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mn import ipam, ownership, quota
from mn.api.registry import Msg, apis
from mn.cascade import cascade, dependent
from mn.context import SYSTEM, ApiContext, Caller
from mn.errors import invalid, not_found
from mn.inventory import to_inventories, to_inventory
from mn.iputil import RangeSpec, overlaps, parse_ipv4, ranges_from_cidr, validate_range
from mn.models import IpRange, L2Network, L3Network, L3NetworkDns, UsedIp, Zone
from mn.services.common import (
    add_tags,
    change_state,
    forget_resource,
    get_or_404,
    new_resource_uuid,
)

L3_TYPES = ("L3BasicNetwork",)
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*\.?$")
MAX_FREE_IPS = 10000


def _l3_key(msg: Msg) -> str:
    return f"l3-{msg.get('l3NetworkUuid') or msg.get('uuid')}"


def _range_key(msg: Msg) -> str:
    return f"ip-range-{msg.uuid}"


# ---- L3 networks ------------------------------------------------------------------------------

def _check_category(category: str, system: bool) -> None:
    """ZStack's valid (category, system) pairs: Public with either; Private not system; System system."""
    if category == "Private" and system:
        raise invalid("a system L3 network cannot have category Private; use Public or System")
    if category == "System" and not system:
        raise invalid("an L3 network of category System must have system set to true")


def _check_dns_domain(domain: str | None) -> None:
    if domain is not None and not _DOMAIN.match(domain):
        raise invalid(f"dnsDomain {domain!r} is not a valid domain name")


def _check_ip_version(version: int | None) -> None:
    if version not in (None, 4):
        raise invalid(f"ipVersion {version} is not supported: this management node supports IPv4 L3 "
                      "networks only")


def _check_create(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    if (msg.get("type") or "L3BasicNetwork") not in L3_TYPES:
        raise invalid(f"L3 network type {msg.type} is not supported; supported types: {list(L3_TYPES)}")
    _check_ip_version(msg.get("ipVersion"))
    _check_category(msg.get("category") or "Private", bool(msg.get("system")))
    _check_dns_domain(msg.get("dnsDomain"))
    with ctx.db.ro() as s:
        get_or_404(s, L2Network, msg.l2NetworkUuid)


@apis.handler("CreateL3Network", check=_check_create)
def create_l3(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        l2 = get_or_404(s, L2Network, msg.l2NetworkUuid)
        l3 = L3Network(uuid=uuid, name=msg.name, description=msg.get("description"), type="L3BasicNetwork",
                       zoneUuid=l2.zoneUuid, l2NetworkUuid=l2.uuid, state="Enabled",
                       dnsDomain=msg.get("dnsDomain"), system=bool(msg.get("system")),
                       category=msg.get("category") or "Private", ipVersion=4,
                       enableIPAM=msg.get("enableIPAM") is not False, isolated=bool(l2.isolated))
        s.add(l3)
        add_tags(s, uuid, "L3NetworkVO", msg)
        quota.check(s.connection(), ctx.caller, {"l3.num": 1})
        ownership.own(s, ctx.account_uuid, "L3NetworkVO", [uuid])
        s.flush()
        return {"inventory": to_inventory(s, l3)}


def _check_l3(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, L3Network, msg.get("l3NetworkUuid") or msg.uuid)


def _check_update(ctx: ApiContext, msg: Msg) -> None:
    _check_dns_domain(msg.get("dnsDomain"))
    with ctx.db.ro() as s:
        l3 = get_or_404(s, L3Network, msg.uuid)
        _check_category(msg.get("category") or l3.category,
                        l3.system if msg.get("system") is None else msg.system)


@apis.handler("UpdateL3Network", check=_check_update, sync_key=_l3_key)
def update_l3(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        l3 = get_or_404(s, L3Network, msg.uuid)
        for f in ("name", "description", "dnsDomain", "category", "system"):
            if msg.get(f) is not None:
                setattr(l3, f, msg[f])
        _check_category(l3.category, l3.system)
        s.flush()
        return {"inventory": to_inventory(s, l3)}


@apis.handler("ChangeL3NetworkState", check=_check_l3, sync_key=_l3_key)
def change_l3_state(ctx: ApiContext, msg: Msg) -> dict:
    return change_state(ctx, L3Network, msg)


def delete_l3(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Cascade to the L3's IP ranges and NICs, then delete its DNS, remaining IPs and itself."""
    cascade(ctx, L3Network, uuid, mode)
    with ctx.db.tx() as s:
        l3 = s.get(L3Network, uuid)
        if l3 is None:
            return
        s.execute(delete(UsedIp).where(UsedIp.l3NetworkUuid == uuid))
        for r in s.scalars(select(IpRange.uuid).where(IpRange.l3NetworkUuid == uuid)).all():
            forget_resource(s, r)
        s.execute(delete(IpRange).where(IpRange.l3NetworkUuid == uuid))
        s.execute(delete(L3NetworkDns).where(L3NetworkDns.l3NetworkUuid == uuid))
        forget_resource(s, uuid)
        s.delete(l3)


@apis.handler("DeleteL3Network", check=_check_l3, sync_key=_l3_key)
def api_delete_l3(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, L3Network, msg.uuid)
    delete_l3(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- DNS --------------------------------------------------------------------------------------

def _parse_dns(dns: str) -> str:
    try:
        return str(ipaddress.ip_address(dns.strip()))
    except ValueError:
        raise invalid(f"dns {dns!r} is not a valid IP address") from None


def _dns_row(s: Session, l3_uuid: str, dns: str) -> L3NetworkDns | None:
    return s.scalars(select(L3NetworkDns).where(L3NetworkDns.l3NetworkUuid == l3_uuid,
                                                L3NetworkDns.dns == dns)).first()


def _check_add_dns(ctx: ApiContext, msg: Msg) -> None:
    dns = _parse_dns(msg.dns)
    with ctx.db.ro() as s:
        get_or_404(s, L3Network, msg.l3NetworkUuid)
        if _dns_row(s, msg.l3NetworkUuid, dns) is not None:
            raise invalid(f"dns {dns} is already on L3 network {msg.l3NetworkUuid}")


@apis.handler("AddDnsToL3Network", check=_check_add_dns, sync_key=_l3_key)
def add_dns(ctx: ApiContext, msg: Msg) -> dict:
    dns = _parse_dns(msg.dns)
    with ctx.db.tx() as s:
        l3 = get_or_404(s, L3Network, msg.l3NetworkUuid)
        if _dns_row(s, l3.uuid, dns) is not None:
            raise invalid(f"dns {dns} is already on L3 network {l3.uuid}")
        s.add(L3NetworkDns(l3NetworkUuid=l3.uuid, dns=dns))
        s.flush()
        return {"inventory": to_inventory(s, l3)}


def _check_remove_dns(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, L3Network, msg.l3NetworkUuid)
        if _dns_row(s, msg.l3NetworkUuid, msg.dns.strip()) is None:
            raise invalid(f"dns {msg.dns} is not on L3 network {msg.l3NetworkUuid}")


@apis.handler("RemoveDnsFromL3Network", check=_check_remove_dns, sync_key=_l3_key)
def remove_dns(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        l3 = get_or_404(s, L3Network, msg.l3NetworkUuid)
        s.execute(delete(L3NetworkDns).where(L3NetworkDns.l3NetworkUuid == l3.uuid,
                                             L3NetworkDns.dns == msg.dns.strip()))
        s.flush()
        return {"inventory": to_inventory(s, l3)}


# ---- IP ranges --------------------------------------------------------------------------------

def _check_against_l3(s: Session, l3: L3Network, specs: list[RangeSpec], range_type: str) -> None:
    """The L3-wide rules: IPv4 L3, one CIDR and gateway for all Normal ranges, no overlap."""
    if l3.ipVersion != 4:
        raise invalid(f"L3 network {l3.uuid} has ipVersion {l3.ipVersion}; only IPv4 ranges are supported")
    existing = list(s.scalars(select(IpRange).where(IpRange.l3NetworkUuid == l3.uuid)
                              .order_by(IpRange.startIpInLong)))
    for spec in specs:
        label = f"IP range [{spec.start_ip}, {spec.end_ip}]"
        if range_type == "Normal" and spec.gateway is None:
            raise invalid(f"{label}: gateway is required")
        for r in existing:
            if range_type == "Normal" and r.ipRangeType == "Normal":
                if r.networkCidr != spec.cidr:
                    raise invalid(f"{label} is in network {spec.cidr}, but the ranges of L3 network {l3.uuid} "
                                  f"are in network {r.networkCidr}; all ranges of an L3 network share one "
                                  f"network CIDR")
                if r.gateway != spec.gateway:
                    raise invalid(f"{label} has gateway {spec.gateway}, but the ranges of L3 network {l3.uuid} "
                                  f"use gateway {r.gateway}; all ranges of an L3 network share one gateway")
            if overlaps(spec.start, spec.end, r.startIpInLong, r.endIpInLong):
                raise invalid(f"{label} overlaps IP range {r.name}[uuid:{r.uuid}, {r.startIp}-{r.endIp}] of "
                              f"L3 network {l3.uuid}")


def _range_specs(msg: Msg) -> list[RangeSpec]:
    if msg.get("networkCidr") is not None:
        return ranges_from_cidr(msg.networkCidr, msg.get("gateway"))
    return [validate_range(msg.startIp, msg.endIp, msg.netmask, msg.get("gateway"))]


def _check_add_range(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    specs = _range_specs(msg)
    with ctx.db.ro() as s:
        l3 = get_or_404(s, L3Network, msg.l3NetworkUuid)
        _check_against_l3(s, l3, specs, msg.get("ipRangeType") or "Normal")


def _add_ranges(ctx: ApiContext, msg: Msg) -> list[dict]:
    specs = _range_specs(msg)
    range_type = msg.get("ipRangeType") or "Normal"
    with ctx.db.tx() as s:
        l3 = get_or_404(s, L3Network, msg.l3NetworkUuid)
        _check_against_l3(s, l3, specs, range_type)
        rows = []
        for i, spec in enumerate(specs):
            uuid = new_resource_uuid(msg) if i == 0 else new_resource_uuid({})
            r = IpRange(uuid=uuid, l3NetworkUuid=l3.uuid, name=msg.name, description=msg.get("description"),
                        startIp=spec.start_ip, endIp=spec.end_ip, netmask=spec.netmask, gateway=spec.gateway,
                        networkCidr=spec.cidr, ipVersion=4, prefixLen=spec.prefix, ipRangeType=range_type,
                        startIpInLong=spec.start, endIpInLong=spec.end)
            s.add(r)
            add_tags(s, uuid, "IpRangeVO", msg)
            rows.append(r)
        s.flush()
        return to_inventories(s, rows)


@apis.handler("AddIpRange", check=_check_add_range, sync_key=_l3_key)
def add_ip_range(ctx: ApiContext, msg: Msg) -> dict:
    return {"inventory": _add_ranges(ctx, msg)[0]}


@apis.handler("AddIpRangeByNetworkCidr", check=_check_add_range, sync_key=_l3_key)
def add_ip_range_by_cidr(ctx: ApiContext, msg: Msg) -> dict:
    invs = _add_ranges(ctx, msg)
    return {"inventory": invs[0], "inventories": invs}


def _check_range(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, IpRange, msg.uuid)


@apis.handler("UpdateIpRange", check=_check_range, sync_key=_range_key)
def update_ip_range(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        r = get_or_404(s, IpRange, msg.uuid)
        for f in ("name", "description"):
            if msg.get(f) is not None:
                setattr(r, f, msg[f])
        s.flush()
        return {"inventory": to_inventory(s, r)}


def delete_ip_range(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Cascade to the NICs using its IPs, then delete its remaining UsedIps and the range."""
    cascade(ctx, IpRange, uuid, mode)
    with ctx.db.tx() as s:
        r = s.get(IpRange, uuid)
        if r is None:
            return
        s.execute(delete(UsedIp).where(UsedIp.ipRangeUuid == uuid))
        forget_resource(s, uuid)
        s.delete(r)


@apis.handler("DeleteIpRange", check=_check_range, sync_key=_range_key)
def api_delete_ip_range(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, IpRange, msg.uuid)
    delete_ip_range(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- GetFreeIp, GetIpAddressCapacity ------------------------------------------------------------

def _check_free_ip(ctx: ApiContext, msg: Msg) -> None:
    _check_ip_version(msg.get("ipVersion"))
    if msg.get("l3NetworkUuid") is None and msg.get("ipRangeUuid") is None:
        raise invalid("GetFreeIp needs l3NetworkUuid or ipRangeUuid")
    if msg.get("start"):
        parse_ipv4(msg.start, "start")
    limit = msg.get("limit")
    if limit is not None and not 0 <= limit <= MAX_FREE_IPS:
        raise invalid(f"limit must be between 0 and {MAX_FREE_IPS}, got {limit}")


@apis.handler("GetFreeIp", check=_check_free_ip)
def get_free_ip(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        if msg.get("ipRangeUuid") and msg.get("l3NetworkUuid"):
            r = get_or_404(s, IpRange, msg.ipRangeUuid)
            if r.l3NetworkUuid != msg.l3NetworkUuid:
                raise invalid(f"IP range {r.uuid} does not belong to L3 network {msg.l3NetworkUuid}")
        free = ipam.free_ips(s, l3_uuid=msg.get("l3NetworkUuid"), range_uuid=msg.get("ipRangeUuid"),
                             start=msg.get("start") or None,
                             limit=100 if msg.get("limit") is None else msg.limit,
                             range_type=msg.get("ipRangeType"))
    return {"inventories": free}


_CAPACITY_SCOPES: list[tuple[str, str, Any, type]] = [
    # (message field, resourceType, grouping column, model checked for existence)
    ("ipRangeUuids", "IpRangeVO", IpRange.uuid, IpRange),
    ("l3NetworkUuids", "L3NetworkVO", IpRange.l3NetworkUuid, L3Network),
    ("zoneUuids", "ZoneVO", L3Network.zoneUuid, Zone),
]


def _capacity_fields(by_version: dict[int, list[int]]) -> dict[str, int]:
    v4t, v4u = by_version.get(4, [0, 0])
    v6t, v6u = by_version.get(6, [0, 0])
    return {"totalCapacity": v4t + v6t, "availableCapacity": v4t - v4u + v6t - v6u,
            "usedIpAddressNumber": v4u + v6u,
            "ipv4TotalCapacity": v4t, "ipv4AvailableCapacity": v4t - v4u, "ipv4UsedIpAddressNumber": v4u,
            "ipv6TotalCapacity": v6t, "ipv6AvailableCapacity": v6t - v6u, "ipv6UsedIpAddressNumber": v6u}


def ip_capacity(s: Session, group: Any = None, uuids: list[str] | None = None, caller: Caller = SYSTEM,
                ) -> dict[str | None, dict[int, list[int]]]:
    """{group key: {ipVersion: [total, used]}} from two SQL aggregates over ranges and used IPs.

    `group` is the grouping column (IpRange.uuid, IpRange.l3NetworkUuid or L3Network.zoneUuid),
    restricted to `uuids`; None aggregates everything under the key None. Only the L3 networks
    `caller` may see count.
    """
    seen = ownership.visible(L3Network, caller) or []
    size = IpRange.endIpInLong - IpRange.startIpInLong + 1
    keys = [group] if group is not None else []
    totals = select(*keys, IpRange.ipVersion, func.sum(size)).join(
        L3Network, L3Network.uuid == IpRange.l3NetworkUuid)
    used = select(*keys, IpRange.ipVersion, func.count(UsedIp.uuid)).select_from(UsedIp).join(
        IpRange, IpRange.uuid == UsedIp.ipRangeUuid).join(L3Network, L3Network.uuid == IpRange.l3NetworkUuid)
    totals, used = totals.where(*seen), used.where(*seen)
    if group is not None:
        totals = totals.where(group.in_(uuids or []))
        used = used.where(group.in_(uuids or []))
    totals = totals.group_by(*keys, IpRange.ipVersion)
    used = used.group_by(*keys, IpRange.ipVersion)
    out: dict[str | None, dict[int, list[int]]] = {}
    for slot, q in ((0, totals), (1, used)):
        for row in s.execute(q):
            k = row[0] if group is not None else None
            ver, n = row[-2], row[-1]
            out.setdefault(k, {}).setdefault(int(ver), [0, 0])[slot] = int(n or 0)
    return out


@apis.handler("GetIpAddressCapacity")
def get_ip_capacity(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        for field, rtype, group, model in _CAPACITY_SCOPES:
            uuids = msg.get(field)
            if not uuids:
                continue
            for u in uuids:
                if s.get(model, u) is None:
                    raise not_found(rtype, u)
            per = ip_capacity(s, group, uuids, ctx.caller)
            data = [{"resourceUuid": u, **_capacity_fields(per.get(u, {}))} for u in uuids]
            total: dict[int, list[int]] = {}
            for versions in per.values():
                for ver, (t, n) in versions.items():
                    acc = total.setdefault(ver, [0, 0])
                    acc[0] += t
                    acc[1] += n
            return {**_capacity_fields(total), "capacityData": data, "resourceType": rtype}
        if not msg.get("all"):
            raise invalid("GetIpAddressCapacity needs zoneUuids, l3NetworkUuids or ipRangeUuids, or all=true")
        per = ip_capacity(s, caller=ctx.caller)
        return {**_capacity_fields(per.get(None, {})), "capacityData": [], "resourceType": None}


# ---- cascade edges ----------------------------------------------------------------------------

def _l3s_of_l2(s: Session, l2_uuid: str) -> list[str]:
    return list(s.scalars(select(L3Network.uuid).where(L3Network.l2NetworkUuid == l2_uuid)
                          .order_by(L3Network.uuid)))


def _ranges_of_l3(s: Session, l3_uuid: str) -> list[str]:
    return list(s.scalars(select(IpRange.uuid).where(IpRange.l3NetworkUuid == l3_uuid)
                          .order_by(IpRange.startIpInLong)))


dependent(L2Network, "L3NetworkVO", _l3s_of_l2, delete_l3)
dependent(L3Network, "IpRangeVO", _ranges_of_l3, delete_ip_range)
