"""VM NICs: AttachL3NetworkToVm, DetachL3NetworkFromVm, SetVmStaticIp.

A NIC and its IP are created in one transaction; on a running VM the NIC is then hot-plugged
through the agent, and a failure there deletes both again.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from kvmagent.protocol import AttachNicCmd, DetachNicCmd
from mn import ipam
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade
from mn.context import ApiContext
from mn.db.base import new_uuid
from mn.errors import ApiError, invalid
from mn.models import L2NetworkClusterRef, L3Network, SystemTag, UsedIp, VmInstance, VmNic
from mn.services.common import check_exists, get_or_404, inventory
from mn.services.vm_common import CREATED, PAUSED, RUNNING, STOPPED, host_url, nic_tos

NIC_STATES = (RUNNING, STOPPED, PAUSED, CREATED)


def _check_attach(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, VmInstance, msg.vmInstanceUuid)
    check_exists(ctx, L3Network, msg.l3NetworkUuid)


@apis.handler("AttachL3NetworkToVm", check=_check_attach, sync_key=key_of("vmInstanceUuid", "vm"))
def attach_l3(ctx: ApiContext, msg: Msg) -> dict:
    nic_uuid = new_uuid()
    with ctx.db.tx() as s:
        vm = get_or_404(s, VmInstance, msg.vmInstanceUuid)
        l3 = get_or_404(s, L3Network, msg.l3NetworkUuid)
        if vm.state not in NIC_STATES:
            raise ApiError("VM.1001", f"cannot attach an L3 network to VmInstanceVO[uuid:{vm.uuid}] in state "
                                      f"{vm.state}")
        if l3.state != "Enabled":
            raise invalid(f"L3NetworkVO[uuid:{l3.uuid}] is {l3.state}")
        if s.scalar(select(VmNic.uuid).where(VmNic.vmInstanceUuid == vm.uuid, VmNic.l3NetworkUuid == l3.uuid)):
            raise invalid(f"VmInstanceVO[uuid:{vm.uuid}] is already on L3NetworkVO[uuid:{l3.uuid}]")
        if vm.clusterUuid and not s.scalar(select(L2NetworkClusterRef.id).where(
                L2NetworkClusterRef.l2NetworkUuid == l3.l2NetworkUuid,
                L2NetworkClusterRef.clusterUuid == vm.clusterUuid)):
            raise invalid(f"the L2 network of L3NetworkVO[uuid:{l3.uuid}] is not attached to the VM's "
                          f"cluster {vm.clusterUuid}")
        device = s.scalar(select(func.coalesce(func.max(VmNic.deviceId) + 1, 0))
                          .where(VmNic.vmInstanceUuid == vm.uuid))
        nic = VmNic(uuid=nic_uuid, vmInstanceUuid=vm.uuid, l3NetworkUuid=l3.uuid,
                    mac=msg.get("customMac") or ipam.new_mac(), hypervisorType=vm.hypervisorType,
                    deviceId=device, internalName=f"vnic{vm.internalId}.{device}",
                    driverType=msg.get("driverType") or "virtio")
        s.add(nic)
        s.flush()
        used = ipam.allocate_ip(s, l3.uuid, ip=msg.get("staticIp"), nic_uuid=nic_uuid, used_for="Vip")
        nic.usedIpUuid, nic.ip, nic.netmask, nic.gateway = used.uuid, used.ip, used.netmask, used.gateway
        if vm.defaultL3NetworkUuid is None:
            vm.defaultL3NetworkUuid = l3.uuid
        running = vm.state in (RUNNING, PAUSED) and vm.hostUuid
        host_uuid = vm.hostUuid
        s.flush()
        to = nic_tos(s, [nic])[0]
        url = host_url(s, host_uuid) if running else None
    if url:
        try:
            ctx.agents.send(url, AttachNicCmd(vmUuid=msg.vmInstanceUuid, nic=to, hostUuid=host_uuid))
        except BaseException:
            with ctx.db.tx() as s:
                _drop_nic(s, nic_uuid)
            raise
    return {"inventory": inventory(ctx, VmInstance, msg.vmInstanceUuid)}


def _drop_nic(s, nic_uuid: str) -> None:  # noqa: ANN001
    nic = s.get(VmNic, nic_uuid)
    if nic is None:
        return
    s.execute(delete(UsedIp).where(UsedIp.vmNicUuid == nic_uuid))
    s.execute(delete(VmNic).where(VmNic.uuid == nic_uuid))
    vm = s.get(VmInstance, nic.vmInstanceUuid) if nic.vmInstanceUuid else None
    if vm is not None and vm.defaultL3NetworkUuid == nic.l3NetworkUuid:
        other = s.scalar(select(VmNic.l3NetworkUuid).where(VmNic.vmInstanceUuid == vm.uuid)
                         .order_by(VmNic.deviceId).limit(1))
        vm.defaultL3NetworkUuid = other


def detach_nic(ctx: ApiContext, nic_uuid: str) -> str | None:
    """Hot-unplug (if the VM runs) and delete a NIC with its IP; returns the VM's uuid.

    What hangs on the NIC (its EIP, through the cascade declarations) is detached first."""
    cascade(ctx, VmNic, nic_uuid, "Permissive")
    with ctx.db.ro() as s:
        nic = get_or_404(s, VmNic, nic_uuid)
        vm = s.get(VmInstance, nic.vmInstanceUuid) if nic.vmInstanceUuid else None
        url = None
        if vm is not None and vm.state in (RUNNING, PAUSED) and vm.hostUuid:
            url = host_url(s, vm.hostUuid)
            to = nic_tos(s, [nic])[0]
        elif vm is not None and vm.state not in (STOPPED, CREATED, "Destroyed", RUNNING, PAUSED):
            raise ApiError("VM.1001", f"cannot detach a NIC of VmInstanceVO[uuid:{vm.uuid}] in state {vm.state}")
    if url:
        ctx.agents.send(url, DetachNicCmd(vmUuid=vm.uuid, nic=to, hostUuid=vm.hostUuid))
    with ctx.db.tx() as s:
        _drop_nic(s, nic_uuid)
    return vm.uuid if vm is not None else None


def _check_detach(ctx: ApiContext, msg: Msg) -> None:
    """The NIC exists; its VM's uuid is noted so the detach runs on the VM's queue."""
    with ctx.db.ro() as s:
        msg["_vmUuid"] = get_or_404(s, VmNic, msg.vmNicUuid).vmInstanceUuid


@apis.handler("DetachL3NetworkFromVm", check=_check_detach, sync_key=lambda msg: f"vm-{msg.get('_vmUuid')}")
def api_detach_l3(ctx: ApiContext, msg: Msg) -> dict:
    vm_uuid = detach_nic(ctx, msg.vmNicUuid)
    return {"inventory": inventory(ctx, VmInstance, vm_uuid)} if vm_uuid else {}


@apis.handler("SetVmStaticIp", check=_check_attach, sync_key=key_of("vmInstanceUuid", "vm"))
def api_set_static_ip(ctx: ApiContext, msg: Msg) -> dict:
    """Move the VM's NIC on that L3 to the given IP; it is also kept as a staticIp system tag."""
    ip = msg.get("ip")
    if not ip:
        raise invalid("SetVmStaticIp needs ip (IPv6 is not supported yet)")
    with ctx.db.tx() as s:
        nic = s.scalar(select(VmNic).where(VmNic.vmInstanceUuid == msg.vmInstanceUuid,
                                           VmNic.l3NetworkUuid == msg.l3NetworkUuid))
        if nic is None:
            raise invalid(f"VmInstanceVO[uuid:{msg.vmInstanceUuid}] has no NIC on "
                          f"L3NetworkVO[uuid:{msg.l3NetworkUuid}]")
        if nic.ip != ip:
            old = nic.usedIpUuid
            used = ipam.allocate_ip(s, msg.l3NetworkUuid, ip=ip, nic_uuid=nic.uuid, used_for="Vip")
            if old:
                ipam.release_ip(s, old)
            s.execute(update(VmNic).where(VmNic.uuid == nic.uuid).values(
                usedIpUuid=used.uuid, ip=used.ip, netmask=used.netmask, gateway=used.gateway))
        prefix = f"staticIp::{msg.l3NetworkUuid}::"
        s.execute(delete(SystemTag).where(SystemTag.resourceUuid == msg.vmInstanceUuid,
                                          SystemTag.tag.like(prefix + "%")))
        s.add(SystemTag(resourceUuid=msg.vmInstanceUuid, resourceType="VmInstanceVO", tag=prefix + ip,
                        type="System"))
    return {"inventory": inventory(ctx, VmInstance, msg.vmInstanceUuid)}
