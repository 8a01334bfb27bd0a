"""A small cloud for running VM flows in the unit tier: one zone, cluster, host, L2/L3 with an IP
range, a primary and a backup storage with a Ready image, in a migrated SQLite database; agent
commands run on an in-process simulator (simulator.dispatch.run_command, no HTTP)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from kvmagent import protocol as p
from mn.config import MNConfig
from mn.context import Services
from mn.db.base import new_uuid
from mn.db.engine import Database
from mn.db.migrate import upgrade
from mn.errors import AGENT_ERROR, ApiError
from mn.globalconfig import GlobalConfigStore
from mn.iputil import validate_range
from mn.models import (
    ApiJob,
    BackupStorage,
    BackupStorageZoneRef,
    Cluster,
    Host,
    Image,
    ImageBackupStorageRef,
    IpRange,
    L2Network,
    L2NetworkClusterRef,
    L3Network,
    PrimaryStorage,
    PrimaryStorageClusterRef,
    SystemTag,
    UsedIp,
    VmInstance,
    VmNic,
    Volume,
    Zone,
)
from mn.services.identity import ensure_admin
from simulator.dispatch import BACKUP, HOSTS, PRIMARY, run_command
from simulator.state import SimState

GB = 1 << 30
MN = "m" * 32
ZONE, CLUSTER, HOST, L2, L3 = (c * 32 for c in "zchlx")
PS, BS, IMAGE = "a" * 32, "b" * 32, "e" * 32


class Crash(BaseException):
    """The MN dying in the middle of an agent call (after the agent acted)."""


@dataclass
class SimAgents:
    """AgentClient over an in-process simulator; URLs are `sim://<kind>/<uuid>`. `crash_after`
    names agent paths after whose (successful) run the MN 'dies' (raises Crash)."""

    state: SimState
    crash_after: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)

    def call(self, base_url: str, path: str, cmd: dict[str, Any] | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        kind, uuid = base_url.removeprefix("sim://").split("/")
        reply = run_command(self.state, kind, uuid, path, cmd or {})
        self.paths.append(path)
        if not reply.get("success"):
            raise ApiError(AGENT_ERROR, f"agent command {path} at {base_url} failed: {reply.get('error')}")
        if path in self.crash_after:
            raise Crash(path)
        return reply

    def send(self, base_url: str, cmd: Any, reply_cls: type | None = None, timeout: float | None = None) -> Any:
        reply = self.call(base_url, cmd.PATH, p.to_wire(cmd), timeout)
        return p.from_wire(reply_cls, reply) if reply_cls is not None else reply


class Jobs:
    """The JobRunner's finish(), all recovery needs of it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.finished: dict[str, str] = {}

    def finish(self, job_uuid: str, state: str, result: dict[str, Any]) -> None:
        self.finished[job_uuid] = state
        with self.db.tx() as s:
            s.get(ApiJob, job_uuid).state = state


def _cloud(db: Database, sim: SimState) -> None:
    sim.put_host(HOST, 8, 16 * GB)
    sim.put_primary_storage(PS, 100 * GB)
    sim.put_backup_storage(BS, 100 * GB)
    bridge = p.CreateBridgeCmd(physicalInterfaceName="eth0", bridgeName=p.bridge_name(L2), l2NetworkUuid=L2)
    assert run_command(sim, HOSTS, HOST, bridge.PATH, p.to_wire(bridge))["success"]
    dl = run_command(sim, BACKUP, BS, p.DownloadImageCmd.PATH,
                     p.to_wire(p.DownloadImageCmd(bsUuid=BS, imageUuid=IMAGE, url="http://i/img?size=1024")))
    assert dl["success"], dl
    spec = validate_range("10.0.0.10", "10.0.0.200", "255.255.255.0", "10.0.0.1")
    with db.tx() as s:
        s.add(Zone(uuid=ZONE, name="z"))
        s.add(BackupStorage(uuid=BS, name="bs", url="/bs", type="SimulatorBackupStorage", status="Connected"))
        s.flush()
        s.add(Cluster(uuid=CLUSTER, name="c", zoneUuid=ZONE, hypervisorType="Simulator"))
        s.add(L2Network(uuid=L2, name="l2", zoneUuid=ZONE, physicalInterface="eth0", type="L2NoVlanNetwork"))
        s.add(PrimaryStorage(uuid=PS, name="ps", zoneUuid=ZONE, url="/ps", type="SimulatorPrimaryStorage",
                             status="Connected", totalCapacity=100 * GB, availableCapacity=100 * GB,
                             agentUrl=f"sim://{PRIMARY}/{PS}"))
        s.add(Image(uuid=IMAGE, name="img", url="http://i/img", status="Ready", size=1024, format="qcow2"))
        s.flush()
        s.add(Host(uuid=HOST, name="h", zoneUuid=ZONE, clusterUuid=CLUSTER, managementIp="10.1.0.1",
                   hypervisorType="Simulator", status="Connected", totalCpuCapacity=8, availableCpuCapacity=8,
                   totalMemoryCapacity=16 * GB, availableMemoryCapacity=16 * GB, agentUrl=f"sim://{HOSTS}/{HOST}"))
        s.add(L3Network(uuid=L3, name="l3", zoneUuid=ZONE, l2NetworkUuid=L2))
        s.add(L2NetworkClusterRef(clusterUuid=CLUSTER, l2NetworkUuid=L2))
        s.add(PrimaryStorageClusterRef(clusterUuid=CLUSTER, primaryStorageUuid=PS))
        s.add(BackupStorageZoneRef(backupStorageUuid=BS, zoneUuid=ZONE))
        s.add(ImageBackupStorageRef(imageUuid=IMAGE, backupStorageUuid=BS, status="Ready",
                                    installPath=dl["installPath"]))
        s.flush()
        s.add(IpRange(uuid=new_uuid(), l3NetworkUuid=L3, name="r", startIp=spec.start_ip, endIp=spec.end_ip,
                      netmask=spec.netmask, gateway=spec.gateway, networkCidr=spec.cidr, prefixLen=spec.prefix,
                      startIpInLong=spec.start, endIpInLong=spec.end))


def migrated(path: Path) -> Path:
    """A migrated database at `path` with only the admin account, as an MN starts it (a module's
    template: migrating takes about 1 s)."""
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    ensure_admin(SimpleNamespace(db=db))
    db.dispose()
    return path


def copied(template: Path, tmp: Path) -> Database:
    """A copy of the template database (and any WAL beside it) in `tmp`."""
    for f in template.parent.iterdir():
        shutil.copy(f, tmp / f.name)
    return Database(f"sqlite:///{tmp / template.name}")


def services(db: Database, home: Path) -> Services:
    """Services over `db` (migrated, empty) with the small cloud in it and a simulator behind it."""
    sim = SimState()
    _cloud(db, sim)
    gconf = GlobalConfigStore(db)
    gconf.init()
    svc = Services(config=MNConfig(home=home, db_url=db.url), db=db, agents=SimAgents(sim),  # type: ignore[arg-type]
                   gconf=gconf, mn_uuid=MN)
    svc.jobs = Jobs(db)  # type: ignore[assignment]
    return svc


def new_job(db: Database) -> str:
    job = new_uuid()
    with db.tx() as s:
        s.add(ApiJob(uuid=job, apiName="CreateVmInstance", request="{}", managementNodeUuid=MN))
    return job


def create_msg(**kw: Any) -> dict[str, Any]:
    return {"name": "vm", "cpuNum": 2, "memorySize": GB, "imageUuid": IMAGE, "l3NetworkUuids": [L3],
            "dataDiskSizes": [GB], **kw}


def footprint(svc: Services) -> dict[str, Any]:
    """What VM creation changes, in the database and on the simulated agents."""
    sim = svc.agents.state  # type: ignore[attr-defined]
    with svc.db.ro() as s:
        host, ps = s.get(Host, HOST), s.get(PrimaryStorage, PS)
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                  for m in (VmInstance, Volume, VmNic, UsedIp, SystemTag)}
        return {"host": (host.availableCpuCapacity, host.availableMemoryCapacity),
                "ps": ps.availableCapacity, **counts,
                "sim-vms": sorted(sim.host(HOST).vms), "sim-volumes": sorted(sim.primary_storage(PS).volumes)}
