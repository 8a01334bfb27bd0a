"""VM lifecycle after creation: start, stop, reboot, pause, resume, destroy, recover, expunge, migrate.

Every operation first moves the VM to its transitional state by compare-and-swap (from the states
OPERATIONS allows), and always leaves it in a stable state: the new one on success, the old one on
failure. Host CPU/memory is held only in HOLDING_STATES; a Stopped VM holds none (hostUuid NULL,
lastHostUuid remembered).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update

from kvmagent.protocol import (
    CreateEmptyVolumeCmd,
    CreateVolumeFromImageCmd,
    DeleteVolumeCmd,
    DestroyVmCmd,
    MigrateVmCmd,
    PauseVmCmd,
    RebootVmCmd,
    ResumeVmCmd,
    StopVmCmd,
    VolumeRsp,
)
from mn import extensions, quota, resource_types
from mn.allocator import host as host_alloc
from mn.allocator import primary_storage as ps_alloc
from mn.cascade import cascade
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.db.base import utcnow
from mn.errors import ApiError, invalid
from mn.flow import Flow, Step, register_flow
from mn.globalconfig import MEMORY_OVER_PROVISIONING, PS_OVER_PROVISIONING, VM_DELETION_POLICY
from mn.models import Host, Image, UsedIp, VmInstance, VmNic, Volume
from mn.services.common import forget_resource, get_or_404
from mn.services.vm_common import (
    DESTROYED,
    OPERATIONS,
    PAUSED,
    RUNNING,
    STOPPED,
    host_url,
    ps_url,
    state_error,
)


def reserved_memory(ctx: ApiContext, memory: int) -> int:
    return math.ceil(memory / ctx.gconf.get(MEMORY_OVER_PROVISIONING))


def begin(ctx: ApiContext, vm_uuid: str, op: str) -> VmInstance:
    """CAS the VM into the operation's transitional state; return the row as it was before."""
    allowed, transitional = OPERATIONS[op]
    with ctx.db.tx() as s:
        vm = get_or_404(s, VmInstance, vm_uuid)
        before = VmInstance(**{c.key: getattr(vm, c.key) for c in VmInstance.__table__.columns})
        res = s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid, VmInstance.state.in_(allowed))
                        .values(state=transitional))
        if res.rowcount != 1:
            raise state_error(vm, op)
    return before


def set_state(ctx: ApiContext, vm_uuid: str, state: str, **values: Any) -> None:
    with ctx.db.tx() as s:
        s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(state=state, **values))


def _agent_op(ctx: ApiContext, vm_uuid: str, op: str, make_cmd: Callable[[VmInstance], Any], final: str,
              after: Callable[[Any, VmInstance], None] | None = None) -> None:
    """transitional state → agent command → final state (or back to the old state on failure)."""
    vm = begin(ctx, vm_uuid, op)
    try:
        if vm.hostUuid:
            with ctx.db.ro() as s:
                url = host_url(s, vm.hostUuid)
            ctx.agents.send(url, make_cmd(vm))
    except BaseException:
        set_state(ctx, vm_uuid, vm.state)
        raise
    with ctx.db.tx() as s:
        s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(state=final))
        if after is not None:
            after(s, vm)


# ---- start ------------------------------------------------------------------------------------

def _st_begin(ctx: ApiContext, d: dict[str, Any]) -> None:
    d["prev"] = begin(ctx, d["vm"], "start").state


def _st_begin_rb(ctx: ApiContext, d: dict[str, Any]) -> None:
    if "prev" in d:
        set_state(ctx, d["vm"], d["prev"], hostUuid=None)


def _st_host(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.tx() as s:
        vm = s.get(VmInstance, d["vm"])
        root = s.get(Volume, vm.rootVolumeUuid) if vm.rootVolumeUuid else None
        l3s = list(s.scalars(select(VmNic.l3NetworkUuid).where(VmNic.vmInstanceUuid == vm.uuid)))
        ps_uuid = root.primaryStorageUuid if root is not None and root.status != "NotInstantiated" else None
        req = host_alloc.HostRequest(
            cpu=vm.cpuNum, memory=vm.memorySize, memory_ratio=ctx.gconf.get(MEMORY_OVER_PROVISIONING),
            zone_uuid=vm.zoneUuid, cluster_uuid=d.get("cluster") or (vm.clusterUuid if ps_uuid else None),
            host_uuid=d.get("host"), l3_uuids=l3s, ps_uuid=ps_uuid, vm_uuid=vm.uuid,
            strategy=vm.allocatorStrategy or host_alloc.DEFAULT)
        host_uuid = host_alloc.allocate(s, req)
        d["reserved"] = {"host": host_uuid, "cpu": req.cpu, "memory": req.reserved_memory}
        h = s.get(Host, host_uuid)
        s.execute(update(VmInstance).where(VmInstance.uuid == vm.uuid).values(
            hostUuid=host_uuid, clusterUuid=h.clusterUuid, zoneUuid=h.zoneUuid))


def _st_host_rb(ctx: ApiContext, d: dict[str, Any]) -> None:
    r = d.pop("reserved", None)
    with ctx.db.tx() as s:
        if r:
            host_alloc.release(s, r["host"], r["cpu"], r["memory"])
        s.execute(update(VmInstance).where(VmInstance.uuid == d["vm"]).values(hostUuid=None))


def instantiate_volume(ctx: ApiContext, vol_uuid: str, cluster_uuid: str, host_uuid: str | None,
                       d: dict[str, Any]) -> None:
    """Create a NotInstantiated volume on a primary storage of the cluster (reserving capacity).

    Records {"ps", "size", "ratio", "url", "path"} in d["instantiated"][vol_uuid] for rollback.
    """
    ratio = ctx.gconf.get(PS_OVER_PROVISIONING)
    with ctx.db.tx() as s:
        vol = s.get(Volume, vol_uuid)
        ps_uuid = ps_alloc.allocate(s, size=vol.size, ratio=ratio, cluster_uuid=cluster_uuid).uuid
        s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(
            primaryStorageUuid=ps_uuid, status="Creating", hostUuid=host_uuid))
    rec = {"ps": ps_uuid, "size": vol.size, "ratio": ratio, "host": host_uuid}
    d.setdefault("instantiated", {})[vol_uuid] = rec
    with ctx.db.ro() as s:
        url = ps_url(s, ps_uuid, host_uuid)
        if vol.type == "Root" and vol.rootImageUuid:
            image = s.get(Image, vol.rootImageUuid)
            vm = s.get(VmInstance, vol.vmInstanceUuid)
        else:
            image = None
    rec["url"] = url
    if image is not None and image.mediaType != "ISO":
        from mn.services.vm_create import image_source

        with ctx.db.ro() as s:
            source = image_source(s, image.uuid, vm.zoneUuid)
        with resource_types.fetch_credentials(ctx, source) as fetch:
            rsp = ctx.agents.send(url, CreateVolumeFromImageCmd(psUuid=ps_uuid, volumeUuid=vol_uuid,
                                                                imageUuid=image.uuid, size=vol.size,
                                                                hostUuid=host_uuid, **fetch), VolumeRsp)
    else:
        rsp = ctx.agents.send(url, CreateEmptyVolumeCmd(psUuid=ps_uuid, volumeUuid=vol_uuid, size=vol.size,
                                                        hostUuid=host_uuid), VolumeRsp)
    rec["path"] = rsp.installPath
    with ctx.db.tx() as s:
        s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(
            installPath=rsp.installPath, actualSize=rsp.actualSize, size=max(rsp.size, vol.size), status="Ready"))


def uninstantiate_volumes(ctx: ApiContext, d: dict[str, Any], forgotten: bool = False) -> None:
    """Roll back instantiate_volume for every volume recorded in d["instantiated"]. With
    `forgotten` (the caller deletes the volumes' rows next) a delete the agent fails becomes a
    garbage-collector job; otherwise it fails the rollback: the row stays, and a volume
    instantiated again at the same path must not be deleted by a late retry."""
    from mn.services import gc

    for vol_uuid, rec in list(d.get("instantiated", {}).items()):
        if rec.get("path"):
            cmd = DeleteVolumeCmd(psUuid=rec["ps"], installPath=rec["path"], hostUuid=rec["host"])
            if forgotten:
                gc.cleanup(ctx, rec["url"], cmd, gc.target("PrimaryStorage", rec["ps"], rec["host"]),
                           f"delete volume {vol_uuid} from primary storage {rec['ps']} (its creation failed)",
                           vol_uuid)
            else:
                ctx.agents.send(rec["url"], cmd)
        with ctx.db.tx() as s:
            ps_alloc.release(s, rec["ps"], rec["size"], rec["ratio"])
            s.execute(update(Volume).where(Volume.uuid == vol_uuid).values(
                primaryStorageUuid=None, installPath=None, status="NotInstantiated", hostUuid=None))
        del d["instantiated"][vol_uuid]


def _st_volumes(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.ro() as s:
        vm = s.get(VmInstance, d["vm"])
        pending = list(s.scalars(select(Volume.uuid).where(Volume.vmInstanceUuid == vm.uuid,
                                                           Volume.status == "NotInstantiated")))
        h = s.get(Host, d["reserved"]["host"])
    for vol_uuid in pending:
        instantiate_volume(ctx, vol_uuid, h.clusterUuid, None, d)


def _st_prepare(ctx: ApiContext, d: dict[str, Any]) -> None:
    extensions.VM_BEFORE_START.run(ctx, d["vm"], d["reserved"]["host"])


def _st_prepare_rb(ctx: ApiContext, d: dict[str, Any]) -> None:
    if "reserved" in d:
        extensions.VM_RELEASE_NETWORK.run(ctx, d["vm"], d["reserved"]["host"])


def release_network(ctx: ApiContext, vm_uuid: str, host_uuid: str | None) -> None:
    """The VM left `host_uuid` (stopped, destroyed, migrated away): undo its network services there."""
    if host_uuid:
        extensions.VM_RELEASE_NETWORK.run_logged(ctx, vm_uuid, host_uuid)


def _st_start(ctx: ApiContext, d: dict[str, Any]) -> None:
    from mn.services.vm_create import start_command

    with ctx.db.ro() as s:
        vm = s.get(VmInstance, d["vm"])
        cmd = start_command(s, vm)
        url = host_url(s, d["reserved"]["host"])
    ctx.agents.send(url, cmd)


def _st_start_rb(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.ro() as s:
        url = host_url(s, d["reserved"]["host"])
    ctx.agents.send(url, DestroyVmCmd(uuid=d["vm"], hostUuid=d["reserved"]["host"]))


def _st_finalize(ctx: ApiContext, d: dict[str, Any]) -> None:
    set_state(ctx, d["vm"], RUNNING, lastHostUuid=d["reserved"]["host"])


@register_flow("start-vm")
def start_flow() -> Flow:
    return Flow("start-vm", [
        Step("begin", _st_begin, _st_begin_rb),
        Step("allocate-host", _st_host, _st_host_rb),
        Step("instantiate-volumes", _st_volumes, uninstantiate_volumes),
        Step("prepare-net", _st_prepare, _st_prepare_rb),
        Step("start", _st_start, _st_start_rb),
        Step("finalize", _st_finalize),
    ])


def start_vm(ctx: ApiContext, vm_uuid: str, host_uuid: str | None = None, cluster_uuid: str | None = None,
             ) -> None:
    ctx.run_flow(start_flow(), {"vm": vm_uuid, "host": host_uuid, "cluster": cluster_uuid})


# ---- stop, reboot, pause, resume ----------------------------------------------------------------

def release_host_capacity(ctx: ApiContext, s: Any, vm: VmInstance) -> None:
    if vm.hostUuid:
        host_alloc.release(s, vm.hostUuid, vm.cpuNum, reserved_memory(ctx, vm.memorySize))


def stop_vm(ctx: ApiContext, vm_uuid: str, stop_type: str = "grace") -> None:
    left: list[str | None] = []

    def after(s: Any, vm: VmInstance) -> None:
        left.append(vm.hostUuid)
        release_host_capacity(ctx, s, vm)
        s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(
            hostUuid=None, lastHostUuid=vm.hostUuid))

    _agent_op(ctx, vm_uuid, "stop", lambda vm: StopVmCmd(uuid=vm.uuid, hostUuid=vm.hostUuid, type=stop_type),
              STOPPED, after)
    release_network(ctx, vm_uuid, left[0] if left else None)


def reboot_vm(ctx: ApiContext, vm_uuid: str) -> None:
    _agent_op(ctx, vm_uuid, "reboot", lambda vm: RebootVmCmd(uuid=vm.uuid, hostUuid=vm.hostUuid), RUNNING)


def pause_vm(ctx: ApiContext, vm_uuid: str) -> None:
    _agent_op(ctx, vm_uuid, "pause", lambda vm: PauseVmCmd(uuid=vm.uuid, hostUuid=vm.hostUuid), PAUSED)


def resume_vm(ctx: ApiContext, vm_uuid: str) -> None:
    _agent_op(ctx, vm_uuid, "resume", lambda vm: ResumeVmCmd(uuid=vm.uuid, hostUuid=vm.hostUuid), RUNNING)


# ---- destroy, recover, expunge ------------------------------------------------------------------

def destroy_vm(ctx: ApiContext, vm_uuid: str, best_effort_agent: bool = False) -> None:
    """Destroy: off the host, capacity returned, data volumes detached; expunged under Direct."""
    left: list[str | None] = []

    def after(s: Any, vm: VmInstance) -> None:
        left.append(vm.hostUuid)
        release_host_capacity(ctx, s, vm)
        s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(
            hostUuid=None, lastHostUuid=vm.hostUuid or vm.lastHostUuid))
        s.execute(update(Volume).where(Volume.vmInstanceUuid == vm_uuid, Volume.type == "Data").values(
            vmInstanceUuid=None, deviceId=None, lastVmInstanceUuid=vm_uuid, lastDetachDate=utcnow()))

    def cmd(vm: VmInstance) -> DestroyVmCmd:
        return DestroyVmCmd(uuid=vm.uuid, hostUuid=vm.hostUuid)

    if not best_effort_agent:
        with ctx.db.ro() as s:
            vm = get_or_404(s, VmInstance, vm_uuid)
            host = s.get(Host, vm.hostUuid) if vm.hostUuid else None
            # A host that does not answer cannot hold the VM hostage: it is destroyed there when
            # the host reconnects (vm_sync destroys VMs a host runs that the database does not place).
            best_effort_agent = host is not None and host.status != CONNECTED
    if best_effort_agent:
        vm = begin(ctx, vm_uuid, "destroy")
        if vm.hostUuid:
            try:
                with ctx.db.ro() as s:
                    url = host_url(s, vm.hostUuid)
                ctx.agents.send(url, cmd(vm), timeout=30)
            except ApiError:
                pass
        with ctx.db.tx() as s:
            s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(state=DESTROYED))
            after(s, vm)
    else:
        _agent_op(ctx, vm_uuid, "destroy", cmd, DESTROYED, after)
    release_network(ctx, vm_uuid, left[0] if left else None)
    if ctx.gconf.get(VM_DELETION_POLICY) == "Direct":
        expunge_vm(ctx, vm_uuid)


def recover_vm(ctx: ApiContext, vm_uuid: str) -> None:
    with ctx.db.tx() as s:
        vm = get_or_404(s, VmInstance, vm_uuid)
        res = s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid, VmInstance.state == DESTROYED)
                        .values(state=STOPPED))
        if res.rowcount != 1:
            raise ApiError("VM.1001", f"only a Destroyed VM can be recovered; VmInstanceVO[uuid:{vm_uuid}] "
                                      f"is {vm.state}")
        quota.grew_owners(s.connection(), [vm_uuid])


def delete_volume_on_storage(ctx: ApiContext, vol: Volume) -> None:
    """Remove an instantiated volume from its primary storage and return the capacity."""
    if vol.primaryStorageUuid and vol.status != "NotInstantiated":
        with ctx.db.ro() as s:
            url = ps_url(s, vol.primaryStorageUuid, vol.hostUuid)
        if vol.installPath:
            ctx.agents.send(url, DeleteVolumeCmd(psUuid=vol.primaryStorageUuid, installPath=vol.installPath,
                                                 hostUuid=vol.hostUuid))
        with ctx.db.tx() as s:
            ps_alloc.release(s, vol.primaryStorageUuid, vol.size, ctx.gconf.get(PS_OVER_PROVISIONING))


def expunge_vm(ctx: ApiContext, vm_uuid: str) -> None:
    """Expunge a Destroyed VM: its root volume, NICs, IPs, tags and row are gone for good."""
    begin(ctx, vm_uuid, "expunge")
    try:
        with ctx.db.ro() as s:
            vols = list(s.scalars(select(Volume).where(Volume.vmInstanceUuid == vm_uuid)))
        for v in vols:
            delete_volume_on_storage(ctx, v)
            with ctx.db.tx() as s:
                s.execute(delete(Volume).where(Volume.uuid == v.uuid))
                forget_resource(s, v.uuid)
        with ctx.db.ro() as s:
            nic_uuids = list(s.scalars(select(VmNic.uuid).where(VmNic.vmInstanceUuid == vm_uuid)))
        for nic_uuid in nic_uuids:  # what hangs on a NIC (its EIP) lets go first
            cascade(ctx, VmNic, nic_uuid, "Permissive")
    except BaseException:
        set_state(ctx, vm_uuid, DESTROYED)
        raise
    with ctx.db.tx() as s:
        nics = list(s.scalars(select(VmNic.uuid).where(VmNic.vmInstanceUuid == vm_uuid)))
        if nics:
            s.execute(delete(UsedIp).where(UsedIp.vmNicUuid.in_(nics)))
            s.execute(delete(VmNic).where(VmNic.uuid.in_(nics)))
        forget_resource(s, vm_uuid)
        s.execute(delete(VmInstance).where(VmInstance.uuid == vm_uuid))


# ---- migrate ------------------------------------------------------------------------------------

def migration_request(ctx: ApiContext, s: Any, vm: VmInstance) -> host_alloc.HostRequest:
    root = s.get(Volume, vm.rootVolumeUuid) if vm.rootVolumeUuid else None
    l3s = list(s.scalars(select(VmNic.l3NetworkUuid).where(VmNic.vmInstanceUuid == vm.uuid)))
    cur = s.get(Host, vm.hostUuid) if vm.hostUuid else None
    return host_alloc.HostRequest(
        cpu=vm.cpuNum, memory=vm.memorySize, memory_ratio=ctx.gconf.get(MEMORY_OVER_PROVISIONING),
        zone_uuid=vm.zoneUuid, l3_uuids=l3s, exclude=[vm.hostUuid] if vm.hostUuid else [],
        ps_uuid=root.primaryStorageUuid if root is not None else None, vm_uuid=vm.uuid,
        hypervisor_type=cur.hypervisorType if cur else None, strategy=vm.allocatorStrategy or host_alloc.DEFAULT)


def migrate_vm(ctx: ApiContext, vm_uuid: str, dest_uuid: str | None) -> None:
    vm = begin(ctx, vm_uuid, "migrate")
    reserved = None
    prepared: str | None = None
    try:
        if dest_uuid == vm.hostUuid:
            raise invalid(f"the VM already runs on HostVO[uuid:{dest_uuid}]; choose another host")
        with ctx.db.tx() as s:
            req = migration_request(ctx, s, vm)
            if dest_uuid:
                get_or_404(s, Host, dest_uuid)
                req.host_uuid = dest_uuid
            dest = host_alloc.allocate(s, req)
            reserved = (dest, req.cpu, req.reserved_memory)
            dh = s.get(Host, dest)
            src_url = host_url(s, vm.hostUuid)
            cmd = MigrateVmCmd(vmUuid=vm_uuid, srcHostUuid=vm.hostUuid, destHostUuid=dest,
                               destHostIp=dh.managementIp, destAgentUrl=dh.agentUrl or "")
        prepared = dest
        extensions.VM_BEFORE_START.run(ctx, vm_uuid, dest)
        ctx.agents.send(src_url, cmd)
    except BaseException:
        if prepared:
            release_network(ctx, vm_uuid, prepared)
        with ctx.db.tx() as s:
            if reserved:
                host_alloc.release(s, *reserved)
            s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(state=vm.state))
        raise
    with ctx.db.tx() as s:
        release_host_capacity(ctx, s, vm)
        s.execute(update(VmInstance).where(VmInstance.uuid == vm_uuid).values(
            state=RUNNING, hostUuid=dest, lastHostUuid=vm.hostUuid, clusterUuid=dh.clusterUuid))
    release_network(ctx, vm_uuid, vm.hostUuid)

