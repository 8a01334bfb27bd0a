"""The agent protocol: the one wire contract between the MN and a host or storage agent.

Served over HTTP by the real KVM agent and by the simulator; the MN reaches hosts and storages
only through it. Every command is `POST <agent base URL><PATH>` with a JSON body built from the
command dataclass; every reply is a JSON object with `success` (bool) and, on failure, `error`
(a message), plus the reply dataclass's fields.

Base URLs: a KVM host's agent is `http://<managementIp>:7070`; the simulator serves host `H` at
`<simulator>/hosts/H`, primary storage `P` at `<simulator>/primary-storage/P` and backup storage
`B` at `<simulator>/backup-storage/B`. Agents report events they did not cause (a VM that shut
itself down) by POSTing a HostEvent to the `sendCommandUrl` they were given on connect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

DEFAULT_PORT = 7070

# VM states an agent reports (ZStack's names).
VM_RUNNING = "Running"
VM_STOPPED = "Stopped"
VM_PAUSED = "Paused"
VM_UNKNOWN = "Unknown"

T = TypeVar("T")


def to_wire(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def from_wire(cls: type[T], data: dict[str, Any]) -> T:
    """Build a dataclass from a wire dict, ignoring unknown keys and nesting typed fields."""
    kwargs = {}
    for name in (f.name for f in dataclasses.fields(cls)):  # type: ignore[arg-type]
        if name not in data:
            continue
        v = data[name]
        nested = NESTED.get((cls.__name__, name))
        if nested is not None and v is not None:
            v = [from_wire(nested, x) for x in v] if isinstance(v, list) else from_wire(nested, v)
        kwargs[name] = v
    return cls(**kwargs)


@dataclass
class Reply:
    success: bool = True
    error: str | None = None


# ---- transfer objects -------------------------------------------------------------------------

@dataclass
class VolumeTO:
    volumeUuid: str
    installPath: str
    deviceId: int = 0
    format: str = "qcow2"
    size: int = 0
    deviceType: str = "file"


@dataclass
class NicTO:
    uuid: str
    mac: str
    bridgeName: str
    deviceId: int = 0
    ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    driverType: str = "virtio"
    l3NetworkUuid: str | None = None


# ---- host -------------------------------------------------------------------------------------

@dataclass
class ConnectCmd:
    PATH: ClassVar[str] = "/host/connect"
    hostUuid: str
    sendCommandUrl: str | None = None


@dataclass
class ConnectRsp(Reply):
    hostUuid: str | None = None
    libvirtVersion: str | None = None
    qemuVersion: str | None = None
    agentVersion: str | None = None  # the deployed agent's VERSION (None when run from a checkout)


@dataclass
class EchoCmd:
    PATH: ClassVar[str] = "/host/echo"


@dataclass
class PingCmd:
    PATH: ClassVar[str] = "/host/ping"
    hostUuid: str


@dataclass
class PingRsp(Reply):
    hostUuid: str | None = None


@dataclass
class HostFactCmd:
    PATH: ClassVar[str] = "/host/facts"
    hostUuid: str


@dataclass
class HostFactRsp(Reply):
    hypervisorType: str = "KVM"
    osDistribution: str | None = None
    osVersion: str | None = None
    architecture: str = "x86_64"
    cpuModelName: str | None = None
    cpuNum: int = 0
    cpuSockets: int = 1
    cpuSpeed: int = 0
    totalMemory: int = 0
    hostname: str | None = None


@dataclass
class HostCapacityCmd:
    PATH: ClassVar[str] = "/host/capacity"
    hostUuid: str


@dataclass
class HostCapacityRsp(Reply):
    cpuNum: int = 0
    cpuSockets: int = 1
    cpuSpeed: int = 0
    totalMemory: int = 0
    usedMemory: int = 0


@dataclass
class HostEvent:
    """Posted by an agent to the MN's sendCommandUrl."""

    hostUuid: str
    type: str  # "VmStateChanged"
    vmUuid: str | None = None
    state: str | None = None
    reason: str | None = None


# ---- VM ---------------------------------------------------------------------------------------

@dataclass
class StartVmCmd:
    PATH: ClassVar[str] = "/vm/start"
    vmInstanceUuid: str
    vmName: str
    cpuNum: int
    memory: int
    rootVolume: VolumeTO
    hostUuid: str | None = None
    cpuSpeed: int = 0
    dataVolumes: list[VolumeTO] = field(default_factory=list)
    nics: list[NicTO] = field(default_factory=list)
    bootDev: str = "hd"
    consolePassword: str | None = None


@dataclass
class StartVmRsp(Reply):
    vncPort: int | None = None


@dataclass
class VmCmd:
    """Stop, reboot, pause, resume and destroy share this shape."""

    uuid: str
    hostUuid: str | None = None
    type: str = "grace"  # for stop: grace (ACPI then force after timeout) or cold (force)
    timeout: int = 60


class StopVmCmd(VmCmd):
    PATH: ClassVar[str] = "/vm/stop"


class RebootVmCmd(VmCmd):
    PATH: ClassVar[str] = "/vm/reboot"


class PauseVmCmd(VmCmd):
    PATH: ClassVar[str] = "/vm/pause"


class ResumeVmCmd(VmCmd):
    PATH: ClassVar[str] = "/vm/resume"


class DestroyVmCmd(VmCmd):
    PATH: ClassVar[str] = "/vm/destroy"


@dataclass
class MigrateVmCmd:
    PATH: ClassVar[str] = "/vm/migrate"
    vmUuid: str
    srcHostUuid: str
    destHostUuid: str
    destHostIp: str
    destAgentUrl: str
    storageMigrationPolicy: str | None = None


@dataclass
class VmSyncCmd:
    PATH: ClassVar[str] = "/vm/vmsync"
    hostUuid: str


@dataclass
class VmSyncRsp(Reply):
    states: dict[str, str] = field(default_factory=dict)


@dataclass
class VolumeAttachCmd:
    vmUuid: str
    volume: VolumeTO
    hostUuid: str | None = None


class AttachDataVolumeCmd(VolumeAttachCmd):
    PATH: ClassVar[str] = "/vm/attachdatavolume"


class DetachDataVolumeCmd(VolumeAttachCmd):
    PATH: ClassVar[str] = "/vm/detachdatavolume"


@dataclass
class NicAttachCmd:
    vmUuid: str
    nic: NicTO
    hostUuid: str | None = None


class AttachNicCmd(NicAttachCmd):
    PATH: ClassVar[str] = "/vm/attachnic"


class DetachNicCmd(NicAttachCmd):
    PATH: ClassVar[str] = "/vm/detachnic"


@dataclass
class GetVncPortCmd:
    PATH: ClassVar[str] = "/vm/getvncport"
    vmUuid: str


@dataclass
class GetVncPortRsp(Reply):
    port: int | None = None


# ---- L2 networks ------------------------------------------------------------------------------

@dataclass
class BridgeCmd:
    physicalInterfaceName: str
    bridgeName: str
    l2NetworkUuid: str
    vlan: int | None = None
    hostUuid: str | None = None


class CreateBridgeCmd(BridgeCmd):
    PATH: ClassVar[str] = "/network/l2novlan/createbridge"


class CreateVlanBridgeCmd(BridgeCmd):
    PATH: ClassVar[str] = "/network/l2vlan/createbridge"


class CheckBridgeCmd(BridgeCmd):
    PATH: ClassVar[str] = "/network/l2/checkbridge"


class DeleteBridgeCmd(BridgeCmd):
    PATH: ClassVar[str] = "/network/l2/deletebridge"


def bridge_name(l2_network_uuid: str, vlan: int | None = None) -> str:
    """Linux bridge names are at most 15 characters."""
    return f"br_{l2_network_uuid[:6]}_{vlan}" if vlan is not None else f"br_{l2_network_uuid[:12]}"


# ---- primary storage --------------------------------------------------------------------------

@dataclass
class PrimaryStorageCmd:
    psUuid: str
    hostUuid: str | None = None
    url: str | None = None


class InitPrimaryStorageCmd(PrimaryStorageCmd):
    PATH: ClassVar[str] = "/primarystorage/init"


class PrimaryStorageCapacityCmd(PrimaryStorageCmd):
    PATH: ClassVar[str] = "/primarystorage/capacity"


@dataclass
class CapacityRsp(Reply):
    totalCapacity: int = 0
    availableCapacity: int = 0


@dataclass
class CreateEmptyVolumeCmd:
    PATH: ClassVar[str] = "/primarystorage/volume/createempty"
    psUuid: str
    volumeUuid: str
    size: int
    hostUuid: str | None = None
    format: str = "qcow2"
    # Where to create the volume, chosen by the MN so that its crash recovery can delete a volume
    # whose creation was in flight; None: the agent chooses (and replies with it).
    installPath: str | None = None


@dataclass
class CreateVolumeFromImageCmd:
    PATH: ClassVar[str] = "/primarystorage/volume/createfromimage"
    psUuid: str
    volumeUuid: str
    imageUuid: str
    imageInstallPath: str
    backupStorageUuid: str
    backupStorageUrl: str | None = None
    size: int = 0
    hostUuid: str | None = None
    # How a real host fetches the image into its cache: for SftpBackupStorage, over SSH from
    # backupStorageUsername@backupStorageHostname:backupStorageSshPort with the private key `sshKey`,
    # a key the storage issued for this one transfer (zstack_plugins/sftp/protocol.py), never the MN's.
    backupStorageType: str = "Simulator"
    backupStorageHostname: str | None = None
    backupStorageSshPort: int = 22
    backupStorageUsername: str | None = None
    sshKey: str | None = None
    imageMd5Sum: str | None = None  # when given, the fetched image must have this md5
    installPath: str | None = None  # chosen by the MN (see CreateEmptyVolumeCmd.installPath)


BS_TYPE_SIMULATOR = "Simulator"


@dataclass
class VolumeRsp(Reply):
    installPath: str | None = None
    size: int = 0
    actualSize: int = 0


@dataclass
class DeleteVolumeCmd:
    PATH: ClassVar[str] = "/primarystorage/volume/delete"
    psUuid: str
    installPath: str
    hostUuid: str | None = None


@dataclass
class CreateVolumeSnapshotCmd:
    """Snapshot a volume that no VM is running on: its current file becomes the read-only snapshot
    (installPath in the reply) and the volume continues, at the same installPath, as a new qcow2
    on top of it. Deleting the volume deletes its snapshots."""

    PATH: ClassVar[str] = "/primarystorage/volume/snapshot"
    psUuid: str
    volumeUuid: str
    installPath: str
    snapshotUuid: str
    hostUuid: str | None = None


@dataclass
class VolumeSnapshotRsp(Reply):
    installPath: str | None = None  # the snapshot's file
    volumeInstallPath: str | None = None  # the volume's (unchanged) path
    size: int = 0  # virtual size
    actualSize: int = 0  # what the snapshot occupies


# ---- backup storage ---------------------------------------------------------------------------

@dataclass
class BackupStorageCmd:
    bsUuid: str
    url: str | None = None


class ConnectBackupStorageCmd(BackupStorageCmd):
    PATH: ClassVar[str] = "/backupstorage/connect"


class BackupStorageCapacityCmd(BackupStorageCmd):
    PATH: ClassVar[str] = "/backupstorage/capacity"


@dataclass
class DownloadImageCmd:
    PATH: ClassVar[str] = "/backupstorage/image/download"
    bsUuid: str
    imageUuid: str
    url: str
    format: str = "qcow2"
    # The MN's URL policy (kvmagent.urlcheck): hosts allowed although loopback/link-local, and the
    # directories file:// URLs and absolute paths may read below (none: local files refused).
    allowedUrlHosts: list[str] | None = None
    allowedFileDirectories: list[str] | None = None


@dataclass
class DownloadImageRsp(Reply):
    installPath: str | None = None
    size: int = 0
    actualSize: int = 0
    md5Sum: str | None = None
    format: str | None = None


@dataclass
class DeleteImageCmd:
    PATH: ClassVar[str] = "/backupstorage/image/delete"
    bsUuid: str
    installPath: str


NESTED: dict[tuple[str, str], type] = {
    ("StartVmCmd", "rootVolume"): VolumeTO,
    ("StartVmCmd", "dataVolumes"): VolumeTO,
    ("StartVmCmd", "nics"): NicTO,
    ("AttachDataVolumeCmd", "volume"): VolumeTO,
    ("DetachDataVolumeCmd", "volume"): VolumeTO,
    ("AttachNicCmd", "nic"): NicTO,
    ("DetachNicCmd", "nic"): NicTO,
}

# Every command class by path: what an agent must serve.
COMMANDS: dict[str, type] = {
    c.PATH: c for c in (
        ConnectCmd, EchoCmd, PingCmd, HostFactCmd, HostCapacityCmd, StartVmCmd, StopVmCmd, RebootVmCmd,
        PauseVmCmd, ResumeVmCmd, DestroyVmCmd, MigrateVmCmd, VmSyncCmd, AttachDataVolumeCmd,
        DetachDataVolumeCmd, AttachNicCmd, DetachNicCmd, GetVncPortCmd, CreateBridgeCmd,
        CreateVlanBridgeCmd, CheckBridgeCmd, DeleteBridgeCmd, InitPrimaryStorageCmd,
        PrimaryStorageCapacityCmd, CreateEmptyVolumeCmd, CreateVolumeFromImageCmd, DeleteVolumeCmd,
        CreateVolumeSnapshotCmd,
        ConnectBackupStorageCmd, BackupStorageCapacityCmd, DownloadImageCmd, DeleteImageCmd,
    )
}

# Commands an MN sends in the async form (taskuuid + callbackurl headers; see kvmagent.server):
# they may outlast an HTTP read timeout.
TASK_HEADER, CALLBACK_HEADER = "taskuuid", "callbackurl"
# With the async form, the MN may add this header (seconds, a decimal): an agent whose command
# ends within that time replies inline, as for a plain call, and sends no callback; one still
# running then answers {"async": true} and calls back when done. Agents that ignore it always
# call back; the MN accepts either.
REPLY_WITHIN_HEADER = "replywithin"


def reply_within(value: str | None, cap: float = 10.0) -> float:
    """The seconds a `replywithin` header grants (0 when absent or not a number; at most `cap`)."""
    try:
        return min(cap, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0

ASYNC_PATHS: set[str] = {
    StartVmCmd.PATH, StopVmCmd.PATH, RebootVmCmd.PATH, MigrateVmCmd.PATH, CreateVolumeFromImageCmd.PATH,
    DownloadImageCmd.PATH,
}


def register(*commands: type, long: bool = False, nested: dict[str, type] | None = None) -> None:
    """Add commands to the contract: a plugin's protocol module calls this at import, so the MN,
    the agents and the simulator (which import it too) know them. `long` commands use the async
    form (ASYNC_PATHS); `nested` names the fields holding transfer objects (field -> dataclass),
    as NESTED does. A path registered twice by different classes is an error."""
    for cls in commands:
        path = cls.PATH  # type: ignore[attr-defined]
        if COMMANDS.get(path, cls) is not cls:
            raise ValueError(f"agent protocol path {path} is already {COMMANDS[path].__name__}, not {cls.__name__}")
        COMMANDS[path] = cls
        for fname, to in (nested or {}).items():
            NESTED[(cls.__name__, fname)] = to
        if long:
            ASYNC_PATHS.add(path)
