"""What a simulated host, primary storage and backup storage hold.

Plain __slots__ records, light enough for 10,000 hosts in one process. Each host and storage
carries its own lock; whoever mutates a record holds that record's lock (simulator.state and the
command modules do). VM records keep the protocol's own VolumeTO/NicTO objects.

VM lifecycle choice: like ZStack's KVM agent, which defines transient libvirt domains, a VM exists
on a host only while its domain exists (Running, Paused, or a state set out of band such as
Crashed). Stopping a VM removes it from the host: vmsync no longer lists it and a later start
defines it anew from the StartVmCmd.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from kvmagent.protocol import NicTO, VolumeTO, to_wire
from simulator import registry

VNC_BASE_PORT = 5900


class SimError(Exception):
    """A command the simulated agent refuses; its message becomes the reply's `error`."""


def vnc_port(vm_uuid: str) -> int:
    """A fake VNC port that is stable for a VM uuid (same answer on every host, every call)."""
    return VNC_BASE_PORT + zlib.crc32(vm_uuid.encode()) % 10000


@dataclass(slots=True, eq=False)
class SimVm:
    """A domain on a simulated host. Invariant: root volume first in volume_paths()."""

    uuid: str
    name: str
    state: str
    cpu_num: int
    memory: int
    cpu_speed: int = 0
    root_volume: VolumeTO | None = None
    data_volumes: list[VolumeTO] = field(default_factory=list)
    nics: list[NicTO] = field(default_factory=list)

    def volume_paths(self) -> list[str]:
        paths = [self.root_volume.installPath] if self.root_volume is not None else []
        paths.extend(v.installPath for v in self.data_volumes)
        return paths

    def view(self) -> dict[str, Any]:
        vols = [self.root_volume] if self.root_volume is not None else []
        return {
            "state": self.state, "name": self.name, "cpuNum": self.cpu_num, "memory": self.memory,
            "volumes": [to_wire(v) for v in vols + self.data_volumes],
            "nics": [to_wire(n) for n in self.nics], "vncPort": vnc_port(self.uuid),
        }


@dataclass(slots=True, eq=False)
class SimHost:
    """A simulated hypervisor host. `connected` is set by /host/connect and cleared by an agent
    restart; `bridges` maps bridge name to its VLAN id (None for a plain bridge)."""

    uuid: str
    cpu_num: int
    memory: int
    cpu_speed: int = 2600
    cpu_sockets: int = 1
    management_ip: str | None = None
    connected: bool = False
    send_command_url: str | None = None
    vms: dict[str, SimVm] = field(default_factory=dict)
    bridges: dict[str, int | None] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # plugins' state (simulator.registry.host_state)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def used_memory(self) -> int:
        """Memory held by every domain on the host (running, paused or crashed alike)."""
        return sum(vm.memory for vm in self.vms.values())

    def view(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid, "cpuNum": self.cpu_num, "cpuSockets": self.cpu_sockets,
            "cpuSpeed": self.cpu_speed, "memory": self.memory, "usedMemory": self.used_memory(),
            "managementIp": self.management_ip, "connected": self.connected,
            "sendCommandUrl": self.send_command_url,
            "vms": {u: vm.view() for u, vm in self.vms.items()},
            "bridges": sorted(self.bridges),
            **{key: self.extras.get(key, {}) for key in registry.HOST_STATE},
        }


@dataclass(slots=True, eq=False)
class SimVolume:
    volume_uuid: str
    size: int
    actual_size: int


@dataclass(slots=True, eq=False)
class SimPrimaryStorage:
    """Invariant: available == total - sum(size of volumes) as long as nobody resets capacity
    through the admin API (which sets both numbers as given)."""

    uuid: str
    total: int
    available: int
    url: str | None = None
    volumes: dict[str, SimVolume] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid, "totalCapacity": self.total, "availableCapacity": self.available,
            "url": self.url,
            "volumes": {p: {"volumeUuid": v.volume_uuid, "size": v.size, "actualSize": v.actual_size}
                        for p, v in self.volumes.items()},
        }


@dataclass(slots=True, eq=False)
class SimImage:
    image_uuid: str
    url: str
    size: int
    actual_size: int
    md5: str
    format: str


@dataclass(slots=True, eq=False)
class SimBackupStorage:
    """Invariant: available == total - sum(actual size of images), as for primary storage."""

    uuid: str
    total: int
    available: int
    url: str | None = None
    images: dict[str, SimImage] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid, "totalCapacity": self.total, "availableCapacity": self.available,
            "url": self.url,
            "images": {p: {"imageUuid": i.image_uuid, "url": i.url, "size": i.size,
                           "actualSize": i.actual_size, "md5Sum": i.md5, "format": i.format}
                       for p, i in self.images.items()},
        }
