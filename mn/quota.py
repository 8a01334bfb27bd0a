"""Quotas: per-account limits, checked in the transaction that creates what they count.

A quota is declared once (`define`: its name as in ZStack, its default, how its usage is counted
from the resource tables). Usage is always counted from the rows themselves (the account's owner
records joined with the resource table), never kept as a counter, so a delete or a rollback
releases it by removing the rows, and nothing can drift. check() first locks the account's row
(SELECT ... FOR UPDATE on PostgreSQL and MariaDB; SQLite has one writer at a time), so two
concurrent creations by one account are checked one after the other: never over quota.
Admin accounts have no quotas. An account's limit is its Quota row, else the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, select, true

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
                .where(self.model.uuid.in_(ownership.owned_uuids(account)), *self.where))
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


def check(conn: Any, caller: Caller, wants: Mapping[str, int]) -> None:
    """Refuse (ID.1003) what would take the caller's account over one of its quotas; call it in
    the transaction that then inserts the rows, before inserting them."""
    if caller.admin or not any(wants.values()):
        return
    account = caller.account_uuid
    conn.execute(select(m.Account.uuid).where(m.Account.uuid == account).with_for_update()).first()
    names = [n for n, amount in wants.items() if amount]
    rows = conn.execute(select(m.Quota.name, m.Quota.value).where(m.Quota.identityUuid == account,
                                                                   m.Quota.name.in_(names))).all()
    caps = {n: QUOTAS[n].default for n in names} | {n: int(v) for n, v in rows}
    now = used(conn, account, names)
    for name in names:
        amount, cap = wants[name], caps[name]
        if now[name] + amount > cap:
            raise ApiError(QUOTA_EXCEEDING, f"quota exceeding: the account[uuid:{caller.account_uuid}] "
                           f"uses {now[name]} of its {name} quota {cap}, and the request needs {amount} more",
                           http_status=400)


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
        stmt = select(*terms).select_from(model).where(model.uuid.in_(ownership.owned_uuids(account)))
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
