"""Local primary storage: each host's share of a LocalStorage primary storage, summed on the storage."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Timestamps, uuid_fk


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
