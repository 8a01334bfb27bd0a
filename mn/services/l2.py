"""L2 networks: CreateL2NoVlanNetwork, CreateL2VlanNetwork, UpdateL2Network, DeleteL2Network,
AttachL2NetworkToCluster, DetachL2NetworkFromCluster (QueryL2Network and QueryL2VlanNetwork are
derived).

Invariants:
- In a zone, a physical interface carries at most one NoVlan L2, and a (physical interface, vlan)
  pair at most one Vlan L2 (ZStack's rules). Creates are serialised per zone.
- An L2 attached to a cluster has its bridge, protocol.bridge_name(l2, vlan), on every Connected
  host of the cluster: attach realises it on all of them concurrently or on none (a failing host
  rolls back the bridges already made and the attachment); a host that connects later gets the
  bridges of its cluster's L2s from the HOST_CONNECTED hook (idempotent on the agent).
- The attachment row is written before the bridges are made, so a host connecting meanwhile
  sees it; attach, detach, update and delete of one L2 run one at a time (sync key l2-<uuid>).
- Detach and delete remove rows first, then bridges best effort (a failure is only logged).
- No database transaction is held across an agent call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kvmagent.protocol import BridgeCmd, CreateBridgeCmd, CreateVlanBridgeCmd, DeleteBridgeCmd, bridge_name
from mn import extensions
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade, dependent
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.errors import OPERATION_ERROR, ApiError, invalid, wrap
from mn.flow import Flow, Step, register_flow
from mn.inventory import to_inventory
from mn.models import Cluster, Host, L2Network, L2NetworkClusterRef, L3Network, VmInstance, VmNic, Zone
from mn.services.common import (
    add_tags,
    apply_update,
    check_exists,
    forget_resource,
    get_or_404,
    inventory,
    new_resource_uuid,
)
from mn.services.host import agent_url

log = logging.getLogger(__name__)

NO_VLAN, VLAN = "L2NoVlanNetwork", "L2VlanNetwork"
MAX_PARALLEL = 32  # concurrent agent calls of one attach/detach
GONE_VM_STATES = ("Destroyed", "Expunging")


@dataclass(frozen=True)
class L2View:
    """What bridge commands need of an L2, usable after its session (or row) is gone."""

    uuid: str
    name: str
    type: str
    vlan: int | None
    physicalInterface: str


def _view(l2: L2Network) -> L2View:
    return L2View(l2.uuid, l2.name, l2.type, l2.vlan, l2.physicalInterface)


def _key(msg: Msg) -> str:
    return f"l2-{msg.get('l2NetworkUuid') or msg.get('uuid')}"


# ---- bridges on hosts -------------------------------------------------------------------------

def _bridge_cmd(cls: type[BridgeCmd], l2: L2View, host_uuid: str) -> BridgeCmd:
    return cls(physicalInterfaceName=l2.physicalInterface, bridgeName=bridge_name(l2.uuid, l2.vlan),
               l2NetworkUuid=l2.uuid, vlan=l2.vlan, hostUuid=host_uuid)


def _create_cls(l2: L2View) -> type[BridgeCmd]:
    return CreateVlanBridgeCmd if l2.type == VLAN else CreateBridgeCmd


def _connected_hosts(s: Session, cluster_uuids: list[str]) -> list[tuple[str, str, str]]:
    """(uuid, name, agentUrl) of the Connected hosts of the clusters."""
    if not cluster_uuids:
        return []
    rows = s.execute(select(Host.uuid, Host.name, Host.agentUrl, Host.managementIp)
                     .where(Host.clusterUuid.in_(cluster_uuids), Host.status == CONNECTED)
                     .order_by(Host.uuid)).all()
    return [(r.uuid, r.name, agent_url(r)) for r in rows]


def _fan_out(hosts: list[tuple[str, str, str]], fn: Callable[[str, str], None],
             ) -> list[tuple[tuple[str, str, str], ApiError | None]]:
    """Run fn(host_uuid, agent_url) on every host concurrently; (host, error or None) per host."""
    if not hosts:
        return []

    def one(h: tuple[str, str, str]) -> ApiError | None:
        try:
            fn(h[0], h[2])
            return None
        except Exception as exc:  # noqa: BLE001
            return wrap(exc)

    if len(hosts) == 1:
        return [(hosts[0], one(hosts[0]))]
    with ThreadPoolExecutor(min(MAX_PARALLEL, len(hosts)), thread_name_prefix="l2-bridge") as pool:
        return list(zip(hosts, pool.map(one, hosts), strict=True))


def delete_bridges(ctx: ApiContext, l2: L2View, hosts: list[tuple[str, str, str]]) -> None:
    """Best effort: a host that fails keeps a stale bridge, which is logged and harmless."""
    def rm(host_uuid: str, url: str) -> None:
        ctx.agents.send(url, _bridge_cmd(DeleteBridgeCmd, l2, host_uuid))

    for (uuid, name, _), err in _fan_out(hosts, rm):
        if err is not None:
            log.warning("could not delete bridge %s of L2 network %s on host %s (%s): %s",
                        bridge_name(l2.uuid, l2.vlan), l2.uuid, uuid, name, err.details)


def create_bridges(ctx: ApiContext, l2: L2View, hosts: list[tuple[str, str, str]]) -> None:
    """Create the L2's bridge on every host, or on none: on any failure the bridges made are
    deleted again and the first host's error is raised."""
    cls = _create_cls(l2)

    def mk(host_uuid: str, url: str) -> None:
        ctx.agents.send(url, _bridge_cmd(cls, l2, host_uuid))

    results = _fan_out(hosts, mk)
    failed = [(h, e) for h, e in results if e is not None]
    if not failed:
        return
    delete_bridges(ctx, l2, [h for h, e in results if e is None])
    (uuid, name, _), err = failed[0]
    more = f" ({len(failed) - 1} more hosts failed too)" if len(failed) > 1 else ""
    raise ApiError(err.code, f"failed to create bridge {bridge_name(l2.uuid, l2.vlan)} of L2 network "
                             f"{l2.uuid} on host {name}[uuid:{uuid}]{more}: {err.details}", cause=err)


# ---- create / update ----------------------------------------------------------------------------

def _duplicate(s: Session, zone_uuid: str, interface: str, vlan: int | None) -> L2Network | None:
    q = select(L2Network).where(L2Network.zoneUuid == zone_uuid, L2Network.physicalInterface == interface)
    q = q.where(L2Network.type == VLAN, L2Network.vlan == vlan) if vlan is not None else \
        q.where(L2Network.type == NO_VLAN)
    return s.scalars(q.limit(1)).first()


def _check_unique(s: Session, msg: Msg, vlan: int | None) -> None:
    dup = _duplicate(s, msg.zoneUuid, msg.physicalInterface, vlan)
    if dup is None:
        return
    if vlan is None:
        raise invalid(f"there is already a no-VLAN L2 network {dup.name}[uuid:{dup.uuid}] on physical "
                      f"interface {msg.physicalInterface} in zone {msg.zoneUuid}")
    raise invalid(f"there is already an L2 VLAN network {dup.name}[uuid:{dup.uuid}] with vlan {vlan} on "
                  f"physical interface {msg.physicalInterface} in zone {msg.zoneUuid}")


def _check_create(expected_type: str) -> Callable[[ApiContext, Msg], None]:
    def check(ctx: ApiContext, msg: Msg) -> None:
        if msg.get("type") not in (None, expected_type):
            raise invalid(f"type must be {expected_type} for this API, got {msg.type!r}")
        if msg.get("vSwitchType") not in (None, "LinuxBridge"):
            raise invalid(f"vSwitchType {msg.vSwitchType} is not supported; only LinuxBridge is")
        if not msg.physicalInterface.strip():
            raise invalid("physicalInterface must not be empty")
        new_resource_uuid(msg)
        with ctx.db.ro() as s:
            get_or_404(s, Zone, msg.zoneUuid)
            _check_unique(s, msg, msg.get("vlan"))

    return check


def _create(ctx: ApiContext, msg: Msg, l2_type: str, vlan: int | None) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        get_or_404(s, Zone, msg.zoneUuid)
        _check_unique(s, msg, vlan)
        l2 = L2Network(uuid=uuid, name=msg.name, description=msg.get("description"), zoneUuid=msg.zoneUuid,
                       physicalInterface=msg.physicalInterface, type=l2_type, vSwitchType="LinuxBridge",
                       virtualNetworkId=vlan or 0, isolated=bool(msg.get("isolated")), pvlan=msg.get("pvlan"),
                       vlan=vlan)
        s.add(l2)
        add_tags(s, uuid, "L2NetworkVO", msg)
        s.flush()
        return {"inventory": to_inventory(s, l2)}


@apis.handler("CreateL2NoVlanNetwork", check=_check_create(NO_VLAN), sync_key=key_of("zoneUuid", "l2-zone"))
def create_l2_novlan(ctx: ApiContext, msg: Msg) -> dict:
    return _create(ctx, msg, NO_VLAN, None)


@apis.handler("CreateL2VlanNetwork", check=_check_create(VLAN), sync_key=key_of("zoneUuid", "l2-zone"))
def create_l2_vlan(ctx: ApiContext, msg: Msg) -> dict:
    return _create(ctx, msg, VLAN, msg.vlan)


def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, L2Network, msg.uuid)


@apis.handler("UpdateL2Network", check=_check, sync_key=_key)
def update_l2(ctx: ApiContext, msg: Msg) -> dict:
    return apply_update(ctx, L2Network, msg, ("name", "description"))


# ---- attach / detach ----------------------------------------------------------------------------

def _ref(s: Session, l2_uuid: str, cluster_uuid: str) -> L2NetworkClusterRef | None:
    return s.scalars(select(L2NetworkClusterRef).where(L2NetworkClusterRef.l2NetworkUuid == l2_uuid,
                                                       L2NetworkClusterRef.clusterUuid == cluster_uuid)).first()


def _check_attachable(s: Session, l2_uuid: str, cluster_uuid: str) -> None:
    l2 = get_or_404(s, L2Network, l2_uuid)
    c = get_or_404(s, Cluster, cluster_uuid)
    if l2.zoneUuid != c.zoneUuid:
        raise invalid(f"L2 network {l2.name}[uuid:{l2.uuid}] is in zone {l2.zoneUuid} but cluster "
                      f"{c.name}[uuid:{c.uuid}] is in zone {c.zoneUuid}; they must be in the same zone")
    if _ref(s, l2_uuid, cluster_uuid) is not None:
        raise invalid(f"L2 network {l2.name}[uuid:{l2.uuid}] is already attached to cluster "
                      f"{c.name}[uuid:{c.uuid}]")


def _check_attach(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        _check_attachable(s, msg.l2NetworkUuid, msg.clusterUuid)


def _insert_ref(ctx: ApiContext, d: dict) -> None:
    with ctx.db.tx() as s:
        _check_attachable(s, d["l2"], d["cluster"])
        s.add(L2NetworkClusterRef(l2NetworkUuid=d["l2"], clusterUuid=d["cluster"],
                                  l2ProviderType=d.get("provider") or "LinuxBridge"))
    d["refCreated"] = True


def _delete_ref(ctx: ApiContext, d: dict) -> None:
    if not d.get("refCreated"):
        return
    with ctx.db.tx() as s:
        s.execute(delete(L2NetworkClusterRef).where(L2NetworkClusterRef.l2NetworkUuid == d["l2"],
                                                    L2NetworkClusterRef.clusterUuid == d["cluster"]))


def _realize(ctx: ApiContext, d: dict) -> None:
    with ctx.db.ro() as s:
        l2 = _view(get_or_404(s, L2Network, d["l2"]))
        hosts = _connected_hosts(s, [d["cluster"]])
    create_bridges(ctx, l2, hosts)


def _unrealize(ctx: ApiContext, d: dict) -> None:
    """Delete the bridge on the cluster's Connected hosts (also when the step was cut short)."""
    with ctx.db.ro() as s:
        row = s.get(L2Network, d["l2"])
        if row is None:
            return
        l2, hosts = _view(row), _connected_hosts(s, [d["cluster"]])
    delete_bridges(ctx, l2, hosts)


@register_flow("attach-l2-to-cluster")
def attach_flow() -> Flow:
    return Flow("attach-l2-to-cluster", [
        Step("insert-ref", _insert_ref, _delete_ref),
        Step("create-bridges", _realize, _unrealize),
    ])


@apis.handler("AttachL2NetworkToCluster", check=_check_attach, sync_key=_key)
def attach_l2(ctx: ApiContext, msg: Msg) -> dict:
    ctx.run_flow(attach_flow(), {"l2": msg.l2NetworkUuid, "cluster": msg.clusterUuid,
                                 "provider": msg.get("l2ProviderType")})
    return {"inventory": inventory(ctx, L2Network, msg.l2NetworkUuid)}


def _nics_in_cluster(s: Session, l2_uuid: str, cluster_uuid: str) -> list[tuple[str, str]]:
    """(VM uuid, NIC uuid) of live VMs of the cluster with a NIC on an L3 of the L2 (up to 5)."""
    return [tuple(r) for r in s.execute(
        select(VmInstance.uuid, VmNic.uuid)
        .join(VmNic, VmNic.vmInstanceUuid == VmInstance.uuid)
        .join(L3Network, L3Network.uuid == VmNic.l3NetworkUuid)
        .where(L3Network.l2NetworkUuid == l2_uuid, VmInstance.clusterUuid == cluster_uuid,
               VmInstance.state.not_in(GONE_VM_STATES))
        .limit(5)).all()]


def detach(ctx: ApiContext, l2_uuid: str, cluster_uuid: str, force: bool = False) -> None:
    """Remove the attachment (refused while VMs of the cluster use the L2, unless force), then
    delete the bridges on the cluster's Connected hosts best effort."""
    with ctx.db.tx() as s:
        l2 = get_or_404(s, L2Network, l2_uuid)
        ref = _ref(s, l2_uuid, cluster_uuid)
        if ref is None:
            if force:
                return
            raise invalid(f"L2 network {l2.name}[uuid:{l2_uuid}] is not attached to cluster {cluster_uuid}")
        if not force:
            users = _nics_in_cluster(s, l2_uuid, cluster_uuid)
            if users:
                vms = sorted({vm for vm, _ in users})
                raise ApiError(OPERATION_ERROR,
                               f"cannot detach L2 network {l2.name}[uuid:{l2_uuid}] from cluster {cluster_uuid}: "
                               f"VMs {vms} of the cluster have NICs on its L3 networks; delete those NICs "
                               f"or VMs first")
        s.delete(ref)
        view = _view(l2)
        hosts = _connected_hosts(s, [cluster_uuid])
    delete_bridges(ctx, view, hosts)


def _check_detach(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        l2 = get_or_404(s, L2Network, msg.l2NetworkUuid)
        get_or_404(s, Cluster, msg.clusterUuid)
        if _ref(s, msg.l2NetworkUuid, msg.clusterUuid) is None:
            raise invalid(f"L2 network {l2.name}[uuid:{l2.uuid}] is not attached to cluster {msg.clusterUuid}")


@apis.handler("DetachL2NetworkFromCluster", check=_check_detach, sync_key=_key)
def detach_l2(ctx: ApiContext, msg: Msg) -> dict:
    detach(ctx, msg.l2NetworkUuid, msg.clusterUuid)
    return {"inventory": inventory(ctx, L2Network, msg.l2NetworkUuid)}


# ---- delete -----------------------------------------------------------------------------------

def delete_l2(ctx: ApiContext, uuid: str, mode: str) -> None:
    """Cascade to the L3 networks, delete the L2 and its attachments, then its bridges (best
    effort) on the Connected hosts of the clusters it was attached to."""
    cascade(ctx, L2Network, uuid, mode)
    with ctx.db.tx() as s:
        l2 = s.get(L2Network, uuid)
        if l2 is None:
            return
        clusters = list(s.scalars(select(L2NetworkClusterRef.clusterUuid)
                                  .where(L2NetworkClusterRef.l2NetworkUuid == uuid)))
        hosts = _connected_hosts(s, clusters)
        view = _view(l2)
        s.execute(delete(L2NetworkClusterRef).where(L2NetworkClusterRef.l2NetworkUuid == uuid))
        forget_resource(s, uuid)
        s.delete(l2)
    delete_bridges(ctx, view, hosts)


@apis.handler("DeleteL2Network", check=_check, sync_key=_key)
def api_delete_l2(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, L2Network, msg.uuid)
    delete_l2(ctx, msg.uuid, msg.deleteMode)
    return {}


# ---- hooks and cascade edges --------------------------------------------------------------------

def on_host_connected(ctx: ApiContext, host_uuid: str) -> None:
    """Create the bridges of every L2 attached to the host's cluster (idempotent on the agent);
    a failure fails the host's connect."""
    with ctx.db.ro() as s:
        host = s.get(Host, host_uuid)
        if host is None:
            return
        url = agent_url(host)
        l2s = [_view(r) for r in s.scalars(
            select(L2Network).join(L2NetworkClusterRef, L2NetworkClusterRef.l2NetworkUuid == L2Network.uuid)
            .where(L2NetworkClusterRef.clusterUuid == host.clusterUuid).order_by(L2Network.uuid))]
    for l2 in l2s:
        try:
            ctx.agents.send(url, _bridge_cmd(_create_cls(l2), l2, host_uuid))
        except ApiError as err:
            raise ApiError(err.code, f"failed to create bridge {bridge_name(l2.uuid, l2.vlan)} of L2 network "
                                     f"{l2.name}[uuid:{l2.uuid}] on host {host_uuid}: {err.details}",
                           cause=err) from None


extensions.HOST_CONNECTED.register(on_host_connected)


def _l2s_of_zone(s: Session, zone_uuid: str) -> list[str]:
    return list(s.scalars(select(L2Network.uuid).where(L2Network.zoneUuid == zone_uuid).order_by(L2Network.uuid)))


def _attachments_of_cluster(s: Session, cluster_uuid: str) -> list[str]:
    """Attachment ids `<l2NetworkUuid>:<clusterUuid>` (the deleter needs both)."""
    return [f"{u}:{cluster_uuid}" for u in s.scalars(
        select(L2NetworkClusterRef.l2NetworkUuid).where(L2NetworkClusterRef.clusterUuid == cluster_uuid)
        .order_by(L2NetworkClusterRef.l2NetworkUuid))]


def _detach_attachment(ctx: ApiContext, ref_id: str, mode: str) -> None:
    l2_uuid, _, cluster_uuid = ref_id.partition(":")
    with ctx.db.ro() as s:
        if s.get(L2Network, l2_uuid) is None:
            return
    detach(ctx, l2_uuid, cluster_uuid, force=True)


dependent(Zone, "L2NetworkVO", _l2s_of_zone, delete_l2)
dependent(Cluster, "L2NetworkClusterRefVO(l2Network:cluster)", _attachments_of_cluster, _detach_attachment)
