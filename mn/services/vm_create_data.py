"""The create-vm flow's data, typed: a view of the dict the flow engine carries and journals.

The dict stays the storage. `CreateVmData` reads and writes it on every attribute access, so the
journal entry `allocate` writes inside its transaction holds whatever the steps set until then,
and a dict read back from a journal (crash recovery) is viewed exactly like the live one. The
records in it are immutable dataclasses, converted from and to their JSON objects when read and
written; the view keeps none of them apart from the dict except the Plan it read (plans never
change). A step makes its own view (`typed`), so the Plan is read once per step.

The JSON shape is the one the dict-based steps wrote (an MN must recover the journal an older
MN left, so a key never changes meaning and a new key must be optional):
  plan             Plan.to_json(): its field names (in `image` and `data_disks`: the rows' names)
  rootVolumeUuid, dataVolumeUuids, nicUuids
                   chosen before the flow runs (rollbacks delete rows by them)
  reserved         Reservation, InstantStart only: host capacity; its rollback releases it once
  psReserved       PsReservation, not JustCreate: primary-storage capacity, released once
  paths            {volume uuid: VolumePlace}: where each volume goes, journaled before any agent
                   creates it, so recovery can delete a volume whose creation was in flight
  zone             the zone of the host chosen
The keys above are set by the end of allocate's write, so its journal entry (create-vm's only
one) holds them: every rollback needs nothing else. The keys below live only between the steps
of a running flow:
  source           image_source() fields for root-volume (read by allocate, popped by root-volume)
  start            StartCall: the StartVmCmd allocate built, sent by `start`
  installed        {volume uuid: Installed}: volumes as their agents created them (finalize)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mn.db.base import new_uuid

INSTANT_START, CREATE_STOPPED, JUST_CREATE = "InstantStart", "CreateStopped", "JustCreate"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """The image a VM is created from, as resolved (JSON keys: the image row's field names)."""

    uuid: str
    size: int
    format: str | None
    media_type: str
    platform: str | None
    architecture: str | None
    guest_os_type: str | None

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> ImageRef:
        return cls(j["uuid"], j["size"], j["format"], j["mediaType"], j["platform"], j["architecture"],
                   j["guestOsType"])

    def to_json(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "size": self.size, "format": self.format, "mediaType": self.media_type,
                "platform": self.platform, "architecture": self.architecture, "guestOsType": self.guest_os_type}


@dataclass(frozen=True, slots=True)
class DataDisk:
    """One data volume to create empty: its size and the disk offering it came from, if any."""

    size: int
    disk_offering_uuid: str | None = None

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> DataDisk:
        return cls(j["size"], j["diskOfferingUuid"])

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "diskOfferingUuid": self.disk_offering_uuid}


@dataclass
class Plan:
    """Everything CreateVmInstance decided before any side effect; never changed once resolved."""

    vm_uuid: str
    name: str
    cpu: int
    memory: int
    reserved_memory: int
    offering_uuid: str | None
    allocator_strategy: str
    image: ImageRef
    root_size: int
    root_disk_offering: str | None
    data_disks: list[DataDisk]
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

    @property
    def starts(self) -> bool:
        """InstantStart: the VM takes host capacity and is started."""
        return self.strategy == INSTANT_START

    @property
    def instantiates(self) -> bool:
        """Not JustCreate: the volumes get primary storage and are created by agents."""
        return self.strategy != JUST_CREATE

    @property
    def volume_bytes(self) -> int:
        """The virtual size of all the VM's volumes (what the primary storage reserves)."""
        return self.root_size + sum(d.size for d in self.data_disks)

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> Plan:
        return cls(**{**j, "image": ImageRef.from_json(j["image"]),
                      "data_disks": [DataDisk.from_json(x) for x in j["data_disks"]]})

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)  # the fields, in order
        out["image"] = self.image.to_json()
        out["data_disks"] = [d.to_json() for d in self.data_disks]
        return out


@dataclass(frozen=True, slots=True)
class Reservation:
    """Host capacity allocate took: CPUs and memory (over-provisioning applied) on `host`."""

    host: str
    cpu: int
    memory: int

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> Reservation:
        return cls(j["host"], j["cpu"], j["memory"])

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "cpu": self.cpu, "memory": self.memory}


@dataclass(frozen=True, slots=True)
class PsReservation:
    """Primary-storage capacity allocate took: `size` bytes at over-provisioning `ratio` on `ps`."""

    ps: str
    size: int
    ratio: float

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> PsReservation:
        return cls(j["ps"], j["size"], j["ratio"])

    def to_json(self) -> dict[str, Any]:
        return {"ps": self.ps, "size": self.size, "ratio": self.ratio}


@dataclass(frozen=True, slots=True)
class VolumePlace:
    """Where a volume goes: the agent creating it (`url`), its storage, its host (None unless
    started) and its install path, which the MN chooses (so deleting it needs no agent reply)."""

    url: str
    ps: str
    host: str | None
    path: str

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> VolumePlace:
        return cls(j["url"], j["ps"], j["host"], j["path"])

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "ps": self.ps, "host": self.host, "path": self.path}


@dataclass(frozen=True, slots=True)
class Installed:
    """A volume as its agent created it; finalize writes these to the volume's row."""

    path: str
    size: int
    actual_size: int

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> Installed:
        return cls(j["path"], j["size"], j["actualSize"])

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "actualSize": self.actual_size}


@dataclass(frozen=True, slots=True)
class StartCall:
    """The start command allocate built: the host agent's address and StartVmCmd in wire form
    (`cmd` is the journaled dict itself, not a copy: `start` fixes its volumes in place)."""

    url: str
    cmd: dict[str, Any]

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> StartCall:
        return cls(j["url"], j["cmd"])

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "cmd": self.cmd}


class CreateVmData:
    """The typed view of one create-vm flow's data dict (`raw`; keys in the module docstring)."""

    __slots__ = ("raw", "_plan")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self._plan: Plan | None = None

    @classmethod
    def new(cls, plan: Plan) -> CreateVmData:
        """Fresh data for a plan, with the uuids of its volumes and NICs chosen up front."""
        return cls({"plan": plan.to_json(), "rootVolumeUuid": new_uuid(),
                    "dataVolumeUuids": [new_uuid() for _ in plan.data_disks],
                    "nicUuids": [new_uuid() for _ in plan.l3s]})

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = Plan.from_json(self.raw["plan"])
        return self._plan

    @property
    def vm_uuid(self) -> str:
        return self.raw["plan"]["vm_uuid"]  # without building the Plan

    @property
    def root_volume_uuid(self) -> str:
        return self.raw["rootVolumeUuid"]

    @property
    def data_volume_uuids(self) -> list[str]:
        return self.raw["dataVolumeUuids"]

    @property
    def volume_uuids(self) -> list[str]:
        """The root volume's uuid, then the data volumes' in device order."""
        return [self.raw["rootVolumeUuid"], *self.raw["dataVolumeUuids"]]

    @property
    def nic_uuids(self) -> list[str]:
        return self.raw["nicUuids"]

    @property
    def reserved(self) -> Reservation | None:
        r = self.raw.get("reserved")
        return None if r is None else Reservation.from_json(r)

    @reserved.setter
    def reserved(self, r: Reservation) -> None:
        self.raw["reserved"] = r.to_json()

    def take_reserved(self) -> Reservation | None:
        """The host reservation, removed from the data (so a second rollback releases nothing)."""
        r = self.raw.pop("reserved", None)
        return None if r is None else Reservation.from_json(r)

    @property
    def host_uuid(self) -> str:
        """The host the VM holds capacity on (InstantStart, once allocated)."""
        return self.raw["reserved"]["host"]

    @property
    def ps_reserved(self) -> PsReservation | None:
        r = self.raw.get("psReserved")
        return None if r is None else PsReservation.from_json(r)

    @ps_reserved.setter
    def ps_reserved(self, r: PsReservation) -> None:
        self.raw["psReserved"] = r.to_json()

    def take_ps_reserved(self) -> PsReservation | None:
        """The primary-storage reservation, removed from the data (released once)."""
        r = self.raw.pop("psReserved", None)
        return None if r is None else PsReservation.from_json(r)

    @property
    def places(self) -> dict[str, VolumePlace]:
        return {u: VolumePlace.from_json(w) for u, w in self.raw.get("paths", {}).items()}

    @places.setter
    def places(self, places: dict[str, VolumePlace]) -> None:
        self.raw["paths"] = {u: w.to_json() for u, w in places.items()}

    def place(self, volume_uuid: str) -> VolumePlace:
        """Where the volume goes (allocate placed it; `places` also answers before that)."""
        return VolumePlace.from_json(self.raw["paths"][volume_uuid])

    @property
    def zone(self) -> str:
        return self.raw["zone"]

    @zone.setter
    def zone(self, zone_uuid: str) -> None:
        self.raw["zone"] = zone_uuid

    @property
    def source(self) -> dict[str, Any] | None:
        return self.raw.get("source")

    @source.setter
    def source(self, fields: dict[str, Any]) -> None:
        self.raw["source"] = fields

    def take_source(self) -> dict[str, Any] | None:
        """The image source allocate read, removed from the data (used once)."""
        return self.raw.pop("source", None)

    @property
    def start(self) -> StartCall:
        return StartCall.from_json(self.raw["start"])

    @start.setter
    def start(self, call: StartCall) -> None:
        self.raw["start"] = call.to_json()

    @property
    def installed(self) -> dict[str, Installed]:
        return {u: Installed.from_json(i) for u, i in self.raw.get("installed", {}).items()}

    def add_installed(self, volume_uuid: str, volume: Installed) -> None:
        self.raw.setdefault("installed", {})[volume_uuid] = volume.to_json()

    def drop_installed(self, volume_uuid: str) -> None:
        self.raw.get("installed", {}).pop(volume_uuid, None)


def typed(fn: Callable[[Any, CreateVmData], None]) -> Callable[[Any, dict[str, Any]], None]:
    """A flow step (or rollback) written against the view, as the flow engine calls it: with
    the data dict, live or read back from a journal."""

    @functools.wraps(fn)
    def step(ctx: Any, data: dict[str, Any]) -> None:
        fn(ctx, CreateVmData(data))

    return step
