"""Management nodes, global configuration and API jobs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, utcnow


class ManagementNode(Base):
    __tablename__ = "management_node"
    __inventory__ = "ManagementNodeInventory"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostName: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=8080)
    joinDate: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    heartBeat: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class GlobalConfig(Base):
    __tablename__ = "global_config"
    __inventory__ = "GlobalConfigInventory"
    __table_args__ = (UniqueConstraint("category", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    defaultValue: Mapped[str] = mapped_column(String(2048))
    value: Mapped[str] = mapped_column(String(2048))


class GlobalConfigGeneration(Base):
    """One row (id 1) counting global-config changes: every process compares it with the
    generation its cache holds (mn.globalconfig.GlobalConfigStore.sync) and reloads on change."""

    __tablename__ = "global_config_generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(Integer, default=0)


class ApiJob(Base):
    """One API call. Async jobs are Processing until they end Succeeded or Failed.

    `flowState` journals the workflow's completed steps and data, so a restarted MN can roll
    back what a dead one left half-done.
    """

    __tablename__ = "api_job"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    apiName: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), default="Processing", index=True)
    request: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    syncKey: Mapped[str | None] = mapped_column(String(128), nullable=True)
    managementNodeUuid: Mapped[str] = mapped_column(String(32), index=True)
    flowState: Mapped[str | None] = mapped_column(Text, nullable=True)
    createDate: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finishedDate: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
