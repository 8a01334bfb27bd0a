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

from sqlalchemy import func, select

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

    def usage(conn: Any, account: str) -> int:
        what = func.count() if amount is None else func.coalesce(func.sum(amount), 0)
        stmt = select(what).select_from(model).where(model.uuid.in_(ownership.owned_uuids(account)), *where)
        return int(conn.execute(stmt).scalar() or 0)

    return usage


def limit(conn: Any, account: str, name: str) -> int:
    value = conn.execute(select(m.Quota.value).where(m.Quota.identityUuid == account, m.Quota.name == name)).scalar()
    return QUOTAS[name].default if value is None else int(value)


def usages(conn: Any, account: str) -> list[dict[str, Any]]:
    """GetAccountQuotaUsage's entries: every quota's name, limit (total) and usage."""
    return [{"name": q.name, "total": limit(conn, account, q.name), "used": q.usage(conn, account)}
            for q in sorted(QUOTAS.values(), key=lambda q: q.name)]


def check(conn: Any, caller: Caller, wants: Mapping[str, int]) -> None:
    """Refuse (ID.1003) what would take the caller's account over one of its quotas; call it in
    the transaction that then inserts the rows, before inserting them."""
    if caller.admin or not any(wants.values()):
        return
    conn.execute(select(m.Account.uuid).where(m.Account.uuid == caller.account_uuid).with_for_update()).first()
    for name, amount in wants.items():
        if not amount:
            continue
        cap = limit(conn, caller.account_uuid, name)
        used = QUOTAS[name].usage(conn, caller.account_uuid)
        if used + amount > cap:
            raise ApiError(QUOTA_EXCEEDING, f"quota exceeding: the account[uuid:{caller.account_uuid}] "
                           f"uses {used} of its {name} quota {cap}, and the request needs {amount} more",
                           http_status=400)


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
