"""The `allocate` step of create-vm in pieces: the reads before its write, then the write.

Invariants:
- `write` is ONE grouped transaction (ApiContext.flow_grouped runs it with the step's journal
  entry): the host reservation, the primary-storage reservation and the volumes' places, the
  VM, volume and NIC rows with their IPs, the tags. After a crash either none of it happened or
  the entry, naming every later step, holds all their rollbacks need.
- `write` may run again in a new transaction (a grouped write that lost a deadlock), so it sets
  every data key it writes afresh and returns the rows it inserted rather than collecting them.
- The database's writer lock (SQLite: one writer for every MN process) is held for writes: the
  reads that need no lock come before (`prefetch`: host candidates with what the VM needs of the
  host, the primary storages of the first candidate's cluster, a few free IPs of each L3). Each
  is only a guess, tried by compare-and-swap or unique insert; a stale one makes the write read
  afresh inside.
- `undo` releases each reservation at most once (it takes them out of the data) and deletes
  rows by the uuids chosen before the flow ran, so it is safe on a write that never happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from mn import ipam, ownership, quota
from mn.allocator import host as host_alloc
from mn.allocator import primary_storage as ps_alloc
from mn.context import SYSTEM, Caller
from mn.db.base import utcnow
from mn.db.engine import Database
from mn.globalconfig import MEMORY_OVER_PROVISIONING, GlobalConfigStore
from mn.models import Host, UsedIp, VmInstance, VmNic, Volume
from mn.services.common import add_tags, forget_resource
from mn.services.vm_common import CREATED, STARTING, agent_url, ps_url, volume_install_path
from mn.services.vm_create_data import CreateVmData, Plan, PsReservation, Reservation, VolumePlace

# Built once: allocate writes these rows for every VM (Core on the connection, no ORM bookkeeping).
_INSERT_VM = insert(VmInstance)
_INSERT_VOLUME = insert(Volume)
_INSERT_NIC = insert(VmNic)
_NIC_IP = (update(VmNic).where(VmNic.uuid == bindparam("nic"))
           .values(usedIpUuid=bindparam("used"), ip=bindparam("nip"), netmask=bindparam("mask"),
                   gateway=bindparam("gw"), ipVersion=bindparam("ver")))


@dataclass(frozen=True, slots=True)
class Prefetch:
    """What allocate read before its write; guesses only (see the module docstring)."""

    hosts: dict[str, Row[Any]]                 # candidate hosts by uuid, in the strategy's order
    storages: list[Row[Any]]                   # primary storages of the first candidate's cluster
    ips: dict[str, list[ipam.Allocated]]       # a few free IPs of each L3 without a static IP

    @property
    def first(self) -> Row[Any] | None:
        return next(iter(self.hosts.values()), None)

    def storages_of(self, cluster_uuid: str) -> list[Row[Any]] | None:
        """The prefetched storages when they are the cluster's (None: the write reads them)."""
        first = self.first
        return self.storages if first is not None and first.clusterUuid == cluster_uuid else None


@dataclass(frozen=True, slots=True)
class Placement:
    """The host chosen: its row (prefetched, or read in the write) and the uuid of the host the
    VM holds capacity on (None when the VM is not started: the host only places its volumes)."""

    host: Row[Any] | Host
    host_uuid: str | None


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows the write inserted (the start command is built from them, not read back) and
    the agent the VM starts on (None when not started)."""

    vm: dict[str, Any]
    volumes: list[dict[str, Any]]
    nics: list[dict[str, Any]]
    agent: str | None


def host_request(gconf: GlobalConfigStore, plan: Plan) -> host_alloc.HostRequest:
    """What the VM asks of a host; a VM not started asks no CPU or memory (only a place)."""
    return host_alloc.HostRequest(
        cpu=plan.cpu if plan.starts else 0, memory=plan.memory if plan.starts else 0,
        memory_ratio=gconf.get(MEMORY_OVER_PROVISIONING), zone_uuid=plan.zone_uuid,
        cluster_uuid=plan.cluster_uuid, host_uuid=plan.host_uuid, l3_uuids=plan.l3s,
        strategy=plan.allocator_strategy, ps_uuid=plan.ps_uuid)


def prefetch(db: Database, plan: Plan, req: host_alloc.HostRequest) -> Prefetch:
    """The reads before the write, on a Core read connection (no lock, no ORM session)."""
    with db.read() as conn:
        hosts = {h.uuid: h for h in host_alloc.candidate_rows(conn, req, **({} if plan.starts else {"limit": 1}))}
        first = next(iter(hosts.values()), None)
        storages = (ps_alloc.candidate_rows(conn, cluster_uuid=first.clusterUuid, ps_uuid=plan.ps_uuid)
                    if plan.instantiates and first is not None else [])
        ips = {l3: ipam.probe(conn, l3) for l3 in plan.l3s if l3 not in plan.static_ips}
    return Prefetch(hosts, storages, ips)


def reserve_host(s: Session, data: CreateVmData, req: host_alloc.HostRequest, pre: Prefetch) -> Placement:
    """A started VM reserves its CPUs and memory by CAS (prefetched candidates first) and records
    the reservation in `data`; one not started takes the first candidate, reserving nothing."""
    plan = data.plan
    if plan.starts:
        host_uuid = host_alloc.allocate(s, req, prefetched=list(pre.hosts))
        data.reserved = Reservation(host_uuid, plan.cpu, plan.reserved_memory)
    else:
        first = pre.first
        host_uuid = first.uuid if first is not None else host_alloc.allocate(s, req)
    row = pre.hosts.get(host_uuid) or s.scalars(select(Host).where(Host.uuid == host_uuid)).one()
    return Placement(row, host_uuid if plan.starts else None)


def reserve_storage(s: Session, data: CreateVmData, place: Placement, pre: Prefetch, ratio: float) -> str | None:
    """Reserve room for every volume on one primary storage of the host's cluster and choose
    each volume's place there, both recorded in `data`; None (nothing) unless instantiated."""
    plan = data.plan
    if not plan.instantiates:
        return None
    cluster_uuid = place.host.clusterUuid
    ps = ps_alloc.allocate(s, size=plan.volume_bytes, ratio=ratio, cluster_uuid=cluster_uuid,
                           ps_uuid=plan.ps_uuid, prefetched=pre.storages_of(cluster_uuid))
    data.ps_reserved = PsReservation(ps.uuid, plan.volume_bytes, ratio)
    url = ps.agentUrl or (agent_url(place.host, place.host_uuid) if place.host_uuid else ps_url(s, ps.uuid))
    root = data.root_volume_uuid
    data.places = {u: VolumePlace(url, ps.uuid, place.host_uuid, volume_install_path(ps.url, u, u == root))
                   for u in data.volume_uuids}
    return ps.uuid


def vm_row(data: CreateVmData, place: Placement) -> dict[str, Any]:
    """The VM's row: Starting on its host when started, else Created (with no host)."""
    plan, host = data.plan, place.host
    return dict(
        uuid=plan.vm_uuid, name=plan.name, description=plan.description, zoneUuid=host.zoneUuid,
        clusterUuid=host.clusterUuid if plan.instantiates else None, imageUuid=plan.image.uuid,
        hostUuid=place.host_uuid, lastHostUuid=place.host_uuid, instanceOfferingUuid=plan.offering_uuid,
        rootVolumeUuid=data.root_volume_uuid, platform=plan.platform, architecture=plan.architecture,
        defaultL3NetworkUuid=plan.default_l3, type="UserVm", hypervisorType=host.hypervisorType,
        memorySize=plan.memory, cpuNum=plan.cpu, cpuSpeed=0, allocatorStrategy=plan.allocator_strategy,
        state=STARTING if plan.starts else CREATED, guestOsType=plan.guest_os,
        internalId=int(plan.vm_uuid[:7], 16))


def volume_rows(data: CreateVmData, ps_uuid: str | None, host_uuid: str | None) -> list[dict[str, Any]]:
    """The root volume's row, then the data volumes' (device ids 1..n); Creating on their
    storage when instantiated, else NotInstantiated. Every row has the same keys (executemany)."""
    plan = data.plan
    status = "Creating" if plan.instantiates else "NotInstantiated"
    root: dict[str, Any] = dict(
        uuid=data.root_volume_uuid, name=f"ROOT-for-{plan.name}", type="Root", primaryStorageUuid=ps_uuid,
        vmInstanceUuid=plan.vm_uuid, rootImageUuid=plan.image.uuid, diskOfferingUuid=plan.root_disk_offering,
        format=plan.image.format or "qcow2", size=plan.root_size, deviceId=0, status=status, hostUuid=host_uuid,
        lastAttachDate=None)
    return [root] + [dict(
        uuid=u, name=f"DATA-for-{plan.name}", type="Data", primaryStorageUuid=ps_uuid, vmInstanceUuid=plan.vm_uuid,
        rootImageUuid=None, diskOfferingUuid=disk.disk_offering_uuid, format="qcow2", size=disk.size,
        deviceId=i + 1, status=status, hostUuid=host_uuid, lastAttachDate=utcnow())
        for i, (u, disk) in enumerate(zip(data.data_volume_uuids, plan.data_disks, strict=True))]


def nic_ip(used: ipam.Allocated | None) -> dict[str, Any]:
    """A NIC's IP columns for a reserved (or prefetched) UsedIp."""
    if used is None:
        return {"usedIpUuid": None, "ip": None, "netmask": None, "gateway": None, "ipVersion": 4}
    return {"usedIpUuid": used.uuid, "ip": used.ip, "netmask": used.netmask, "gateway": used.gateway,
            "ipVersion": used.ipVersion}


def insert_nics(s: Session, data: CreateVmData, vm: dict[str, Any], pre: Prefetch) -> list[dict[str, Any]]:
    """One NIC per L3 (device ids in the plan's order), each inserted with the IP prefetched for
    its L3, then its IP reserved (the static one, else a prefetched one if still free, else any):
    when that is not the guessed one, the NIC row is updated to it."""
    plan, conn = data.plan, s.connection()
    nics = []
    for i, (nu, l3) in enumerate(zip(data.nic_uuids, plan.l3s, strict=True)):
        guesses = pre.ips.get(l3, [])
        guess = guesses[0] if guesses else None
        nic = dict(uuid=nu, vmInstanceUuid=vm["uuid"], l3NetworkUuid=l3, mac=ipam.new_mac(), driverType="virtio",
                   hypervisorType=vm["hypervisorType"], deviceId=i, internalName=f"vnic{vm['internalId']}.{i}",
                   **nic_ip(guess))
        conn.execute(_INSERT_NIC, nic)
        used = ipam.allocate_ip(s, l3, ip=plan.static_ips.get(l3), nic_uuid=nu, used_for="Vip", prefetched=guesses)
        if used != guess:
            nic.update(nic_ip(used))
            conn.execute(_NIC_IP, {"nic": nu, "used": used.uuid, "nip": used.ip, "mask": used.netmask,
                                   "gw": used.gateway, "ver": used.ipVersion})
        nics.append(nic)
    return nics


def quota_wants(plan: Plan) -> dict[str, int]:
    """What one VM counts against its account's quotas."""
    return {"vm.num": 1, "vm.cpuNum": plan.cpu, "vm.memorySize": plan.memory,
            "volume.data.num": len(plan.data_disks),
            "volume.capacity": plan.root_size + sum(d.size for d in plan.data_disks)}


def write(s: Session, data: CreateVmData, req: host_alloc.HostRequest, pre: Prefetch, ps_ratio: float,
          owner: Caller = SYSTEM) -> Rows:
    """The step's write, all in the caller's transaction: the owner's quotas checked, reservations,
    then the rows and their owner records."""
    plan = data.plan
    quota.check(s.connection(), owner, quota_wants(plan))
    place = reserve_host(s, data, req, pre)
    ps_uuid = reserve_storage(s, data, place, pre, ps_ratio)
    data.zone = place.host.zoneUuid
    conn = s.connection()
    vm = vm_row(data, place)
    conn.execute(_INSERT_VM, vm)
    volumes = volume_rows(data, ps_uuid, place.host_uuid)
    conn.execute(_INSERT_VOLUME, volumes)
    nics = insert_nics(s, data, vm, pre)
    ownership.own(conn, owner.account_uuid, "VmInstanceVO", [plan.vm_uuid])
    ownership.own(conn, owner.account_uuid, "VolumeVO", [v["uuid"] for v in volumes])
    add_tags(s, plan.vm_uuid, "VmInstanceVO", {"systemTags": plan.system_tags, "userTags": plan.user_tags})
    return Rows(vm, volumes, nics, agent_url(place.host, place.host_uuid) if place.host_uuid else None)


def undo(db: Database, data: CreateVmData) -> None:
    """allocate's rollback: the rows and tags deleted, each reservation released once."""
    with db.tx() as s:
        s.execute(delete(UsedIp).where(UsedIp.vmNicUuid.in_(data.nic_uuids)))
        s.execute(delete(VmNic).where(VmNic.uuid.in_(data.nic_uuids)))
        s.execute(delete(Volume).where(Volume.uuid.in_(data.volume_uuids)))
        s.execute(delete(VmInstance).where(VmInstance.uuid == data.vm_uuid))
        ownership.disown(s, [data.vm_uuid, *data.volume_uuids])
        forget_resource(s, data.vm_uuid)
        r = data.take_reserved()
        if r is not None:
            host_alloc.release(s, r.host, r.cpu, r.memory)
        pr = data.take_ps_reserved()
        if pr is not None:
            ps_alloc.release(s, pr.ps, pr.size, pr.ratio)
