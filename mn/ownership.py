"""Who may see and who owns each row: declared once per model, used by the query engine and by
the permission checks of every API (mn.access).

Each model that a normal account may see has one rule:
- Owned: the row has an AccountResourceRef (its owner); visible to the owner and to the accounts
  it is shared with (SharedResource: one receiver, or everyone with toPublic);
- Via: the row belongs to a parent row (a VM's NIC, an L3's IP range) and is visible, and owned,
  when its parent is;
- OfAccount: the row names its account in a column (users, groups, policies, quotas, sessions);
- ByResource: the row is about a resource (tags): visible when that resource is visible, owned
  when it is owned.
A model without a rule is invisible to normal accounts (secure by default): zones, clusters,
hosts, storage, L2 networks, global config, management nodes, jobs. Admins (SystemAdmin) see
every row: `visible()` answers None for them, and the engine adds no clause.

own() records the owner of new rows in the transaction that inserts them; disown() removes the
records of deleted ones (deleting an account removes its records by ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, false, insert, or_, select, true, union_all
from sqlalchemy.orm import Session

from mn import models as m
from mn.context import Caller
from mn.db.base import utcnow
from mn.models import AccountResourceRef, SharedResource


@dataclass(frozen=True)
class Owned:
    resource_type: str  # ZStack's VO name, e.g. "VmInstanceVO"
    shareable: bool = False  # may be used (not changed) by the accounts it is shared with;
    # a shared resource of any type is visible to them


@dataclass(frozen=True)
class Via:
    resource_type: str
    fk: str
    parent: type


@dataclass(frozen=True)
class OfAccount:
    resource_type: str
    column: str
    receiver: str | None = None  # a second column naming an account that may see the row


@dataclass(frozen=True)
class ByResource:
    resource_type: str
    column: str = "resourceUuid"


Rule = Owned | Via | OfAccount | ByResource
RULES: dict[type, Rule] = {}
BY_TYPE: dict[str, list[type]] = {}
"""ZStack resource type (VO name) -> the models it names (TagVO: system and user tags)."""


def declare(model: type, rule: Rule) -> None:
    """Give `model` its visibility rule (a plugin declares its models' rules this way)."""
    if model in RULES and RULES[model] != rule:
        raise ValueError(f"{model.__name__} has a visibility rule already")
    RULES[model] = rule
    if model not in BY_TYPE.setdefault(rule.resource_type, []):
        BY_TYPE[rule.resource_type].append(model)


def owned_types() -> dict[str, type]:
    """Resource type -> model, of the models that have owner records."""
    return {r.resource_type: m for m, r in RULES.items() if isinstance(r, Owned)}


def own(s: Session | Any, account_uuid: str, resource_type: str, uuids: Iterable[str]) -> None:
    """Record `account_uuid` as the owner of new resources (in the caller's transaction)."""
    now = utcnow()
    rows = [{"resourceUuid": u, "accountUuid": account_uuid, "resourceType": resource_type,
             "concreteResourceType": resource_type, "createDate": now, "lastOpDate": now} for u in uuids]
    if rows:
        s.execute(insert(AccountResourceRef), rows)


def disown(s: Session | Any, uuids: Iterable[str]) -> None:
    """Forget the owner and the shares of deleted resources (in the deleting transaction)."""
    keys = list(uuids)
    if keys:
        s.execute(delete(AccountResourceRef).where(AccountResourceRef.resourceUuid.in_(keys)))
        s.execute(delete(SharedResource).where(SharedResource.resourceUuid.in_(keys)))


def owned_uuids(account_uuid: str | Any, resource_type: str | None = None) -> Select:
    """Uuids of the resources the account owns (of one type: a range of the owner index)."""
    q = select(AccountResourceRef.resourceUuid).where(AccountResourceRef.accountUuid == account_uuid)
    return q if resource_type is None else q.where(AccountResourceRef.resourceType == resource_type)


def shared_uuids(account_uuid: str | Any) -> Select:
    return select(SharedResource.resourceUuid).where(
        or_(SharedResource.receiverAccountUuid == account_uuid, SharedResource.toPublic == true()))


def visible_uuids(account_uuid: str | Any, resource_type: str | None = None) -> Any:
    """Uuids of the owned-type resources the account owns or that are shared with it."""
    return union_all(owned_uuids(account_uuid, resource_type), shared_uuids(account_uuid))


def visible(model: type, caller: Caller) -> list[ColumnElement[bool]] | None:
    """The clauses restricting `model`'s rows to those `caller` may see; None: no restriction."""
    if caller.admin:
        return None
    return [_clause(model, caller.account_uuid, owner_only=False)]


def owned_by(model: type, caller: Caller) -> list[ColumnElement[bool]] | None:
    """The clauses restricting `model`'s rows to those `caller` owns (may change); None: all."""
    if caller.admin:
        return None
    return [_clause(model, caller.account_uuid, owner_only=True)]


def rule_clause(model: type, account: str | Any, owner_only: bool) -> ColumnElement[bool]:
    """The clause of `model`'s rule for `account` (a uuid, or a bound parameter: a statement built
    once for every account): rows it owns (owner_only) or may see."""
    return _clause(model, account, owner_only)


def _clause(model: type, account: str | Any, owner_only: bool) -> ColumnElement[bool]:
    rule = RULES.get(model)
    if rule is None:
        for base in model.__mro__[1:]:  # a subclass (joined inheritance) follows its parent's rule
            rule = RULES.get(base)
            if rule is not None:
                break
    if rule is None:
        return false()
    match rule:
        case Owned(resource_type=rtype):
            return model.uuid.in_(owned_uuids(account, rtype) if owner_only else visible_uuids(account, rtype))
        case Via(fk=fk, parent=parent):
            sub = select(parent.uuid).where(_clause(parent, account, owner_only))
            return getattr(model, fk).in_(sub)
        case OfAccount(column=column, receiver=receiver):
            mine = getattr(model, column) == account
            return mine if owner_only or receiver is None else or_(mine, getattr(model, receiver) == account)
        case ByResource(column=column):
            return getattr(model, column).in_(owned_uuids(account) if owner_only else visible_uuids(account))
    return false()


for _model, _rule in (
    (m.VmInstance, Owned("VmInstanceVO")),
    (m.Volume, Owned("VolumeVO")),
    (m.Image, Owned("ImageVO", shareable=True)),
    (m.L3Network, Owned("L3NetworkVO", shareable=True)),
    (m.InstanceOffering, Owned("InstanceOfferingVO", shareable=True)),
    (m.DiskOffering, Owned("DiskOfferingVO", shareable=True)),
    (m.VmNic, Via("VmNicVO", "vmInstanceUuid", m.VmInstance)),
    (m.UsedIp, Via("UsedIpVO", "vmNicUuid", m.VmNic)),
    (m.IpRange, Via("IpRangeVO", "l3NetworkUuid", m.L3Network)),
    (m.SystemTag, ByResource("TagVO")),
    (m.UserTag, ByResource("TagVO")),
    (m.UserGroupUserRef, Via("UserGroupUserRefVO", "groupUuid", m.UserGroup)),
    (m.UserPolicyRef, Via("UserPolicyRefVO", "userUuid", m.User)),
    (m.UserGroupPolicyRef, Via("UserGroupPolicyRefVO", "groupUuid", m.UserGroup)),
    (m.Account, OfAccount("AccountVO", "uuid")),
    (m.User, OfAccount("UserVO", "accountUuid")),
    (m.UserGroup, OfAccount("UserGroupVO", "accountUuid")),
    (m.Policy, OfAccount("PolicyVO", "accountUuid")),
    (m.Quota, OfAccount("QuotaVO", "identityUuid")),
    (m.Session, OfAccount("SessionVO", "accountUuid")),
    (m.AccountResourceRef, OfAccount("AccountResourceRefVO", "accountUuid")),
    (m.SharedResource, OfAccount("SharedResourceVO", "ownerAccountUuid", receiver="receiverAccountUuid")),
):
    declare(_model, _rule)
