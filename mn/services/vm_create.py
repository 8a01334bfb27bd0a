"""CreateVmInstance: resolve the request into a plan, then run the create flow.

Flow "create-vm" (each step rolls back exactly what it did; rollbacks tolerate a step that was in
flight when the MN died):
  allocate       one transaction: VM row, host reservation (InstantStart), primary storage
                 reservation, volume rows, NIC rows with their IPs
  root-volume    the root volume created on primary storage from the image (agent)
  data-volumes   empty data volumes created on primary storage (agent)
  prepare-net    extensions.VM_BEFORE_START hooks (network services; VM_RELEASE_NETWORK undoes them)
  start          the VM started on its host (agent)
  finalize       states: VM Running (or Stopped/Created), volumes Ready
JustCreate stops after `allocate` (VM Created, volumes NotInstantiated); CreateStopped skips
`prepare-net` and `start` (VM Stopped, holding no host capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
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
from mn import extensions, ipam, resource_types
from mn.allocator import host as host_alloc
from mn.allocator import primary_storage as ps_alloc
from mn.context import ApiContext
from mn.db.base import new_uuid, utcnow
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
    UsedIp,
    VmInstance,
    VmNic,
    Volume,
    Zone,
)
from mn.services.common import add_tags, new_resource_uuid, row_or_404
from mn.services.vm_common import (
    CREATED,
    RUNNING,
    STARTING,
    STOPPED,
    agent_url,
    host_url,
    nic_tos,
    ps_url,
    volume_install_path,
    volume_to,
)


@dataclass
class Plan:
    """Everything CreateVmInstance decided before any side effect."""

    vm_uuid: str
    name: str
    cpu: int
    memory: int
    reserved_memory: int
    offering_uuid: str | None
    allocator_strategy: str
    image: dict[str, Any]
    root_size: int
    root_disk_offering: str | None
    data_disks: list[dict[str, Any]]
    l3s: list[str]
    default_l3: str
    static_ips: dict[str, str]
    zone_uuid: str | None
    cluster_uuid: str | None
    host_uuid: str | None
    ps_uuid: str | None
    strategy: str
    description: str | None
    platform: str | None
    guest_os: str | None
    architecture: str | None
    system_tags: list[str] = field(default_factory=list)
    user_tags: list[str] = field(default_factory=list)


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
    data_disks: list[dict[str, Any]] = []
    for du in msg.get("dataDiskOfferingUuids") or []:
        d = row_or_404(conn, DiskOffering, du)
        _enabled(d, "DiskOfferingVO")
        data_disks.append({"size": d.diskSize, "diskOfferingUuid": d.uuid})
    for size in msg.get("dataDiskSizes") or []:
        if size <= 0:
            raise invalid(f"dataDiskSizes must be positive, got {size}")
        data_disks.append({"size": size, "diskOfferingUuid": None})
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
        image={"uuid": image.uuid, "size": image.size, "format": image.format, "mediaType": image.mediaType,
               "platform": image.platform, "architecture": image.architecture, "guestOsType": image.guestOsType},
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

def _host_request(ctx: ApiContext, p: dict[str, Any], **over: Any) -> host_alloc.HostRequest:
    req = host_alloc.HostRequest(
        cpu=p["cpu"], memory=p["memory"], memory_ratio=ctx.gconf.get(MEMORY_OVER_PROVISIONING),
        zone_uuid=p["zone_uuid"], cluster_uuid=p["cluster_uuid"], host_uuid=p["host_uuid"],
        l3_uuids=p["l3s"], strategy=p["allocator_strategy"], ps_uuid=p["ps_uuid"])
    for k, v in over.items():
        setattr(req, k, v)
    return req


# Built once: allocate writes these rows for every VM (Core on the connection, no ORM bookkeeping).
_INSERT_VM = insert(VmInstance)
_INSERT_VOLUME = insert(Volume)
_INSERT_NIC = insert(VmNic)
_NIC_IP = (update(VmNic).where(VmNic.uuid == bindparam("nic"))
           .values(usedIpUuid=bindparam("used"), ip=bindparam("nip"), netmask=bindparam("mask"),
                   gateway=bindparam("gw"), ipVersion=bindparam("ver")))


def _nic_ip(used: ipam.Allocated | None) -> dict[str, Any]:
    """A NIC's IP columns for a reserved (or planned) UsedIp."""
    if used is None:
        return {"usedIpUuid": None, "ip": None, "netmask": None, "gateway": None, "ipVersion": 4}
    return {"usedIpUuid": used.uuid, "ip": used.ip, "netmask": used.netmask, "gateway": used.gateway,
            "ipVersion": used.ipVersion}


def _allocate(ctx: ApiContext, d: dict[str, Any]) -> None:
    """One grouped write: the reservations and the VM's rows. The reads that need no lock stay
    outside it, so the database's writer lock (SQLite: one writer for every MN process) is held
    for the writes: before it, the host candidates (with what the VM needs of the host), the
    primary storages of the first candidate's cluster and a few free IPs of each L3, all tried by
    compare-and-swap or unique insert (a stale one fails harmlessly and the step reads afresh
    inside the write); after it, the start command's network details and the image source."""
    p = d["plan"]
    ps_ratio = ctx.gconf.get(PS_OVER_PROVISIONING)
    start = p["strategy"] == "InstantStart"
    instantiate = p["strategy"] != "JustCreate"
    req = _host_request(ctx, p) if start else _host_request(ctx, p, cpu=0, memory=0)
    with ctx.db.read() as conn:
        found = {h.uuid: h for h in host_alloc.candidate_rows(conn, req, **({} if start else {"limit": 1}))}
        first = next(iter(found.values()), None)
        storages = (ps_alloc.candidate_rows(conn, cluster_uuid=first.clusterUuid, ps_uuid=p["ps_uuid"])
                    if instantiate and first is not None else [])
        ips = {l3: ipam.probe(conn, l3) for l3 in p["l3s"] if l3 not in p["static_ips"]}
    rows: dict[str, Any] = {}

    def run(s: Session) -> None:  # the journal entry announcing this step commits with its effects
        conn = s.connection()
        host_uuid = None
        if start:
            host_uuid = host_alloc.allocate(s, req, prefetched=list(found))
            d["reserved"] = {"host": host_uuid, "cpu": p["cpu"], "memory": p["reserved_memory"]}
        else:  # not started: pick where the volumes go without taking CPU or memory
            host_uuid = first.uuid if first is not None else host_alloc.allocate(s, req)
        target = found.get(host_uuid) or s.get(Host, host_uuid)
        if not start:
            host_uuid = None
        cluster_uuid, zone_uuid = target.clusterUuid, target.zoneUuid
        total = p["root_size"] + sum(x["size"] for x in p["data_disks"])
        ps_uuid = None
        if instantiate:
            ps = ps_alloc.allocate(s, size=total, ratio=ps_ratio, cluster_uuid=cluster_uuid, ps_uuid=p["ps_uuid"],
                                   prefetched=storages if first is not None and
                                   cluster_uuid == first.clusterUuid else None)
            ps_uuid = ps.uuid
            d["psReserved"] = {"ps": ps_uuid, "size": total, "ratio": ps_ratio}
            # Where each volume will be: in the journal before any agent creates it, so recovery
            # can delete a volume whose creation was in flight.
            url = ps.agentUrl or (agent_url(target, host_uuid) if host_uuid else ps_url(s, ps_uuid))
            d["paths"] = {vu: {"url": url, "ps": ps_uuid, "host": host_uuid,
                               "path": volume_install_path(ps.url, vu, vu == d["rootVolumeUuid"])}
                          for vu in [d["rootVolumeUuid"], *d["dataVolumeUuids"]]}
        if start:
            rows["agent"] = agent_url(target, host_uuid)
        d["zone"] = zone_uuid
        vm = rows["vm"] = dict(
            uuid=p["vm_uuid"], name=p["name"], description=p["description"], zoneUuid=zone_uuid,
            clusterUuid=cluster_uuid if instantiate else None, imageUuid=p["image"]["uuid"],
            hostUuid=host_uuid, lastHostUuid=host_uuid, instanceOfferingUuid=p["offering_uuid"],
            rootVolumeUuid=d["rootVolumeUuid"], platform=p["platform"], architecture=p["architecture"],
            defaultL3NetworkUuid=p["default_l3"], type="UserVm", hypervisorType=target.hypervisorType,
            memorySize=p["memory"], cpuNum=p["cpu"], cpuSpeed=0, allocatorStrategy=p["allocator_strategy"],
            state=STARTING if start else CREATED, guestOsType=p["guest_os"],
            internalId=int(p["vm_uuid"][:7], 16))
        conn.execute(_INSERT_VM, vm)
        status = "Creating" if instantiate else "NotInstantiated"
        vols = rows["volumes"] = [dict(
            uuid=d["rootVolumeUuid"], name=f"ROOT-for-{p['name']}", type="Root", primaryStorageUuid=ps_uuid,
            vmInstanceUuid=vm["uuid"], rootImageUuid=p["image"]["uuid"], diskOfferingUuid=p["root_disk_offering"],
            format=p["image"]["format"] or "qcow2", size=p["root_size"], deviceId=0, status=status,
            hostUuid=host_uuid, lastAttachDate=None)]
        vols += [dict(uuid=vu, name=f"DATA-for-{p['name']}", type="Data", primaryStorageUuid=ps_uuid,
                      vmInstanceUuid=vm["uuid"], rootImageUuid=None, diskOfferingUuid=disk["diskOfferingUuid"],
                      format="qcow2", size=disk["size"], deviceId=i + 1, status=status, hostUuid=host_uuid,
                      lastAttachDate=utcnow())
                 for i, (vu, disk) in enumerate(zip(d["dataVolumeUuids"], p["data_disks"], strict=True))]
        conn.execute(_INSERT_VOLUME, vols)  # executemany: every row has the same keys
        nics = rows["nics"] = []
        for i, (nu, l3) in enumerate(zip(d["nicUuids"], p["l3s"], strict=True)):
            guess = ips[l3][0] if ips.get(l3) else None  # the NIC row carries it when it holds
            nic = dict(uuid=nu, vmInstanceUuid=vm["uuid"], l3NetworkUuid=l3, mac=ipam.new_mac(), driverType="virtio",
                       hypervisorType=target.hypervisorType, deviceId=i, internalName=f"vnic{vm['internalId']}.{i}",
                       **_nic_ip(guess))
            conn.execute(_INSERT_NIC, nic)
            used = ipam.allocate_ip(s, l3, ip=p["static_ips"].get(l3), nic_uuid=nu, used_for="Vip",
                                    prefetched=ips.get(l3, ()))
            if used != guess:
                nic.update(_nic_ip(used))
                conn.execute(_NIC_IP, {"nic": nu, "used": used.uuid, "nip": used.ip, "mask": used.netmask,
                                       "gw": used.gateway, "ver": used.ipVersion})
            nics.append(nic)
        add_tags(s, vm["uuid"], "VmInstanceVO", {"systemTags": p["system_tags"], "userTags": p["user_tags"]})

    ctx.flow_grouped(run)
    d["allocated"] = True
    if start:  # the start command, from the rows just written (not read back)
        try:
            sizes = dict(zip(d["dataVolumeUuids"], (x["size"] for x in p["data_disks"]), strict=True))
            planned = {vu: {"path": w["path"], "size": sizes.get(vu, p["root_size"])}
                       for vu, w in d["paths"].items()}
            vols = [Volume(**v) for v in rows["volumes"]]
            devices = {"root": vols[0], "data": vols[1:], "nics": [VmNic(**n) for n in rows["nics"]]}
            with ctx.db.ro() as s:
                cmd = start_command(s, VmInstance(**rows["vm"]), planned, devices)
                if p["image"]["mediaType"] != "ISO":  # read here to save root-volume a session
                    d["source"] = image_source(s, p["image"]["uuid"], d["zone"])
            d["start"] = {"url": rows["agent"], "cmd": to_wire(cmd)}
        except BaseException:  # the write committed: undo it here, the flow rolls back only finished steps
            _allocate_rollback(ctx, d)
            raise


def _allocate_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    from mn.services.common import delete_tags

    with ctx.db.tx() as s:
        vm_uuid = d["plan"]["vm_uuid"]
        s.execute(delete(UsedIp).where(UsedIp.vmNicUuid.in_(d["nicUuids"])))
        s.execute(delete(VmNic).where(VmNic.uuid.in_(d["nicUuids"])))
        s.execute(delete(Volume).where(Volume.uuid.in_([d["rootVolumeUuid"], *d["dataVolumeUuids"]])))
        s.execute(delete(VmInstance).where(VmInstance.uuid == vm_uuid))
        delete_tags(s, vm_uuid)
        r = d.pop("reserved", None)
        if r:
            host_alloc.release(s, r["host"], r["cpu"], r["memory"])
        pr = d.pop("psReserved", None)
        if pr:
            ps_alloc.release(s, pr["ps"], pr["size"], pr["ratio"])


# Built once: every creation from an image asks it.
_IMAGE_SOURCE = (
    select(ImageBackupStorageRef.backupStorageUuid, ImageBackupStorageRef.installPath, BackupStorage.url,
           BackupStorage.type)
    .join(BackupStorage, BackupStorage.uuid == ImageBackupStorageRef.backupStorageUuid)
    .where(ImageBackupStorageRef.imageUuid == bindparam("image"), ImageBackupStorageRef.status == "Ready",
           BackupStorage.state == "Enabled", BackupStorage.status == "Connected",
           BackupStorage.uuid.in_(select(BackupStorageZoneRef.backupStorageUuid)
                                  .where(BackupStorageZoneRef.zoneUuid == bindparam("zone"))))
    .limit(1))


def image_source(s: Session, image_uuid: str, zone_uuid: str) -> dict[str, Any]:
    """The CreateVolumeFromImageCmd fields naming a Ready copy of the image in the zone: its
    backup storage, path and agent, and where a host fetches it (what the storage's type says:
    resource_types.image_fetch_fields; secrets are added at sending time, with_fetch_secrets)."""
    row = s.connection().execute(_IMAGE_SOURCE, {"image": image_uuid, "zone": zone_uuid}).first()
    if row is None:
        raise invalid(f"ImageVO[uuid:{image_uuid}] has no Ready copy on a connected backup storage "
                      f"attached to zone {zone_uuid}")
    out = {"backupStorageUuid": row[0], "imageInstallPath": row[1], "backupStorageUrl": row[2]}
    out.update(resource_types.image_fetch_fields(s, row[3], row[0]))
    return out


def _root_volume(ctx: ApiContext, d: dict[str, Any]) -> None:
    p = d["plan"]
    vol_uuid = d["rootVolumeUuid"]
    where = d["paths"][vol_uuid]
    if p["image"]["mediaType"] == "ISO":
        cmd: Any = CreateEmptyVolumeCmd(psUuid=where["ps"], volumeUuid=vol_uuid, size=p["root_size"],
                                        hostUuid=where["host"], installPath=where["path"])
    else:
        source = d.pop("source", None)  # read by allocate when it started the VM
        if source is None:
            with ctx.db.ro() as s:
                source = image_source(s, p["image"]["uuid"], d["zone"])
        cmd = CreateVolumeFromImageCmd(psUuid=where["ps"], volumeUuid=vol_uuid, imageUuid=p["image"]["uuid"],
                                       size=p["root_size"], hostUuid=where["host"], installPath=where["path"],
                                       **resource_types.with_fetch_secrets(source, ctx.config.home))
    rsp = ctx.agents.send(where["url"], cmd, VolumeRsp)
    _installed(d, vol_uuid, p["root_size"], rsp)


def _installed(d: dict[str, Any], vol_uuid: str, size: int, rsp: VolumeRsp) -> None:
    """Record a volume the agent created; `finalize` writes it to the database (one transaction)."""
    d["installed"] = {**d.get("installed", {}), vol_uuid: {
        "path": rsp.installPath or d["paths"][vol_uuid]["path"], "size": max(rsp.size, size),
        "actualSize": rsp.actualSize}}


def _delete_installed(ctx: ApiContext, d: dict[str, Any], uuids: list[str]) -> None:
    """Delete the volumes at their planned paths, created or not (deleting is idempotent)."""
    for u in uuids:
        where = d.get("paths", {}).get(u)
        if where:
            ctx.agents.send(where["url"], DeleteVolumeCmd(psUuid=where["ps"], installPath=where["path"],
                                                          hostUuid=where["host"]))
        d.get("installed", {}).pop(u, None)


def _root_volume_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    _delete_installed(ctx, d, [d["rootVolumeUuid"]])


def _data_volumes(ctx: ApiContext, d: dict[str, Any]) -> None:
    for vol_uuid, disk in zip(d["dataVolumeUuids"], d["plan"]["data_disks"], strict=True):
        where = d["paths"][vol_uuid]
        rsp = ctx.agents.send(where["url"], CreateEmptyVolumeCmd(
            psUuid=where["ps"], volumeUuid=vol_uuid, size=disk["size"], hostUuid=where["host"],
            installPath=where["path"]), VolumeRsp)
        _installed(d, vol_uuid, disk["size"], rsp)


def _data_volumes_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    _delete_installed(ctx, d, list(d["dataVolumeUuids"]))


def _prepare_net(ctx: ApiContext, d: dict[str, Any]) -> None:
    extensions.VM_BEFORE_START.run(ctx, d["plan"]["vm_uuid"], d["reserved"]["host"])


def _prepare_net_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    extensions.VM_RELEASE_NETWORK.run(ctx, d["plan"]["vm_uuid"], d["reserved"]["host"])


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


def _start(ctx: ApiContext, d: dict[str, Any]) -> None:
    cmd = d["start"]["cmd"]
    installed = d.get("installed", {})
    for vol in [cmd["rootVolume"], *cmd["dataVolumes"]]:  # as the agents created them
        if vol["volumeUuid"] in installed:
            vol["installPath"] = installed[vol["volumeUuid"]]["path"]
            vol["size"] = installed[vol["volumeUuid"]]["size"]
    ctx.agents.call(d["start"]["url"], StartVmCmd.PATH, cmd)


def _start_rollback(ctx: ApiContext, d: dict[str, Any]) -> None:
    with ctx.db.ro() as s:
        url = host_url(s, d["reserved"]["host"])
    ctx.agents.send(url, DestroyVmCmd(uuid=d["plan"]["vm_uuid"], hostUuid=d["reserved"]["host"]))


# Built once: every creation ends with these.
_FINAL_VM = update(VmInstance).where(VmInstance.uuid == bindparam("vm")).values(state=bindparam("st"))
_FINAL_VM_OFF_HOST = (update(VmInstance).where(VmInstance.uuid == bindparam("vm"))
                      .values(state=bindparam("st"), hostUuid=None))
_FINAL_VOLUME = (update(Volume).where(Volume.uuid == bindparam("vol"))
                 .values(installPath=bindparam("path"), size=bindparam("sz"), actualSize=bindparam("actual"),
                         status="Ready"))


def _finalize(ctx: ApiContext, d: dict[str, Any]) -> None:
    p = d["plan"]
    final = {"InstantStart": RUNNING, "CreateStopped": STOPPED, "JustCreate": CREATED}[p["strategy"]]
    vols = [{"vol": u, "path": i["path"], "sz": i["size"], "actual": i["actualSize"]}
            for u, i in d.get("installed", {}).items()]

    def run(conn: Connection) -> None:
        conn.execute(_FINAL_VM_OFF_HOST if final == STOPPED else _FINAL_VM, {"vm": p["vm_uuid"], "st": final})
        if vols:
            conn.execute(_FINAL_VOLUME, vols)

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
    data: dict[str, Any] = {
        "plan": plan.__dict__,
        "rootVolumeUuid": new_uuid(),
        "dataVolumeUuids": [new_uuid() for _ in plan.data_disks],
        "nicUuids": [new_uuid() for _ in plan.l3s],
    }
    flow = {"InstantStart": create_flow, "CreateStopped": create_stopped_flow,
            "JustCreate": create_record_flow}[plan.strategy]()
    if not plan.data_disks:  # recovery rebuilds the full flow by name and undoes only steps it ran
        flow = Flow(flow.name, [st for st in flow.steps if st is not DATA_VOLUMES])
    ctx.run_flow(flow, data)
    return plan.vm_uuid
