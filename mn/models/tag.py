"""System and user tags: free-form strings attached to any resource by uuid."""

from __future__ import annotations

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Timestamps, new_uuid


class _Tag(Timestamps):
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    resourceUuid: Mapped[str] = mapped_column(String(32), index=True)
    resourceType: Mapped[str] = mapped_column(String(64), index=True)
    tag: Mapped[str] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(32))


class SystemTag(_Tag, Base):
    __tablename__ = "system_tag"
    __inventory__ = "SystemTagInventory"
    __table_args__ = (Index("ix_system_tag_tag_resourceUuid", "tag", "resourceUuid", mysql_length={"tag": 255}),)
    inherent: Mapped[bool] = mapped_column(default=False)


class UserTag(_Tag, Base):
    __tablename__ = "user_tag"
    __inventory__ = "UserTagInventory"
    __table_args__ = (Index("ix_user_tag_tag_resourceUuid", "tag", "resourceUuid", mysql_length={"tag": 255}),)
    tagPatternUuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
