"""Quotas: per-account limits, checked in the transaction that creates what they count.

A quota is declared once (`define`: its name as in ZStack, its default, how its usage is counted
from the resource tables). Usage is counted from the rows themselves (the account's owner records
joined with the resource table), so a delete or a rollback releases it by removing the rows;
GetAccountQuotaUsage always counts. check() first locks the account's row (SELECT ... FOR UPDATE on
PostgreSQL and MariaDB; on SQLite every writer already holds the one writer lock), so two concurrent
creations by one account are checked one after the other: never over quota.

Counting grows with what the account owns, so check() keeps, per account and quota, a bound
(QuotaUsage.used) with the invariant bound >= usage: a check whose bound plus the request fits
the limit passes at once and adds the request to the bound (in the creating transaction, so a
rolled-back creation takes its addition back); otherwise it counts the rows, refuses if the count
plus the request exceeds the limit, and sets the bound to the count plus the request. Deletes
leave bounds high (still bounds); whatever raises usage without check() (recoveries, a bigger
offering, a downloaded image's size, ChangeResourceOwner) calls grew(), which drops them.
Admin accounts have no quotas. An account's limit is its Quota row, else the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, literal, select, true, update

from mn import models as m
from mn import ownership
from mn.context import Caller
from mn.errors import QUOTA_EXCEEDING, ApiError

Usage = Callable[[Any, str], int]  # (session or connection, account uuid) -> amount used


@dataclass(frozen=True)
class QuotaDef:
    name: str
    default: int
    usage: Usage


@dataclass(frozen=True)
class Counted:
    """A usage counted from one model's rows (counted()): check() sums several of one model in
    one query."""

    model: type
    amount: Any
    where: tuple[Any, ...]

    def term(self) -> Any:
        """This usage as a column of an aggregate over the account's rows of `model`."""
        value = literal(1) if self.amount is None else self.amount
        return func.coalesce(func.sum(case((and_(true(), *self.where), value), else_=0)), 0)

    def __call__(self, conn: Any, account: str) -> int:
        what = func.count() if self.amount is None else func.coalesce(func.sum(self.amount), 0)
        stmt = (select(what).select_from(self.model)
                .where(self.model.uuid.in_(ownership.owned_uuids(account, _type(self.model))), *self.where))
        return int(conn.execute(stmt).scalar() or 0)


QUOTAS: dict[str, QuotaDef] = {}
GiB = 1024**3
TiB = 1024**4


def define(name: str, default: int, usage: Usage) -> QuotaDef:
    """Declare a quota (a plugin declares those of its resources)."""
    if name in QUOTAS:
        raise ValueError(f"quota {name} is defined twice")
    q = QuotaDef(name, default, usage)
    QUOTAS[name] = q
    return q


def _type(model: type) -> str | None:
    """The resource type of a model's owner records (their index is by account, then type)."""
    rule = ownership.RULES.get(model)
    return rule.resource_type if isinstance(rule, ownership.Owned) else None


def counted(model: type, amount: Any = None, *where: Any) -> Usage:
    """Usage: the count (or sum of `amount`) of the account's rows of `model` matching `where`."""
    return Counted(model, amount, where)


def limit(conn: Any, account: str, name: str) -> int:
    value = conn.execute(select(m.Quota.value).where(m.Quota.identityUuid == account, m.Quota.name == name)).scalar()
    return QUOTAS[name].default if value is None else int(value)


def usages(conn: Any, account: str) -> list[dict[str, Any]]:
    """GetAccountQuotaUsage's entries: every quota's name, limit (total) and usage."""
    names = sorted(QUOTAS)
    now = used(conn, account, names)
    return [{"name": n, "total": limit(conn, account, n), "used": now[n]} for n in names]


_LOCK = select(m.Account.uuid).where(m.Account.uuid == bindparam("a")).with_for_update()
_BOUNDS = (select(m.QuotaUsage.name, m.QuotaUsage.used, m.Quota.value)
           .outerjoin(m.Quota, and_(m.Quota.identityUuid == m.QuotaUsage.accountUuid,
                                    m.Quota.name == m.QuotaUsage.name))
           .where(m.QuotaUsage.accountUuid == bindparam("a"),
                  m.QuotaUsage.name.in_(bindparam("names", expanding=True))))


def check(conn: Any, caller: Caller, wants: Mapping[str, int]) -> None:
    """Refuse (ID.1003) what would take the caller's account over one of its quotas; call it in
    the transaction that then inserts the rows, before inserting them."""
    if caller.admin or not any(wants.values()):
        return
    account = caller.account_uuid
    if conn.dialect.name != "sqlite":  # SQLite: every writer of every process holds the one writer lock
        conn.execute(_LOCK, {"a": account}).first()
    names = [n for n, amount in wants.items() if amount]
    found = conn.execute(_BOUNDS, {"a": account, "names": names}).all()
    bounds = {n: int(b) for n, b, _ in found}
    caps = {n: QUOTAS[n].default for n in names} | {n: int(v) for n, _, v in found if v is not None}
    if len(bounds) < len(names) or any(bounds[n] + wants[n] > caps[n] for n in names):
        rows = conn.execute(select(m.Quota.name, m.Quota.value).where(m.Quota.identityUuid == account,
                                                                       m.Quota.name.in_(names))).all()
        caps = {n: QUOTAS[n].default for n in names} | {n: int(v) for n, v in rows}
        exact = used(conn, account, names)  # the slow path: count the rows, and start the bounds afresh
        for name in names:
            amount, cap = wants[name], caps[name]
            if exact[name] + amount > cap:
                raise ApiError(QUOTA_EXCEEDING, f"quota exceeding: the account[uuid:{account}] uses "
                               f"{exact[name]} of its {name} quota {cap}, and the request needs {amount} more",
                               http_status=400)
        conn.execute(delete(m.QuotaUsage).where(m.QuotaUsage.accountUuid == account,
                                                m.QuotaUsage.name.in_(names)))
        conn.execute(insert(m.QuotaUsage), [{"accountUuid": account, "name": n, "used": exact[n] + wants[n]}
                                            for n in names])
        return
    conn.execute(update(m.QuotaUsage).where(m.QuotaUsage.accountUuid == account,
                                            m.QuotaUsage.name == bindparam("n"))
                 .values(used=m.QuotaUsage.used + bindparam("amount")),
                 [{"n": n, "amount": wants[n]} for n in names])


def grew(conn: Any, account_uuid: str) -> None:
    """Call where an account's usage grows other than by a creation that check()ed it (a recovered
    VM, volume or image; a bigger offering; a downloaded image's size; resources given to it): its
    bounds are dropped, so its next check() counts the rows."""
    conn.execute(delete(m.QuotaUsage).where(m.QuotaUsage.accountUuid == account_uuid))


def grew_owners(conn: Any, resource_uuids: list[str]) -> None:
    """grew() for the owners of these resources."""
    owners = select(m.AccountResourceRef.accountUuid).where(m.AccountResourceRef.resourceUuid.in_(resource_uuids))
    conn.execute(delete(m.QuotaUsage).where(m.QuotaUsage.accountUuid.in_(owners)))


def used(conn: Any, account: str, names: list[str]) -> dict[str, int]:
    """The usages of `names`: one aggregate query per model for those counted(), else each alone."""
    out: dict[str, int] = {}
    by_model: dict[type, list[str]] = {}
    for n in names:
        u = QUOTAS[n].usage
        if isinstance(u, Counted):
            by_model.setdefault(u.model, []).append(n)
        else:
            out[n] = u(conn, account)
    for model, group in by_model.items():
        terms = [QUOTAS[n].usage.term() for n in group]  # type: ignore[attr-defined]
        stmt = select(*terms).select_from(model).where(model.uuid.in_(ownership.owned_uuids(account, _type(model))))
        out.update({n: int(v or 0) for n, v in zip(group, conn.execute(stmt).one(), strict=True)})
    return out


_VM_LIVE = m.VmInstance.state != "Destroyed"
_VOL_LIVE = m.Volume.status != "Deleted"
define("vm.num", 20, counted(m.VmInstance, None, _VM_LIVE))
define("vm.cpuNum", 80, counted(m.VmInstance, m.VmInstance.cpuNum, _VM_LIVE))
define("vm.memorySize", 80 * GiB, counted(m.VmInstance, m.VmInstance.memorySize, _VM_LIVE))
define("volume.data.num", 40, counted(m.Volume, None, m.Volume.type == "Data", _VOL_LIVE))
define("volume.capacity", 10 * TiB, counted(m.Volume, m.Volume.size, _VOL_LIVE))
define("image.num", 20, counted(m.Image, None, m.Image.status != "Deleted"))
define("image.size", 10 * TiB, counted(m.Image, m.Image.actualSize, m.Image.status != "Deleted"))
define("l3.num", 20, counted(m.L3Network))
