"""Accounts and sessions. Passwords are stored as salted PBKDF2 of the client's SHA-512 hex."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource, new_uuid, utcnow, uuid_fk


class Account(Resource, Base):
    __tablename__ = "account"
    __inventory__ = "AccountInventory"
    type: Mapped[str] = mapped_column(String(32), default="Normal")
    passwordHash: Mapped[str] = mapped_column(String(255))
    passwordSalt: Mapped[str] = mapped_column(String(64))


class Session(Base):
    __tablename__ = "session"
    __inventory__ = "SessionInventory"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    accountUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE")
    userUuid: Mapped[str] = mapped_column(String(32))
    userType: Mapped[str] = mapped_column(String(64), default="AccountVO")
    expiredDate: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
