"""Instance and disk offerings."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource


class InstanceOffering(Resource, Base):
    __tablename__ = "instance_offering"
    __inventory__ = "InstanceOfferingInventory"
    cpuNum: Mapped[int] = mapped_column(Integer)
    cpuSpeed: Mapped[int] = mapped_column(Integer, default=0)
    memorySize: Mapped[int] = mapped_column(BigInteger)
    reservedMemorySize: Mapped[int] = mapped_column(BigInteger, default=0)
    type: Mapped[str] = mapped_column(String(64), default="UserVm")
    allocatorStrategy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sortKey: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)


class DiskOffering(Resource, Base):
    __tablename__ = "disk_offering"
    __inventory__ = "DiskOfferingInventory"
    diskSize: Mapped[int] = mapped_column(BigInteger)
    sortKey: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(32), default="Enabled", index=True)
    type: Mapped[str] = mapped_column(String(64), default="zstack")
    allocatorStrategy: Mapped[str | None] = mapped_column(String(64), nullable=True)
