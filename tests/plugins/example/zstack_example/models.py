"""An XML hook script (ZStack's XmlHookInventory), with the host it was checked on."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource, uuid_fk


class XmlHook(Resource, Base):
    __tablename__ = "example_xml_hook"
    __inventory__ = "XmlHookInventory"
    type: Mapped[str] = mapped_column(String(64), default="Customization")
    hookScript: Mapped[str] = mapped_column(Text)
    libvirtVersion: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Not in the inventory: the host the script was checked on (the cascade's parent).
    hostUuid: Mapped[str] = uuid_fk("host.uuid")
