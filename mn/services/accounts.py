"""Accounts: CreateAccount, UpdateAccount, DeleteAccount, ChangeResourceOwner, GetResourceAccount.

Invariants: account names are unique; the admin account (ADMIN_UUID) is never deleted and stays a
SystemAdmin; a new account has one Quota row per quota defined (mn.quota.QUOTAS) with its default.
Deleting an account first deletes every resource it owns through that resource's own delete path
(cascade relations registered below on Account, and by plugins for their types); its sessions,
users, groups, policies, quotas, owner records and shares then go with the account row by
ON DELETE CASCADE. A resource has exactly one owner record; ChangeResourceOwner moves it (a VM's
volumes move with the VM) and drops the old owner's shares of what moved.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mn import quota
from mn.access import denied
from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade, dependent
from mn.context import ApiContext
from mn.db.base import utcnow
from mn.errors import QUOTA_EXCEEDING, RESOURCE_NOT_FOUND, ApiError, invalid
from mn.inventory import to_inventories, to_inventory
from mn.models import (
    Account,
    AccountResourceRef,
    DiskOffering,
    Image,
    InstanceOffering,
    Quota,
    SharedResource,
    VmInstance,
    Volume,
)
from mn.services import image as image_svc
from mn.services import l3 as l3_svc
from mn.services import offering as offering_svc
from mn.services import vm_ops
from mn.services import volume as volume_svc
from mn.services.common import get_or_404, new_resource_uuid
from mn.services.identity import ADMIN_UUID, hash_password
from mn.services.primary_storage import check_delete_mode

ACCOUNT_TYPES = ("SystemAdmin", "Normal")


def _key(msg: Msg) -> str:
    return f"account-{msg.get('uuid')}"


def check_name_free(s: Session, model: type, name: str, what: str, account: str | None = None,
                    except_uuid: str | None = None, lock: bool = False) -> None:
    """SYS.1007 when another row of `model` (of `account`, if given) is called `name`. With `lock`
    (in the writing transaction), the account's row (admin's, for account names) is locked first,
    so that two transactions naming rows alike, in any MN process, check one after the other."""
    if lock:
        s.execute(select(Account.uuid).where(Account.uuid == (account or ADMIN_UUID)).with_for_update()).first()
    q = select(model.uuid).where(model.name == name)
    if account is not None:
        q = q.where(model.accountUuid == account)
    if except_uuid is not None:
        q = q.where(model.uuid != except_uuid)
    if s.scalar(q.limit(1)) is not None:
        scope = "" if account is None else f" in the account[uuid:{account}]"
        raise invalid(f"there is already {'an' if what[0] in 'aeiou' else 'a'} {what} called {name!r}{scope}")


def set_password(row: Any, client_hash: str) -> None:
    """Store a client's SHA-512 hex as a fresh salted hash."""
    row.passwordSalt = secrets.token_hex(16)
    row.passwordHash = hash_password(client_hash, row.passwordSalt)


def password_matches(row: Any, client_hash: str | None) -> bool:
    return client_hash is not None and hmac.compare_digest(row.passwordHash,
                                                           hash_password(client_hash, row.passwordSalt))


# ---- CreateAccount, UpdateAccount --------------------------------------------------------------

def _check_create(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    if (msg.get("type") or "Normal") not in ACCOUNT_TYPES:
        raise invalid(f"parameter 'type' of CreateAccount must be one of {list(ACCOUNT_TYPES)}")
    with ctx.db.ro() as s:
        check_name_free(s, Account, msg.name, "account")


@apis.handler("CreateAccount", check=_check_create, sync_key=lambda msg: "account-names")
def create_account(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        check_name_free(s, Account, msg.name, "account", lock=True)
        acc = Account(uuid=uuid, name=msg.name, description=msg.get("description"), type=msg.get("type") or "Normal")
        set_password(acc, msg.password)
        s.add(acc)
        s.flush()
        now = utcnow()
        for q in sorted(quota.QUOTAS.values(), key=lambda q: q.name):
            s.add(Quota(name=q.name, identityUuid=uuid, identityType="AccountVO", value=q.default,
                        createDate=now, lastOpDate=now))
        s.flush()
        return {"inventory": to_inventory(s, acc)}


def _check_update(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        acc = get_or_404(s, Account, msg.uuid)
        if msg.get("name") is not None:
            check_name_free(s, Account, msg.name, "account", except_uuid=acc.uuid)
        if msg.get("password") is not None and not ctx.caller.admin \
                and not password_matches(acc, msg.get("oldPassword")):
            raise denied(f"the account[uuid:{acc.uuid}] may change its password only with its current "
                         "one: oldPassword is missing or wrong")


@apis.handler("UpdateAccount", check=_check_update, sync_key=_key)
def update_account(ctx: ApiContext, msg: Msg) -> dict:
    _check_update(ctx, msg)
    with ctx.db.tx() as s:
        if msg.get("name") is not None:
            check_name_free(s, Account, msg.name, "account", except_uuid=msg.uuid, lock=True)
        acc = get_or_404(s, Account, msg.uuid)
        for f in ("name", "description"):
            if msg.get(f) is not None:
                setattr(acc, f, msg[f])
        if msg.get("password") is not None:
            set_password(acc, msg.password)
        acc.lastOpDate = utcnow()
        s.flush()
        return {"inventory": to_inventory(s, acc)}


# ---- DeleteAccount ------------------------------------------------------------------------------

def _check_delete(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    if not ctx.caller.admin:
        raise denied(f"the account[uuid:{ctx.caller.account_uuid}] is a normal account: only admins delete "
                     "accounts")
    if msg.uuid == ADMIN_UUID:
        raise invalid("the admin account cannot be deleted")
    with ctx.db.ro() as s:
        get_or_404(s, Account, msg.uuid)


@apis.handler("DeleteAccount", check=_check_delete, sync_key=_key)
def delete_account(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        if s.get(Account, msg.uuid) is None:
            return {}
    cascade(ctx, Account, msg.uuid, msg.get("deleteMode") or "Permissive")
    with ctx.db.tx() as s:
        s.execute(delete(Account).where(Account.uuid == msg.uuid))
    return {}


def owned_of_type(rtype: str) -> Any:
    """A cascade Finder: the uuids of the account's resources of one type (its owner records)."""

    def find(s: Session, account_uuid: str) -> list[str]:
        return list(s.scalars(select(AccountResourceRef.resourceUuid).where(
            AccountResourceRef.accountUuid == account_uuid, AccountResourceRef.resourceType == rtype)
            .order_by(AccountResourceRef.createDate, AccountResourceRef.resourceUuid)))

    return find


def _delete_vm(ctx: ApiContext, uuid: str, mode: str) -> None:
    with ctx.db.ro() as s:
        vm = s.get(VmInstance, uuid)
    if vm is None:
        return
    if vm.state != vm_ops.DESTROYED:
        vm_ops.destroy_vm(ctx, uuid)
    with ctx.db.ro() as s:
        left = s.get(VmInstance, uuid) is not None
    if left:
        vm_ops.expunge_vm(ctx, uuid)


def _delete_volume(ctx: ApiContext, uuid: str, mode: str) -> None:
    with ctx.db.ro() as s:
        vol = s.get(Volume, uuid)
    if vol is None:
        return
    if vol.type == "Data" and vol.status != "Deleted":
        volume_svc.delete_volume(ctx, uuid, mode)
    volume_svc.expunge_volume(ctx, uuid)


def _delete_image(ctx: ApiContext, uuid: str, mode: str) -> None:
    with ctx.db.ro() as s:
        if s.get(Image, uuid) is None:
            return
    cascade(ctx, Image, uuid, mode)
    image_svc.expunge(ctx, uuid, None, only_deleted=False)


def _delete_l3(ctx: ApiContext, uuid: str, mode: str) -> None:
    l3_svc.delete_l3(ctx, uuid, mode)


def _delete_offering(model: type) -> Any:
    def run(ctx: ApiContext, uuid: str, mode: str) -> None:
        offering_svc._delete(ctx, model, uuid, mode)

    return run


# Order: VMs first (their root volumes go with them, data volumes are detached), then what they used.
dependent(Account, "VmInstanceVO", owned_of_type("VmInstanceVO"), _delete_vm)
dependent(Account, "VolumeVO", owned_of_type("VolumeVO"), _delete_volume)
dependent(Account, "ImageVO", owned_of_type("ImageVO"), _delete_image)
dependent(Account, "L3NetworkVO", owned_of_type("L3NetworkVO"), _delete_l3)
dependent(Account, "InstanceOfferingVO", owned_of_type("InstanceOfferingVO"), _delete_offering(InstanceOffering))
dependent(Account, "DiskOfferingVO", owned_of_type("DiskOfferingVO"), _delete_offering(DiskOffering))


# ---- ownership: ChangeResourceOwner, GetResourceAccount ----------------------------------------

def _check_change_owner(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, Account, msg.accountUuid)
        if s.get(AccountResourceRef, msg.resourceUuid) is None:
            raise ApiError(RESOURCE_NOT_FOUND, f"the resource[uuid:{msg.resourceUuid}] is not found among the "
                           "resources accounts own (it does not exist, or is of a type nobody owns)", http_status=404)


@apis.handler("ChangeResourceOwner", check=_check_change_owner, sync_key=key_of("resourceUuid", "owner"))
def change_resource_owner(ctx: ApiContext, msg: Msg) -> dict:
    _check_change_owner(ctx, msg)
    with ctx.db.tx() as s:
        ref = s.get(AccountResourceRef, msg.resourceUuid)
        assert ref is not None
        old = ref.accountUuid
        moved = [ref.resourceUuid]
        if ref.resourceType == "VmInstanceVO":
            moved += s.scalars(select(Volume.uuid).where(Volume.vmInstanceUuid == ref.resourceUuid)).all()
        if old != msg.accountUuid:
            new = s.get(Account, msg.accountUuid)
            admin = new is not None and new.type == "SystemAdmin"
            if not admin:  # the new owner's quotas, counted before and after the move
                s.execute(select(Account.uuid).where(Account.uuid == msg.accountUuid).with_for_update()).first()
                before = {q.name: q.usage(s, msg.accountUuid) for q in quota.QUOTAS.values()}
            s.execute(update(AccountResourceRef).where(AccountResourceRef.resourceUuid.in_(moved),
                                                       AccountResourceRef.accountUuid == old)
                      .values(accountUuid=msg.accountUuid, lastOpDate=utcnow()))
            s.execute(delete(SharedResource).where(SharedResource.resourceUuid.in_(moved),
                                                   SharedResource.ownerAccountUuid == old))
            if not admin:
                _check_quotas_after_move(s, msg.accountUuid, before)
            quota.grew(s.connection(), msg.accountUuid)
        s.expire_all()
        return {"inventory": to_inventory(s, s.get(AccountResourceRef, msg.resourceUuid))}


def _check_quotas_after_move(s: Session, account: str, before: dict[str, int]) -> None:
    """ID.1003 (the transaction rolls back) when the move took the account over a quota it grew."""
    for q in quota.QUOTAS.values():
        used, cap = q.usage(s, account), quota.limit(s, account, q.name)
        if used > before[q.name] and used > cap:
            raise ApiError(QUOTA_EXCEEDING, f"quota exceeding: the account[uuid:{account}] would use {used} of "
                           f"its {q.name} quota {cap} as the owner of these resources", http_status=400)


@apis.handler("GetResourceAccount")
def get_resource_account(ctx: ApiContext, msg: Msg) -> dict:
    """resourceUuid -> the owner's AccountInventory; a normal account may ask only about resources
    it can see (its own, and those shared with it)."""
    uuids = list(dict.fromkeys(msg.resourceUuids))
    with ctx.db.ro() as s:
        refs = {r.resourceUuid: r.accountUuid for r in s.scalars(
            select(AccountResourceRef).where(AccountResourceRef.resourceUuid.in_(uuids)))}
        if not ctx.caller.admin:
            from mn import ownership

            sub = ownership.visible_uuids(ctx.caller.account_uuid).subquery()
            mine = set(s.scalars(select(sub.c[0]).where(sub.c[0].in_(uuids))))
            hidden = [u for u in uuids if u not in mine]
            if hidden:
                raise denied(f"the account[uuid:{ctx.caller.account_uuid}] may not see the resources {hidden}")
        accounts = list(s.scalars(select(Account).where(Account.uuid.in_(set(refs.values())))))
        invs = dict(zip([a.uuid for a in accounts], to_inventories(s, accounts), strict=True))
        return {"inventories": {u: invs[refs[u]] for u in uuids if u in refs}}
