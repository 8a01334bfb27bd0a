"""Zone, Cluster and Host. Host capacity lives on the host row so reservation is one CAS update."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.connection import CONNECTING
from mn.db.base import Base, Resource, uuid_fk


class Zone(Resource, Base):
    __tablename__ = "zone"
    __inventory__ = "ZoneInventory"
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    type: Mapped[str] = mapped_column(String(32), default="zstack")
    isDefault: Mapped[bool] = mapped_column(default=False)


class Cluster(Resource, Base):
    __tablename__ = "cluster"
    __inventory__ = "ClusterInventory"
    zoneUuid: Mapped[str] = uuid_fk("zone.uuid")
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    hypervisorType: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(32), default="zstack")
    architecture: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Host(Resource, Base):
    """A hypervisor host. `status` is connectivity, `state` is the admin state."""

    __tablename__ = "host"
    __table_args__ = (Index("ix_host_createDate", "createDate"),)
    __inventory__ = "HostInventory"
    zoneUuid: Mapped[str] = uuid_fk("zone.uuid")
    clusterUuid: Mapped[str] = uuid_fk("cluster.uuid")
    managementIp: Mapped[str] = mapped_column(String(255), index=True)
    hypervisorType: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    status: Mapped[str] = mapped_column(String(32), default=CONNECTING, index=True)
    architecture: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cpuNum: Mapped[int] = mapped_column(Integer, default=0)
    cpuSockets: Mapped[int] = mapped_column(Integer, default=1)
    totalCpuCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCpuCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    totalMemoryCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableMemoryCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    totalPhysicalMemory: Mapped[int] = mapped_column(BigInteger, default=0)
    # Not in the inventory: where the agent listens (derived for KVM, set for simulator hosts).
    agentUrl: Mapped[str | None] = mapped_column(String(1024), nullable=True)
