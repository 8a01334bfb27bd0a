"""Garbage-collector jobs: agent cleanups that failed, retried until they succeed.

A row says what to call (an agent command on a primary storage, backup storage or host), on
which target, how often it was tried, when it runs next and why it failed last. `status` is
ZStack's GCStatus: Idle (due at `nextRunDate`), Processing (claimed by `managementNodeUuid`
until `leaseExpiry`), Done.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Timestamps, new_uuid, utcnow


class GarbageCollector(Timestamps, Base):
    __tablename__ = "gc_job"
    __inventory__ = "GarbageCollectorInventory"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    runnerClass: Mapped[str] = mapped_column(String(255))  # the agent command's class, e.g. DeleteVolumeCmd
    context: Mapped[str] = mapped_column(Text)  # JSON: target, path, command, attempts, lastError
    status: Mapped[str] = mapped_column(String(32), default="Idle", index=True)
    managementNodeUuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    type: Mapped[str] = mapped_column(String(32), default="TimeBased")
    resourceUuid: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # what it cleans
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    nextRunDate: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    leaseExpiry: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    lastError: Mapped[str | None] = mapped_column(Text, nullable=True)
