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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from mn import models as m
from mn import ownership
from mn.context import Caller
from mn.errors import QUOTA_EXCEEDING, ApiError


@dataclass(frozen=True)
class QuotaDef:
    """A quota: the count (amount None) or the sum of `amount` over the account's rows of
    `model` matching `where`."""

    name: str
    default: int
    model: type
    amount: Any = None
    where: tuple[Any, ...] = ()

    def aggregate(self) -> Any:
        return func.count() if self.amount is None else func.coalesce(func.sum(self.amount), 0)


QUOTAS: dict[str, QuotaDef] = {}
GiB = 1024**3
TiB = 1024**4


def define(name: str, default: int, model: type, amount: Any = None, *where: Any) -> QuotaDef:
    """Declare a quota (a plugin declares those of its resources)."""
    if name in QUOTAS:
        raise ValueError(f"quota {name} is defined twice")
    q = QuotaDef(name, default, model, amount, tuple(where))
    QUOTAS[name] = q
    return q


def used(conn: Any, account: str, names: list[str]) -> dict[str, int]:
    """The account's usage of each named quota: one query per table and filter (vm.num, vm.cpuNum
    and vm.memorySize are one query)."""
    groups: dict[tuple[type, tuple[int, ...]], list[QuotaDef]] = {}  # same model, same filter objects
    for n in names:
        q = QUOTAS[n]
        groups.setdefault((q.model, tuple(id(w) for w in q.where)), []).append(q)
    out: dict[str, int] = {}
    for (model, _), qs in groups.items():
        stmt = select(*(q.aggregate() for q in qs)).select_from(model).where(
            model.uuid.in_(ownership.owned_uuids(account)), *qs[0].where)
        row = conn.execute(stmt).one()
        out.update({q.name: int(v or 0) for q, v in zip(qs, row, strict=True)})
    return out


def limits(conn: Any, account: str, names: list[str]) -> dict[str, int]:
    rows = dict(conn.execute(select(m.Quota.name, m.Quota.value).where(
        m.Quota.identityUuid == account, m.Quota.name.in_(names))).all())
    return {n: int(rows[n]) if n in rows else QUOTAS[n].default for n in names}


def usages(conn: Any, account: str) -> list[dict[str, Any]]:
    """GetAccountQuotaUsage's entries: every quota's name, limit (total) and usage."""
    names = sorted(QUOTAS)
    caps, now = limits(conn, account, names), used(conn, account, names)
    return [{"name": n, "total": caps[n], "used": now[n]} for n in names]


def check(conn: Any, caller: Caller, wants: Mapping[str, int]) -> None:
    """Refuse (ID.1003) what would take the caller's account over one of its quotas; call it in
    the transaction that then inserts the rows, before inserting them."""
    names = [n for n, amount in wants.items() if amount]
    if caller.admin or not names:
        return
    account = caller.account_uuid
    conn.execute(select(m.Account.uuid).where(m.Account.uuid == account).with_for_update()).first()
    caps, now = limits(conn, account, names), used(conn, account, names)
    for n in names:
        if now[n] + wants[n] > caps[n]:
            raise ApiError(QUOTA_EXCEEDING, f"quota exceeding: the account[uuid:{account}] uses {now[n]} of "
                           f"its {n} quota {caps[n]}, and the request needs {wants[n]} more", http_status=400)


_VM_LIVE = m.VmInstance.state != "Destroyed"
_VOL_LIVE = m.Volume.status != "Deleted"
define("vm.num", 20, m.VmInstance, None, _VM_LIVE)
define("vm.cpuNum", 80, m.VmInstance, m.VmInstance.cpuNum, _VM_LIVE)
define("vm.memorySize", 80 * GiB, m.VmInstance, m.VmInstance.memorySize, _VM_LIVE)
define("volume.data.num", 40, m.Volume, None, m.Volume.type == "Data", _VOL_LIVE)
define("volume.capacity", 10 * TiB, m.Volume, m.Volume.size, _VOL_LIVE)
define("image.num", 20, m.Image, None, m.Image.status != "Deleted")
define("image.size", 10 * TiB, m.Image, m.Image.actualSize, m.Image.status != "Deleted")
define("l3.num", 20, m.L3Network)
