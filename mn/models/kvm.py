"""KVM hosts, SFTP backup storages and local-storage capacity per host.

KVMHost and SftpBackupStorage extend the host and backup_storage rows (joined-table inheritance:
one extra row keyed by the same uuid, deleted with its parent by ON DELETE CASCADE), so generic
code keeps working on Host/BackupStorage while their own inventories add the SSH fields.
The password is stored, as ZStack does, to redeploy the agent; it is never in an inventory.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Timestamps, uuid_fk
from mn.models.infra import Host
from mn.models.storage import BackupStorage


class KVMHost(Host):
    __tablename__ = "kvm_host"
    __table_args__ = ()
    __inventory__ = "KVMHostInventory"
    uuid: Mapped[str] = mapped_column(String(32), ForeignKey("host.uuid", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sshPort: Mapped[int] = mapped_column(Integer, default=22)
    osDistribution: Mapped[str | None] = mapped_column(String(64), nullable=True)
    osRelease: Mapped[str | None] = mapped_column(String(64), nullable=True)
    osVersion: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The agent version (kvmagent code + settings hash) the last deploy installed.
    agentVersion: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SftpBackupStorage(BackupStorage):
    __tablename__ = "sftp_backup_storage"
    __table_args__ = ()
    __inventory__ = "SftpBackupStorageInventory"
    uuid: Mapped[str] = mapped_column(String(32), ForeignKey("backup_storage.uuid", ondelete="CASCADE"),
                                      primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    username: Mapped[str] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sshPort: Mapped[int] = mapped_column(Integer, default=22)


class LocalStorageHostRef(Timestamps, Base):
    """A host's share of a LocalStorage primary storage: its capacity, summed on the storage."""

    __tablename__ = "local_storage_host_ref"
    __inventory__ = "LocalStorageHostRefInventory"
    __table_args__ = (UniqueConstraint("primaryStorageUuid", "hostUuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    primaryStorageUuid: Mapped[str] = uuid_fk("primary_storage.uuid", ondelete="CASCADE")
    hostUuid: Mapped[str] = uuid_fk("host.uuid", ondelete="CASCADE")
    totalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    totalPhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availablePhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
