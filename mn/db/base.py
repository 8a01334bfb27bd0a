"""Declarative base and shared column helpers.

Column attribute names equal ZStack's inventory field names, so inventories and the query
engine are derived from the model, never written by hand.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib

from sqlalchemy import BigInteger, DateTime, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_uuid() -> str:
    """ZStack uuids: 32 lowercase hex characters, no dashes."""
    return uuidlib.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {int: BigInteger}

    # Set by each resource model: the ZStack inventory it serialises to.
    __inventory__: str | None = None


class Timestamps:
    createDate: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())
    lastOpDate: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow,
                                                    server_default=func.now())


class Resource(Timestamps):
    """A resource with a uuid primary key, a name and a description."""

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(String(2048), nullable=True)


def uuid_fk(target: str, nullable: bool = False, ondelete: str | None = None, index: bool = True):
    """A uuid column referencing `target` ("table.uuid")."""
    from sqlalchemy import ForeignKey

    return mapped_column(String(32), ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)
