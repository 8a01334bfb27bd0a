"""Identity: accounts, their users, groups and policies, sessions, quotas, resource ownership
and sharing (ZStack's AccountVO, UserVO, UserGroupVO, PolicyVO, QuotaVO, AccountResourceRefVO,
SharedResourceVO).

Passwords are stored as salted PBKDF2 of the client's SHA-512 hex. Every resource a normal
account may own has exactly one AccountResourceRef row (resourceUuid is its primary key): its
owner. A SharedResource row gives one account (receiverAccountUuid) or everyone (toPublic) the
use of a resource it does not own.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mn.db.base import Base, Resource, Timestamps, new_uuid, utcnow, uuid_fk


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


class User(Resource, Base):
    """A user of an account: logs in by LogInByUser and may do what its policies allow."""

    __tablename__ = "account_user"
    __inventory__ = "UserInventory"
    __table_args__ = (UniqueConstraint("accountUuid", "name"),)
    accountUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE")
    passwordHash: Mapped[str] = mapped_column(String(255))
    passwordSalt: Mapped[str] = mapped_column(String(64))


class UserGroup(Resource, Base):
    __tablename__ = "user_group"
    __inventory__ = "UserGroupInventory"
    __table_args__ = (UniqueConstraint("accountUuid", "name"),)
    accountUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE")


class UserGroupUserRef(Timestamps, Base):
    __tablename__ = "user_group_user_ref"
    __inventory__ = "UserGroupUserRefInventory"
    userUuid: Mapped[str] = mapped_column(String(32), ForeignKey("account_user.uuid", ondelete="CASCADE"), primary_key=True)
    groupUuid: Mapped[str] = mapped_column(String(32), ForeignKey("user_group.uuid", ondelete="CASCADE"),
                                           primary_key=True, index=True)


class Policy(Timestamps, Base):
    """Statements: [{"name", "effect": "Allow"|"Deny", "actions": [pattern], "resources": [pattern]}]."""

    __tablename__ = "policy"
    __inventory__ = "PolicyInventory"
    __table_args__ = (UniqueConstraint("accountUuid", "name"),)
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    accountUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE")
    statementsJson: Mapped[str] = mapped_column(Text, default="[]")

    @property
    def statements(self) -> list[dict[str, Any]]:
        return json.loads(self.statementsJson or "[]")


class UserPolicyRef(Timestamps, Base):
    __tablename__ = "user_policy_ref"
    __inventory__ = "UserPolicyRefInventory"
    userUuid: Mapped[str] = mapped_column(String(32), ForeignKey("account_user.uuid", ondelete="CASCADE"), primary_key=True)
    policyUuid: Mapped[str] = mapped_column(String(32), ForeignKey("policy.uuid", ondelete="CASCADE"),
                                            primary_key=True, index=True)


class UserGroupPolicyRef(Timestamps, Base):
    __tablename__ = "user_group_policy_ref"
    __inventory__ = "UserGroupPolicyRefInventory"
    groupUuid: Mapped[str] = mapped_column(String(32), ForeignKey("user_group.uuid", ondelete="CASCADE"),
                                           primary_key=True)
    policyUuid: Mapped[str] = mapped_column(String(32), ForeignKey("policy.uuid", ondelete="CASCADE"),
                                            primary_key=True, index=True)


class Quota(Timestamps, Base):
    """One limit of an account (`name` such as vm.num); absent rows take the global default."""

    __tablename__ = "quota"
    __inventory__ = "QuotaInventory"
    __table_args__ = (UniqueConstraint("identityUuid", "name"),)
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    identityUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE")
    identityType: Mapped[str] = mapped_column(String(64), default="AccountVO")
    value: Mapped[int] = mapped_column(BigInteger)


class QuotaUsage(Base):
    """An upper bound of an account's usage of one quota, kept by mn.quota.check (never shown)."""

    __tablename__ = "quota_usage"
    accountUuid: Mapped[str] = mapped_column(String(32), ForeignKey("account.uuid", ondelete="CASCADE"),
                                             primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger)


class AccountResourceRef(Timestamps, Base):
    """The owner of one resource."""

    __tablename__ = "account_resource_ref"
    __inventory__ = "AccountResourceRefInventory"
    __table_args__ = (Index("ix_account_resource_ref_owner", "accountUuid", "resourceType", "resourceUuid"),)
    resourceUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    accountUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE", index=False)
    resourceType: Mapped[str] = mapped_column(String(255))
    concreteResourceType: Mapped[str] = mapped_column(String(255))


class SharedResource(Timestamps, Base):
    """A resource shared by its owner with one account, or with every account (toPublic)."""

    __tablename__ = "shared_resource"
    __inventory__ = "SharedResourceInventory"
    __table_args__ = (Index("ix_shared_resource_receiver", "receiverAccountUuid", "resourceUuid"),
                      Index("ix_shared_resource_public", "toPublic", "resourceUuid"),
                      Index("ix_shared_resource_resource", "resourceUuid"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ownerAccountUuid: Mapped[str] = uuid_fk("account.uuid", ondelete="CASCADE")
    receiverAccountUuid: Mapped[str | None] = uuid_fk("account.uuid", nullable=True, ondelete="CASCADE",
                                                       index=False)
    toPublic: Mapped[bool] = mapped_column(Boolean, default=False)
    resourceType: Mapped[str] = mapped_column(String(255))
    resourceUuid: Mapped[str] = mapped_column(String(32))
