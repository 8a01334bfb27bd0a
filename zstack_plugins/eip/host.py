"""EIPs on hosts: what is applied where, and how EIPs follow their VMs.

Invariant: an EIP is applied on a host exactly while it is *active* — attached to a NIC of a VM
that runs (Running or Paused) on that host, with the EIP and its VIP both Enabled. The APIs keep
it (attach, detach, state changes, delete) and so do the VM hooks registered here: applied before
a VM starts on a host or migrates to it (VM_BEFORE_START), removed when the start fails, when the
VM stops or is destroyed, and on the source host after a migration (VM_RELEASE_NETWORK); a host
that (re)connects gets the EIPs of the VMs it runs applied again (the command is idempotent).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from kvmagent.protocol import bridge_name
from mn import extensions
from mn.context import ApiContext
from mn.errors import invalid
from mn.models import Host, L2Network, L2NetworkClusterRef, L3Network, VmInstance, VmNic
from mn.services.vm_common import PAUSED, RUNNING, host_url
from zstack_plugins.eip.models import Eip, Vip
from zstack_plugins.eip.protocol import ApplyEipCmd, DeleteEipCmd, EipTO

ENABLED = "Enabled"


def _l2_of(s: Session, l3_uuid: str) -> L2Network:
    return s.get(L2Network, s.get(L3Network, l3_uuid).l2NetworkUuid)


def check_vip_l2_on_cluster(s: Session, vip: Vip, cluster_uuid: str | None) -> None:
    """A flat EIP needs the VIP's (public) L2 network on the host: attached to the VM's cluster."""
    if cluster_uuid is None:
        return
    l2 = _l2_of(s, vip.l3NetworkUuid)
    if not s.scalar(select(L2NetworkClusterRef.id).where(L2NetworkClusterRef.l2NetworkUuid == l2.uuid,
                                                         L2NetworkClusterRef.clusterUuid == cluster_uuid)):
        raise invalid(f"the L2 network {l2.uuid} of VipVO[uuid:{vip.uuid}] is not attached to cluster "
                      f"{cluster_uuid}: a flat network EIP needs the VIP's network on the VM's host")


def eip_to(s: Session, eip: Eip, nic: VmNic | None = None) -> EipTO:
    """The transfer object of an attached EIP (`nic` when not yet flushed to eip.vmNicUuid)."""
    nic = nic or s.get(VmNic, eip.vmNicUuid)
    vip = s.get(Vip, eip.vipUuid)
    guest_l2, vip_l2 = _l2_of(s, nic.l3NetworkUuid), _l2_of(s, vip.l3NetworkUuid)
    return EipTO(eipUuid=eip.uuid, vip=vip.ip, guestIp=nic.ip or "", nicMac=nic.mac,
                 guestBridgeName=bridge_name(guest_l2.uuid, guest_l2.vlan),
                 vipBridgeName=bridge_name(vip_l2.uuid, vip_l2.vlan), vmUuid=nic.vmInstanceUuid)


def active_host(s: Session, eip: Eip, *, eip_state: str | None = None, vip_state: str | None = None,
                ) -> str | None:
    """The host the EIP is applied on, or None when it is not active; `eip_state`/`vip_state`
    ask what it would be with those states (a state change about to be made)."""
    if eip.vmNicUuid is None or (eip_state or eip.state) != ENABLED:
        return None
    vip = s.get(Vip, eip.vipUuid)
    nic = s.get(VmNic, eip.vmNicUuid)
    vm = s.get(VmInstance, nic.vmInstanceUuid) if nic is not None and nic.vmInstanceUuid else None
    if vip is None or (vip_state or vip.state) != ENABLED or vm is None or vm.state not in (RUNNING, PAUSED):
        return None
    return vm.hostUuid


# Built once: every VM start asks it.
_VM_EIPS = (select(Eip).join(VmNic, VmNic.uuid == Eip.vmNicUuid).join(Vip, Vip.uuid == Eip.vipUuid)
            .where(VmNic.vmInstanceUuid == bindparam("vm"), Eip.state == ENABLED, Vip.state == ENABLED)
            .order_by(Eip.uuid))


def _vm_eips(s: Session, vm_uuid: str) -> list[Eip]:
    return list(s.scalars(_VM_EIPS, {"vm": vm_uuid}))


def move(ctx: ApiContext, to: EipTO | None, before: str | None, after: str | None) -> None:
    """An EIP whose active host changes from `before` to `after` (either may be None) is taken
    off the old host or applied on the new one."""
    if before and not after:
        send_delete(ctx, before, [to])
    elif after and not before:
        send_apply(ctx, after, [to])


def send_apply(ctx: ApiContext, host_uuid: str, eips: list[EipTO]) -> None:
    if not eips:
        return
    with ctx.db.ro() as s:
        url = host_url(s, host_uuid)
    ctx.agents.send(url, ApplyEipCmd(eips=eips, hostUuid=host_uuid))


def send_delete(ctx: ApiContext, host_uuid: str, eips: list[EipTO]) -> None:
    if not eips:
        return
    with ctx.db.ro() as s:
        url = host_url(s, host_uuid)
    ctx.agents.send(url, DeleteEipCmd(eips=eips, hostUuid=host_uuid))


# ---- VM and host hooks --------------------------------------------------------------------------

# Built once: every VM start asks it, and most VMs have no EIP.
_VM_HAS_EIP = (select(Eip.uuid).join(VmNic, VmNic.uuid == Eip.vmNicUuid)
               .where(VmNic.vmInstanceUuid == bindparam("vm")).limit(1))


def _vm_tos(ctx: ApiContext, vm_uuid: str, host_uuid: str, check_cluster: bool) -> list[EipTO]:
    with ctx.db.read() as conn:  # Core, no ORM session: the common answer is "none"
        if conn.execute(_VM_HAS_EIP, {"vm": vm_uuid}).first() is None:
            return []
    with ctx.db.ro() as s:
        eips = _vm_eips(s, vm_uuid)
        if eips and check_cluster:
            cluster = s.get(Host, host_uuid).clusterUuid
            for e in eips:
                check_vip_l2_on_cluster(s, s.get(Vip, e.vipUuid), cluster)
        return [eip_to(s, e) for e in eips]


def prepare_vm(ctx: ApiContext, vm_uuid: str, host_uuid: str) -> None:
    """VM_BEFORE_START: the VM's active EIPs are applied on the host it starts or migrates to."""
    send_apply(ctx, host_uuid, _vm_tos(ctx, vm_uuid, host_uuid, check_cluster=True))


def release_vm(ctx: ApiContext, vm_uuid: str, host_uuid: str) -> None:
    """VM_RELEASE_NETWORK: the VM's EIPs are removed from the host it left (idempotent)."""
    send_delete(ctx, host_uuid, _vm_tos(ctx, vm_uuid, host_uuid, check_cluster=False))


def host_connected(ctx: ApiContext, host_uuid: str) -> None:
    """HOST_CONNECTED: the active EIPs of the VMs placed on the host are applied (again)."""
    with ctx.db.ro() as s:
        eips = list(s.scalars(
            select(Eip).join(VmNic, VmNic.uuid == Eip.vmNicUuid).join(Vip, Vip.uuid == Eip.vipUuid)
            .join(VmInstance, VmInstance.uuid == VmNic.vmInstanceUuid)
            .where(VmInstance.hostUuid == host_uuid, VmInstance.state.in_((RUNNING, PAUSED)),
                   Eip.state == ENABLED, Vip.state == ENABLED).order_by(Eip.uuid)))
        tos = [eip_to(s, e) for e in eips]
    send_apply(ctx, host_uuid, tos)


extensions.VM_BEFORE_START.register(prepare_vm)
extensions.VM_RELEASE_NETWORK.register(release_vm)
extensions.HOST_CONNECTED.register(host_connected)
