"""VM instances, their NICs and volumes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource, uuid_fk


class VmInstance(Resource, Base):
    __tablename__ = "vm_instance"
    __inventory__ = "VmInstanceInventory"
    # Pages sort by a field then uuid: (field, uuid) indexes serve that order (migration 0005).
    __table_args__ = (Index("ix_vm_instance_createDate_uuid", "createDate", "uuid"),
                      Index("ix_vm_instance_name_uuid", "name", "uuid"))
    name: Mapped[str] = mapped_column(String(255))  # indexed by ix_vm_instance_name_uuid
    zoneUuid: Mapped[str | None] = uuid_fk("zone.uuid", nullable=True, ondelete="SET NULL")
    clusterUuid: Mapped[str | None] = uuid_fk("cluster.uuid", nullable=True, ondelete="SET NULL")
    imageUuid: Mapped[str | None] = uuid_fk("image.uuid", nullable=True, ondelete="SET NULL")
    hostUuid: Mapped[str | None] = uuid_fk("host.uuid", nullable=True, ondelete="SET NULL")
    lastHostUuid: Mapped[str | None] = uuid_fk("host.uuid", nullable=True, ondelete="SET NULL")
    instanceOfferingUuid: Mapped[str | None] = uuid_fk("instance_offering.uuid", nullable=True,
                                                       ondelete="SET NULL")
    rootVolumeUuid: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    platform: Mapped[str | None] = mapped_column(String(64), nullable=True)
    architecture: Mapped[str | None] = mapped_column(String(32), nullable=True)
    defaultL3NetworkUuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    type: Mapped[str] = mapped_column(String(64), default="UserVm", index=True)
    hypervisorType: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    memorySize: Mapped[int] = mapped_column(BigInteger)
    reservedMemorySize: Mapped[int] = mapped_column(BigInteger, default=0)
    cpuNum: Mapped[int] = mapped_column(Integer)
    cpuSpeed: Mapped[int] = mapped_column(BigInteger, default=0)
    allocatorStrategy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(32), default="Created", index=True)
    guestOsType: Mapped[str | None] = mapped_column(String(255), nullable=True)
    internalId: Mapped[int] = mapped_column(BigInteger, default=0)


class VmNic(Resource, Base):
    __tablename__ = "vm_nic"
    __inventory__ = "VmNicInventory"
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)  # type: ignore[assignment]
    vmInstanceUuid: Mapped[str | None] = uuid_fk("vm_instance.uuid", nullable=True, ondelete="CASCADE")
    l3NetworkUuid: Mapped[str] = uuid_fk("l3_network.uuid")
    usedIpUuid: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    hypervisorType: Mapped[str | None] = mapped_column(String(32), nullable=True)
    netmask: Mapped[str | None] = mapped_column(String(64), nullable=True)
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metaData: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)
    driverType: Mapped[str] = mapped_column(String(64), default="virtio")
    internalName: Mapped[str] = mapped_column(String(128))
    deviceId: Mapped[int] = mapped_column(Integer, default=0)
    type: Mapped[str] = mapped_column(String(64), default="VNIC")
    state: Mapped[str] = mapped_column(String(32), default="enable")


class Volume(Resource, Base):
    __tablename__ = "volume"
    __inventory__ = "VolumeInventory"
    __table_args__ = (Index("ix_volume_createDate", "createDate"),)
    primaryStorageUuid: Mapped[str | None] = uuid_fk("primary_storage.uuid", nullable=True,
                                                     ondelete="SET NULL")
    vmInstanceUuid: Mapped[str | None] = uuid_fk("vm_instance.uuid", nullable=True, ondelete="SET NULL")
    diskOfferingUuid: Mapped[str | None] = uuid_fk("disk_offering.uuid", nullable=True, ondelete="SET NULL")
    rootImageUuid: Mapped[str | None] = uuid_fk("image.uuid", nullable=True, ondelete="SET NULL")
    installPath: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    format: Mapped[str] = mapped_column(String(32), default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    actualSize: Mapped[int] = mapped_column(BigInteger, default=0)
    deviceId: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    status: Mapped[str] = mapped_column(String(32), default="NotInstantiated", index=True)
    isShareable: Mapped[bool] = mapped_column(default=False)
    volumeQos: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lastDetachDate: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    lastAttachDate: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    lastVmInstanceUuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    protocol: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Not in the inventory: the host a local volume lives on (simulator and local storage).
    hostUuid: Mapped[str | None] = mapped_column(String(32), ForeignKey("host.uuid", ondelete="SET NULL"),
                                                 nullable=True, index=True)
