"""Primary storage, backup storage, images and their attachment refs."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mn.connection import CONNECTING
from mn.db.base import Base, Resource, Timestamps, uuid_fk


class PrimaryStorage(Resource, Base):
    __tablename__ = "primary_storage"
    __inventory__ = "PrimaryStorageInventory"
    zoneUuid: Mapped[str] = uuid_fk("zone.uuid")
    url: Mapped[str] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    status: Mapped[str] = mapped_column(String(32), default=CONNECTING, index=True)
    mountPath: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    totalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    totalPhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availablePhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    systemUsedCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    agentUrl: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class PrimaryStorageClusterRef(Timestamps, Base):
    __tablename__ = "primary_storage_cluster_ref"
    __inventory__ = "PrimaryStorageClusterRefInventory"
    __table_args__ = (UniqueConstraint("clusterUuid", "primaryStorageUuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clusterUuid: Mapped[str] = uuid_fk("cluster.uuid", ondelete="CASCADE")
    primaryStorageUuid: Mapped[str] = uuid_fk("primary_storage.uuid", ondelete="CASCADE")


class BackupStorage(Resource, Base):
    __tablename__ = "backup_storage"
    __inventory__ = "BackupStorageInventory"
    url: Mapped[str] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    status: Mapped[str] = mapped_column(String(32), default=CONNECTING, index=True)
    totalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    agentUrl: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class BackupStorageZoneRef(Timestamps, Base):
    __tablename__ = "backup_storage_zone_ref"
    __inventory__ = "BackupStorageZoneRefInventory"
    __table_args__ = (UniqueConstraint("backupStorageUuid", "zoneUuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    backupStorageUuid: Mapped[str] = uuid_fk("backup_storage.uuid", ondelete="CASCADE")
    zoneUuid: Mapped[str] = uuid_fk("zone.uuid", ondelete="CASCADE")


class Image(Resource, Base):
    __tablename__ = "image"
    __inventory__ = "ImageInventory"
    __table_args__ = (Index("ix_image_createDate", "createDate"),)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    status: Mapped[str] = mapped_column(String(32), default="Downloading", index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    actualSize: Mapped[int] = mapped_column(BigInteger, default=0)
    md5Sum: Mapped[str | None] = mapped_column(String(255), nullable=True)
    url: Mapped[str] = mapped_column(String(2048))
    mediaType: Mapped[str] = mapped_column(String(64), default="RootVolumeTemplate", index=True)
    guestOsType: Mapped[str | None] = mapped_column(String(255), nullable=True)
    type: Mapped[str] = mapped_column(String(64), default="zstack")
    platform: Mapped[str] = mapped_column(String(64), default="Linux")
    architecture: Mapped[str] = mapped_column(String(32), default="x86_64")
    format: Mapped[str] = mapped_column(String(32), default="qcow2")
    system: Mapped[bool] = mapped_column(default=False)
    virtio: Mapped[bool] = mapped_column(default=True)


class ImageBackupStorageRef(Timestamps, Base):
    __tablename__ = "image_backup_storage_ref"
    __inventory__ = "ImageBackupStorageRefInventory"
    __table_args__ = (UniqueConstraint("imageUuid", "backupStorageUuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    imageUuid: Mapped[str] = mapped_column(String(32), ForeignKey("image.uuid", ondelete="CASCADE"), index=True)
    backupStorageUuid: Mapped[str] = uuid_fk("backup_storage.uuid", ondelete="CASCADE")
    installPath: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="Downloading")
    exportMd5Sum: Mapped[str | None] = mapped_column(String(255), nullable=True)
    exportUrl: Mapped[str | None] = mapped_column(String(2048), nullable=True)
