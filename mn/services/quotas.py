"""Quotas: UpdateQuota (admins) and GetAccountQuotaUsage (QueryQuota is derived).

A quota's limit is the account's Quota row, else the quota's default (mn.quota); UpdateQuota
writes the row (one per account and name). Usage is always counted from the resource rows.
"""

from __future__ import annotations

from sqlalchemy import select

from mn import quota
from mn.api.registry import Msg, apis, key_of
from mn.context import ApiContext
from mn.db.base import utcnow
from mn.errors import invalid
from mn.inventory import to_inventory
from mn.models import Account, Quota
from mn.services.common import get_or_404, row_or_404


def _check_update(ctx: ApiContext, msg: Msg) -> None:
    if msg.name not in quota.QUOTAS:
        raise invalid(f"parameter 'name' of UpdateQuota must be one of {sorted(quota.QUOTAS)} (the quotas of "
                      f"this management node), got {msg.name!r}")
    if msg.value < 0:
        raise invalid(f"parameter 'value' of UpdateQuota must not be negative, got {msg.value}")
    with ctx.db.ro() as s:
        get_or_404(s, Account, msg.identityUuid)


@apis.handler("UpdateQuota", check=_check_update, sync_key=key_of("identityUuid", "quota"))
def update_quota(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        get_or_404(s, Account, msg.identityUuid)
        row = s.scalar(select(Quota).where(Quota.identityUuid == msg.identityUuid, Quota.name == msg.name))
        now = utcnow()
        if row is None:
            row = Quota(name=msg.name, identityUuid=msg.identityUuid, identityType="AccountVO", value=msg.value,
                        createDate=now, lastOpDate=now)
            s.add(row)
        else:
            row.value = msg.value
            row.lastOpDate = now
        s.flush()
        return {"inventory": to_inventory(s, row)}


@apis.handler("GetAccountQuotaUsage")
def get_usage(ctx: ApiContext, msg: Msg) -> dict:
    """Every quota's name, limit (`total`) and what the account uses (`used`)."""
    with ctx.db.read() as conn:
        row_or_404(conn, Account, msg.uuid)
        return {"usages": quota.usages(conn, msg.uuid)}
