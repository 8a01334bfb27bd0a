"""Sharing: ShareResource and RevokeResourceSharing (QuerySharedResource is derived).

A share is a SharedResource row: the resource's owner (its AccountResourceRef) gives one account
(receiverAccountUuid) or everyone (toPublic) the use of it. There is at most one row per resource
and receiver, and one public row per resource: sharing again changes nothing. mn.access checks
that a normal account names only resources it owns.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select, true
from sqlalchemy.orm import Session

from mn.api.registry import Msg, apis
from mn.context import ApiContext
from mn.db.base import utcnow
from mn.errors import RESOURCE_NOT_FOUND, ApiError, invalid, not_found
from mn.models import Account, AccountResourceRef, SharedResource


def _refs(s: Session, uuids: list[str]) -> dict[str, AccountResourceRef]:
    refs = {r.resourceUuid: r for r in s.scalars(select(AccountResourceRef)
                                                  .where(AccountResourceRef.resourceUuid.in_(uuids)))}
    missing = [u for u in uuids if u not in refs]
    if missing:
        raise ApiError(RESOURCE_NOT_FOUND, f"the resources {missing} are not found among the resources accounts "
                       "own (they do not exist, or are of a type nobody owns)", http_status=404)
    return refs


def _check_accounts(s: Session, uuids: list[str]) -> None:
    found = set(s.scalars(select(Account.uuid).where(Account.uuid.in_(uuids))))
    for u in uuids:
        if u not in found:
            raise not_found("AccountVO", u)


def _check_share(ctx: ApiContext, msg: Msg) -> None:
    if not msg.get("accountUuids") and not msg.get("toPublic"):
        raise invalid("ShareResource needs accountUuids or toPublic=true")
    with ctx.db.ro() as s:
        _refs(s, list(msg.resourceUuids))
        _check_accounts(s, list(msg.get("accountUuids") or []))


@apis.handler("ShareResource", check=_check_share, sync_key=lambda msg: "sharing")
def share_resource(ctx: ApiContext, msg: Msg) -> dict:
    uuids = list(dict.fromkeys(msg.resourceUuids))
    receivers = list(dict.fromkeys(msg.get("accountUuids") or []))
    with ctx.db.tx() as s:
        refs = _refs(s, uuids)
        _check_accounts(s, receivers)
        have = {(r.resourceUuid, r.receiverAccountUuid, bool(r.toPublic)) for r in s.scalars(
            select(SharedResource).where(SharedResource.resourceUuid.in_(uuids)))}
        now = utcnow()
        for u in uuids:
            ref = refs[u]
            wanted = [(a, False) for a in receivers if a != ref.accountUuid]
            if msg.get("toPublic"):
                wanted.append((None, True))
            for receiver, public in wanted:
                if (u, receiver, public) in have:
                    continue
                s.add(SharedResource(ownerAccountUuid=ref.accountUuid, receiverAccountUuid=receiver,
                                     toPublic=public, resourceType=ref.resourceType, resourceUuid=u,
                                     createDate=now, lastOpDate=now))
                have.add((u, receiver, public))
    return {}


def _check_revoke(ctx: ApiContext, msg: Msg) -> None:
    if not msg.get("all") and not msg.get("toPublic") and not msg.get("accountUuids"):
        raise invalid("RevokeResourceSharing needs accountUuids, toPublic=true or all=true")
    with ctx.db.ro() as s:
        _refs(s, list(msg.resourceUuids))


@apis.handler("RevokeResourceSharing", check=_check_revoke, sync_key=lambda msg: "sharing")
def revoke_resource_sharing(ctx: ApiContext, msg: Msg) -> dict:
    uuids = list(dict.fromkeys(msg.resourceUuids))
    which = []
    if not msg.get("all"):
        if msg.get("toPublic"):
            which.append(SharedResource.toPublic == true())
        if msg.get("accountUuids"):
            which.append(SharedResource.receiverAccountUuid.in_(list(msg.accountUuids)))
    with ctx.db.tx() as s:
        q = delete(SharedResource).where(SharedResource.resourceUuid.in_(uuids))
        if which:
            q = q.where(or_(*which))
        s.execute(q)
    return {}
