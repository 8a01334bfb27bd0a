"""CreateVmInstance: resolve the request into a plan, then run the create flow.

Flow "create-vm" (each step rolls back exactly what it did; rollbacks tolerate a step that was in
flight when the MN died):
  allocate       one grouped transaction, with the step's journal entry (vm_allocate.write): host
                 reservation (InstantStart), primary-storage reservation and the volumes' places,
                 VM row, volume rows, NIC rows with their IPs; lock-free reads before it
                 (vm_allocate.prefetch), the start command and image source after it
  root-volume    the root volume created on primary storage from the image (agent)
  data-volumes   empty data volumes created on primary storage (agent)
  prepare-net    extensions.VM_BEFORE_START hooks (network services; VM_RELEASE_NETWORK undoes them)
  start          the VM started on its host (agent)
  finalize       states: VM Running (or Stopped/Created), volumes Ready
JustCreate stops after `allocate` (VM Created, volumes NotInstantiated); CreateStopped skips
`prepare-net` and `start` (VM Stopped, holding no host capacity).

Steps read and write the flow's data through its typed view (vm_create_data.CreateVmData): the
dict the flow engine journals stays the storage, so a step's writes are in whatever entry is
written next, and recovery rolls back from the dict it reads back from the job row. Only
allocate's entry is written (the later steps write none: it names them), so everything any
rollback needs is in the data by the end of allocate's write.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from kvmagent.protocol import (
    CreateEmptyVolumeCmd,
    CreateVolumeFromImageCmd,
    DeleteVolumeCmd,
    DestroyVmCmd,
    StartVmCmd,
    VolumeRsp,
    to_wire,
)
from mn import extensions, ipam, quota, resource_types
from mn.connection import CONNECTED
from mn.context import ApiContext
from mn.errors import invalid, not_found
from mn.flow import Flow, Step, register_flow
from mn.globalconfig import HOST_ALLOCATOR_STRATEGY, MEMORY_OVER_PROVISIONING, PS_OVER_PROVISIONING
from mn.models import (
    BackupStorage,
    BackupStorageZoneRef,
    Cluster,
    DiskOffering,
    Host,
    Image,
    ImageBackupStorageRef,
    InstanceOffering,
    L3Network,
    PrimaryStorage,
    VmInstance,
    VmNic,
    Volume,
    Zone,
)
from mn.services import gc, vm_allocate
from mn.services.common import new_resource_uuid, row_or_404
from mn.services.vm_common import CREATED, RUNNING, STOPPED, host_url, nic_tos, volume_to
from mn.services.vm_create_data import (
    CREATE_STOPPED,
    INSTANT_START,
    JUST_CREATE,
    CreateVmData,
    DataDisk,
    ImageRef,
    Installed,
    Plan,
    StartCall,
    VolumePlace,
    typed,
)


def _enabled(row: Any, what: str) -> None:
    if getattr(row, "state", "Enabled") != "Enabled":
        raise invalid(f"{what}[uuid:{row.uuid}] is {row.state}; it must be Enabled")


# Built once: every creation reads its L3 networks.
_L3_ROWS = select(L3Network.__table__).where(L3Network.uuid.in_(bindparam("l3s", expanding=True)))


def resolve(ctx: ApiContext, msg: dict[str, Any], conn: Connection) -> Plan:
    """Validate CreateVmInstance and compute its plan. Reads only (Core rows); no side effects."""
    offering = None
    if msg.get("instanceOfferingUuid"):
        offering = row_or_404(conn, InstanceOffering, msg["instanceOfferingUuid"])
        _enabled(offering, "InstanceOfferingVO")
    cpu = msg.get("cpuNum") or (offering.cpuNum if offering else None)
    memory = msg.get("memorySize") or (offering.memorySize if offering else None)
    if not cpu or not memory:
        raise invalid("CreateVmInstance needs instanceOfferingUuid, or both cpuNum and memorySize")
    if cpu <= 0 or memory <= 0:
        raise invalid(f"cpuNum and memorySize must be positive, got {cpu} and {memory}")
    if not msg.get("imageUuid"):
        raise invalid("CreateVmInstance needs imageUuid")
    image = row_or_404(conn, Image, msg["imageUuid"])
    _enabled(image, "ImageVO")
    if image.status != "Ready":
        raise invalid(f"ImageVO[uuid:{image.uuid}] is {image.status}; it must be Ready")
    root_offering = None
    if msg.get("rootDiskOfferingUuid"):
        root_offering = row_or_404(conn, DiskOffering, msg["rootDiskOfferingUuid"])
    if image.mediaType == "ISO":
        if root_offering is None and not msg.get("rootDiskSize"):
            raise invalid("a VM created from an ISO needs rootDiskOfferingUuid or rootDiskSize")
        root_size = msg.get("rootDiskSize") or root_offering.diskSize  # type: ignore[union-attr]
    elif image.mediaType == "RootVolumeTemplate":
        root_size = max(image.size, msg.get("rootDiskSize") or 0,
                        root_offering.diskSize if root_offering else 0)
    else:
        raise invalid(f"ImageVO[uuid:{image.uuid}] is a {image.mediaType}; a VM needs a "
                      "RootVolumeTemplate or an ISO")
    data_disks: list[DataDisk] = []
    for du in msg.get("dataDiskOfferingUuids") or []:
        d = row_or_404(conn, DiskOffering, du)
        _enabled(d, "DiskOfferingVO")
        data_disks.append(DataDisk(d.diskSize, d.uuid))
    for size in msg.get("dataDiskSizes") or []:
        if size <= 0:
            raise invalid(f"dataDiskSizes must be positive, got {size}")
        data_disks.append(DataDisk(size))
    l3s = list(dict.fromkeys(msg.get("l3NetworkUuids") or []))
    if not l3s:
        raise invalid("CreateVmInstance needs at least one L3 network in l3NetworkUuids")
    l3_rows = {r.uuid: r for r in conn.execute(_L3_ROWS, {"l3s": l3s})}
    for u in l3s:
        if u not in l3_rows:
            raise not_found("L3NetworkVO", u)
        _enabled(l3_rows[u], "L3NetworkVO")
    default_l3 = msg.get("defaultL3NetworkUuid") or l3s[0]
    if default_l3 not in l3s:
        raise invalid(f"defaultL3NetworkUuid {default_l3} is not one of l3NetworkUuids {l3s}")
    tags = msg.get("systemTags") or []
    static_ips = ipam.static_ips_from_tags(tags)
    for l3, ip in static_ips.items():
        if l3 not in l3s:
            raise invalid(f"the static IP {ip} names L3 network {l3}, which the VM does not join")
    zone_uuid, cluster_uuid, host_uuid = msg.get("zoneUuid"), msg.get("clusterUuid"), msg.get("hostUuid")
    if zone_uuid:
        _enabled(row_or_404(conn, Zone, zone_uuid), "ZoneVO")
    if cluster_uuid:
        _enabled(row_or_404(conn, Cluster, cluster_uuid), "ClusterVO")
    if host_uuid:
        row_or_404(conn, Host, host_uuid)
    ps_uuid = msg.get("primaryStorageUuidForRootVolume")
    if ps_uuid:
        row_or_404(conn, PrimaryStorage, ps_uuid)
    ratio = ctx.gconf.get(MEMORY_OVER_PROVISIONING)
    strategy = (offering.allocatorStrategy if offering and offering.allocatorStrategy
                else ctx.gconf.get(HOST_ALLOCATOR_STRATEGY))
    return Plan(
        vm_uuid=new_resource_uuid(msg), name=msg["name"], cpu=int(cpu), memory=int(memory),
        reserved_memory=math.ceil(memory / ratio), offering_uuid=offering.uuid if offering else None,
        allocator_strategy=strategy,
        image=ImageRef(image.uuid, image.size, image.format, image.mediaType, image.platform, image.architecture,
                       image.guestOsType),
        root_size=int(root_size), root_disk_offering=root_offering.uuid if root_offering else None,
        data_disks=data_disks, l3s=l3s, default_l3=default_l3, static_ips=static_ips,
        zone_uuid=zone_uuid, cluster_uuid=cluster_uuid, host_uuid=host_uuid, ps_uuid=ps_uuid,
        strategy=msg.get("strategy") or "InstantStart", description=msg.get("description"),
        platform=msg.get("platform") or image.platform, guest_os=msg.get("guestOsType") or image.guestOsType,
        architecture=msg.get("architecture") or image.architecture,
        system_tags=list(tags), user_tags=list(msg.get("userTags") or []))


def check_create(ctx: ApiContext, msg: dict[str, Any]) -> None:
    """Validate and plan; the plan rides on the message to the job (`msg.resolved_plan`)."""
    with ctx.db.read() as conn:
        plan = resolve(ctx, msg, conn)
        if msg.get("resourceUuid") and conn.execute(  # a fresh uuid is new
                select(VmInstance.uuid).where(VmInstance.uuid == plan.vm_uuid)).first() is not None:
            raise invalid(f"resourceUuid {plan.vm_uuid} is already used by a VM")
    msg.resolved_plan = plan  # type: ignore[attr-defined]


# ---- steps ------------------------------------------------------------------------------------

@typed
def _allocate(ctx: ApiContext, data: CreateVmData) -> None:
    """The reads before the write (vm_allocate.prefetch), the one grouped write with the step's
    journal entry (vm_allocate.write), then, outside it, the start command from the rows just
    written and the image source (_start_call)."""
    plan = data.plan
    req = vm_allocate.host_request(ctx.gconf, plan)
    pre = vm_allocate.prefetch(ctx.db, plan, req)
    ps_ratio = ctx.gconf.get(PS_OVER_PROVISIONING)
    rows = ctx.flow_grouped(lambda s: vm_allocate.write(s, data, req, pre, ps_ratio, ctx.caller))
    if plan.starts:
        try:
            _start_call(ctx, data, rows)
        except BaseException:  # the write committed: undo it here, the flow rolls back only finished steps
            vm_allocate.undo(ctx.db, data)
            raise


def _start_call(ctx: ApiContext, data: CreateVmData, rows: vm_allocate.Rows) -> None:
    """The start command, from the rows allocate wrote (not read back), and the image source
    root-volume needs, read in the same session."""
    plan = data.plan
    sizes = dict(zip(data.data_volume_uuids, (x.size for x in plan.data_disks), strict=True))
    planned = {u: {"path": w.path, "size": sizes.get(u, plan.root_size)} for u, w in data.places.items()}
    vols = [Volume(**v) for v in rows.volumes]
    devices = {"root": vols[0], "data": vols[1:], "nics": [VmNic(**n) for n in rows.nics]}
    with ctx.db.ro() as s:
        cmd = start_command(s, VmInstance(**rows.vm), planned, devices)
        if plan.image.media_type != "ISO":  # read here to save root-volume a session
            data.source = image_source(s, plan.image.uuid, data.zone)
    assert rows.agent is not None  # started: allocate chose its host
    data.start = StartCall(rows.agent, to_wire(cmd))


@typed
def _allocate_rollback(ctx: ApiContext, data: CreateVmData) -> None:
    vm_allocate.undo(ctx.db, data)


# Built once: every creation from an image asks it.
_IMAGE_SOURCE = (
    select(ImageBackupStorageRef.backupStorageUuid, ImageBackupStorageRef.installPath, BackupStorage.url,
           BackupStorage.type)
    .join(BackupStorage, BackupStorage.uuid == ImageBackupStorageRef.backupStorageUuid)
    .where(ImageBackupStorageRef.imageUuid == bindparam("image"), ImageBackupStorageRef.status == "Ready",
           BackupStorage.state == "Enabled", BackupStorage.status == CONNECTED,
           BackupStorage.uuid.in_(select(BackupStorageZoneRef.backupStorageUuid)
                                  .where(BackupStorageZoneRef.zoneUuid == bindparam("zone"))))
    .limit(1))


def image_source(s: Session, image_uuid: str, zone_uuid: str) -> dict[str, Any]:
    """The CreateVolumeFromImageCmd fields naming a Ready copy of the image in the zone: its
    backup storage, path and agent, and where a host fetches it (what the storage's type says:
    resource_types.image_fetch_fields; the transfer's credential is added while the command is sent, fetch_credentials)."""
    row = s.connection().execute(_IMAGE_SOURCE, {"image": image_uuid, "zone": zone_uuid}).first()
    if row is None:
        raise invalid(f"ImageVO[uuid:{image_uuid}] has no Ready copy on a connected backup storage "
                      f"attached to zone {zone_uuid}")
    out = {"backupStorageUuid": row[0], "imageInstallPath": row[1], "backupStorageUrl": row[2]}
    out.update(resource_types.image_fetch_fields(s, row[3], row[0]))
    return out


@typed
def _root_volume(ctx: ApiContext, data: CreateVmData) -> None:
    plan = data.plan
    vol_uuid = data.root_volume_uuid
    where = data.place(vol_uuid)
    if plan.image.media_type == "ISO":
        rsp = ctx.agents.send(where.url, CreateEmptyVolumeCmd(psUuid=where.ps, volumeUuid=vol_uuid, size=plan.root_size,
                                                              hostUuid=where.host, installPath=where.path), VolumeRsp)
    else:
        source = data.take_source()  # read by allocate when it started the VM
        if source is None:
            with ctx.db.ro() as s:
                source = image_source(s, plan.image.uuid, data.zone)
        with resource_types.fetch_credentials(ctx, source) as fetch:
            rsp = ctx.agents.send(where.url, CreateVolumeFromImageCmd(
                psUuid=where.ps, volumeUuid=vol_uuid, imageUuid=plan.image.uuid, size=plan.root_size,
                hostUuid=where.host, installPath=where.path, **fetch), VolumeRsp)
    _installed(data, vol_uuid, where, plan.root_size, rsp)


def _installed(data: CreateVmData, vol_uuid: str, where: VolumePlace, size: int, rsp: VolumeRsp) -> None:
    """Record a volume the agent created; `finalize` writes it to the database (one transaction)."""
    data.add_installed(vol_uuid, Installed(rsp.installPath or where.path, max(rsp.size, size), rsp.actualSize))


def _delete_installed(ctx: ApiContext, data: CreateVmData, uuids: list[str]) -> None:
    """Delete the volumes at their planned paths, created or not (deleting is idempotent); a
    delete the agent fails becomes a garbage-collector job, recorded before allocate's rollback
    forgets the volume."""
    places = data.places
    for u in uuids:
        where = places.get(u)
        if where is not None:
            gc.cleanup(ctx, where.url, DeleteVolumeCmd(psUuid=where.ps, installPath=where.path, hostUuid=where.host),
                       gc.target("PrimaryStorage", where.ps, where.host),
                       f"delete volume {u} of VM {data.vm_uuid} from primary storage {where.ps}", u)
        data.drop_installed(u)


@typed
def _root_volume_rollback(ctx: ApiContext, data: CreateVmData) -> None:
    _delete_installed(ctx, data, [data.root_volume_uuid])


@typed
def _data_volumes(ctx: ApiContext, data: CreateVmData) -> None:
    for vol_uuid, disk in zip(data.data_volume_uuids, data.plan.data_disks, strict=True):
        where = data.place(vol_uuid)
        rsp = ctx.agents.send(where.url, CreateEmptyVolumeCmd(
            psUuid=where.ps, volumeUuid=vol_uuid, size=disk.size, hostUuid=where.host,
            installPath=where.path), VolumeRsp)
        _installed(data, vol_uuid, where, disk.size, rsp)


@typed
def _data_volumes_rollback(ctx: ApiContext, data: CreateVmData) -> None:
    _delete_installed(ctx, data, list(data.data_volume_uuids))


@typed
def _prepare_net(ctx: ApiContext, data: CreateVmData) -> None:
    extensions.VM_BEFORE_START.run(ctx, data.vm_uuid, data.host_uuid)


@typed
def _prepare_net_rollback(ctx: ApiContext, data: CreateVmData) -> None:
    extensions.VM_RELEASE_NETWORK.run(ctx, data.vm_uuid, data.host_uuid)


def start_command(s: Session, vm: VmInstance, installed: dict[str, dict] | None = None,
                  devices: dict[str, Any] | None = None) -> StartVmCmd:
    """The StartVmCmd of a VM; `installed` gives install paths not yet written to the database,
    `devices` the VM's volumes and NICs when the caller has them (as vm_devices() returns them)."""
    from mn.services.vm_common import vm_devices

    dev = devices if devices is not None else vm_devices(s, vm.uuid)

    def to(v: Volume) -> Any:
        t = volume_to(v)
        if installed and v.uuid in installed:
            t.installPath = installed[v.uuid]["path"]
            t.size = installed[v.uuid]["size"]
        return t

    return StartVmCmd(vmInstanceUuid=vm.uuid, vmName=vm.name, cpuNum=vm.cpuNum, memory=vm.memorySize,
                      cpuSpeed=vm.cpuSpeed, hostUuid=vm.hostUuid, rootVolume=to(dev["root"]),
                      dataVolumes=[to(v) for v in dev["data"]], nics=nic_tos(s, dev["nics"]),
                      bootDev="hd")


@typed
def _start(ctx: ApiContext, data: CreateVmData) -> None:
    call = data.start
    installed = data.installed
    for vol in [call.cmd["rootVolume"], *call.cmd["dataVolumes"]]:  # as the agents created them
        i = installed.get(vol["volumeUuid"])
        if i is not None:
            vol["installPath"], vol["size"] = i.path, i.size
    ctx.agents.call(call.url, StartVmCmd.PATH, call.cmd)


@typed
def _start_rollback(ctx: ApiContext, data: CreateVmData) -> None:
    with ctx.db.ro() as s:
        url = host_url(s, data.host_uuid)
    gc.cleanup(ctx, url, DestroyVmCmd(uuid=data.vm_uuid, hostUuid=data.host_uuid), gc.target("Host", data.host_uuid),
               f"destroy VM {data.vm_uuid} on host {data.host_uuid} (its creation was rolled back)", data.vm_uuid)


# Built once: every creation ends with these.
_FINAL_VM = update(VmInstance).where(VmInstance.uuid == bindparam("vm")).values(state=bindparam("st"))
_FINAL_VM_OFF_HOST = (update(VmInstance).where(VmInstance.uuid == bindparam("vm"))
                      .values(state=bindparam("st"), hostUuid=None))
_FINAL_VOLUME = (update(Volume).where(Volume.uuid == bindparam("vol"))
                 .values(installPath=bindparam("path"), size=bindparam("sz"), actualSize=bindparam("actual"),
                         status="Ready"))


@typed
def _finalize(ctx: ApiContext, data: CreateVmData) -> None:
    final = {INSTANT_START: RUNNING, CREATE_STOPPED: STOPPED, JUST_CREATE: CREATED}[data.plan.strategy]
    vm_uuid = data.vm_uuid
    vols = [{"vol": u, "path": i.path, "sz": i.size, "actual": i.actual_size} for u, i in data.installed.items()]
    plan = data.plan
    planned = {data.root_volume_uuid: plan.root_size,
               **{u: d.size for u, d in zip(data.data_volume_uuids, plan.data_disks, strict=True)}}
    bigger = any(i.size > planned.get(u, 0) for u, i in data.installed.items())

    def run(conn: Connection) -> None:
        conn.execute(_FINAL_VM_OFF_HOST if final == STOPPED else _FINAL_VM, {"vm": vm_uuid, "st": final})
        if vols:
            conn.execute(_FINAL_VOLUME, vols)
        if bigger:  # volumes the agents made bigger than their quota check counted
            quota.grew_owners(conn, [vm_uuid])

    ctx.db.grouped_conn(run)


ALLOCATE = Step("allocate", _allocate, _allocate_rollback, journal_in_step=True)
# The steps after `allocate` write no journal entries: allocate's entry names them and holds all
# their rollbacks need (planned volume paths, the reserved host), and each rollback is idempotent.
ROOT_VOLUME = Step("root-volume", _root_volume, _root_volume_rollback, journaled=False)
DATA_VOLUMES = Step("data-volumes", _data_volumes, _data_volumes_rollback, journaled=False)
PREPARE_NET = Step("prepare-net", _prepare_net, _prepare_net_rollback, journaled=False)
START = Step("start", _start, _start_rollback, journaled=False)
FINALIZE = Step("finalize", _finalize)


@register_flow("create-vm")
def create_flow() -> Flow:
    return Flow("create-vm", [ALLOCATE, ROOT_VOLUME, DATA_VOLUMES, PREPARE_NET, START, FINALIZE])


@register_flow("create-vm-stopped")
def create_stopped_flow() -> Flow:
    return Flow("create-vm-stopped", [ALLOCATE, ROOT_VOLUME, DATA_VOLUMES, FINALIZE])


@register_flow("create-vm-record")
def create_record_flow() -> Flow:
    return Flow("create-vm-record", [ALLOCATE, FINALIZE])


def create_vm(ctx: ApiContext, msg: dict[str, Any]) -> str:
    """Run CreateVmInstance; returns the new VM's uuid. A plan made by check_create is used as is
    (whatever changed since is caught by the flow: allocation, image source, agents)."""
    plan = getattr(msg, "resolved_plan", None)
    if plan is None:
        with ctx.db.read() as conn:
            plan = resolve(ctx, msg, conn)
    data = CreateVmData.new(plan)
    flow = {INSTANT_START: create_flow, CREATE_STOPPED: create_stopped_flow,
            JUST_CREATE: create_record_flow}[plan.strategy]()
    if not plan.data_disks:  # recovery rebuilds the full flow by name and undoes only steps it ran
        flow = Flow(flow.name, [st for st in flow.steps if st is not DATA_VOLUMES])
    ctx.run_flow(flow, data.raw)  # the dict is what the flow engine journals
    return plan.vm_uuid
