"""Users and user groups of an account: CreateUser, UpdateUser, DeleteUser, CreateUserGroup,
UpdateUserGroup, DeleteUserGroup, AddUserToGroup, RemoveUserFromGroup (queries are derived).

Users and groups belong to the caller's account (ctx.account_uuid); names are unique per account;
a user and a group joined together are of one account. mn.access lets a normal account name only
its own users and groups. A user changing its own password gives its current one (oldPassword);
its account changes its users' passwords without it. A deleted user's sessions end with it.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session as DbSession

from mn.access import denied
from mn.api.registry import Msg, apis, key_of
from mn.context import ApiContext
from mn.db.base import utcnow
from mn.errors import invalid
from mn.inventory import to_inventory
from mn.models import Session, User, UserGroup, UserGroupUserRef
from mn.services.accounts import check_name_free, password_matches, set_password
from mn.services.common import get_or_404, new_resource_uuid
from mn.services.primary_storage import check_delete_mode


def _user_key(msg: Msg) -> str:
    return f"user-{msg.get('uuid')}"


# ---- users --------------------------------------------------------------------------------------

def _check_create_user(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    with ctx.db.ro() as s:
        check_name_free(s, User, msg.name, "user", account=ctx.account_uuid)


@apis.handler("CreateUser", check=_check_create_user, sync_key=lambda msg: "user-names")
def create_user(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        check_name_free(s, User, msg.name, "user", account=ctx.account_uuid, lock=True)
        user = User(uuid=uuid, name=msg.name, description=msg.get("description"), accountUuid=ctx.account_uuid)
        set_password(user, msg.password)
        s.add(user)
        s.flush()
        return {"inventory": to_inventory(s, user)}


def _target_user(ctx: ApiContext, msg: Msg) -> str:
    uuid = msg.get("uuid") or ctx.caller.user_uuid
    if uuid is None:
        raise invalid("UpdateUser needs the uuid of the user to update (a user's own session may leave it out)")
    return uuid


def _check_update_user(ctx: ApiContext, msg: Msg) -> None:
    uuid = msg["uuid"] = _target_user(ctx, msg)  # a user's own: named, for its sync key
    with ctx.db.ro() as s:
        user = get_or_404(s, User, uuid)
        if msg.get("name") is not None:
            check_name_free(s, User, msg.name, "user", account=user.accountUuid, except_uuid=uuid)
        if msg.get("password") is not None and ctx.caller.user_uuid == uuid \
                and not password_matches(user, msg.get("oldPassword")):
            raise denied(f"the user[uuid:{uuid}] may change its password only with its current one: "
                         "oldPassword is missing or wrong")


@apis.handler("UpdateUser", check=_check_update_user, sync_key=_user_key)
def update_user(ctx: ApiContext, msg: Msg) -> dict:
    _check_update_user(ctx, msg)
    with ctx.db.tx() as s:
        user = get_or_404(s, User, _target_user(ctx, msg))
        if msg.get("name") is not None:
            check_name_free(s, User, msg.name, "user", account=user.accountUuid, except_uuid=user.uuid, lock=True)
        for f in ("name", "description"):
            if msg.get(f) is not None:
                setattr(user, f, msg[f])
        if msg.get("password") is not None:
            set_password(user, msg.password)
        user.lastOpDate = utcnow()
        s.flush()
        return {"inventory": to_inventory(s, user)}


def _check_delete(model: type) -> object:
    def check(ctx: ApiContext, msg: Msg) -> None:
        check_delete_mode(msg)
        with ctx.db.ro() as s:
            get_or_404(s, model, msg.uuid)

    return check


@apis.handler("DeleteUser", check=_check_delete(User), sync_key=_user_key)
def delete_user(ctx: ApiContext, msg: Msg) -> dict:
    """The user, its sessions, and (by ON DELETE CASCADE) its group memberships and policy refs."""
    with ctx.db.tx() as s:
        s.execute(delete(Session).where(Session.userUuid == msg.uuid, Session.userType == "UserVO"))
        s.execute(delete(User).where(User.uuid == msg.uuid))
    return {}


# ---- groups -------------------------------------------------------------------------------------

def _check_create_group(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    with ctx.db.ro() as s:
        check_name_free(s, UserGroup, msg.name, "user group", account=ctx.account_uuid)


@apis.handler("CreateUserGroup", check=_check_create_group, sync_key=lambda msg: "group-names")
def create_group(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        check_name_free(s, UserGroup, msg.name, "user group", account=ctx.account_uuid, lock=True)
        group = UserGroup(uuid=uuid, name=msg.name, description=msg.get("description"),
                          accountUuid=ctx.account_uuid)
        s.add(group)
        s.flush()
        return {"inventory": to_inventory(s, group)}


def _check_update_group(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        group = get_or_404(s, UserGroup, msg.uuid)
        if msg.get("name") is not None:
            check_name_free(s, UserGroup, msg.name, "user group", account=group.accountUuid, except_uuid=group.uuid)


@apis.handler("UpdateUserGroup", check=_check_update_group, sync_key=key_of("uuid", "group"))
def update_group(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        group = get_or_404(s, UserGroup, msg.uuid)
        if msg.get("name") is not None:
            check_name_free(s, UserGroup, msg.name, "user group", account=group.accountUuid, except_uuid=group.uuid,
                            lock=True)
        for f in ("name", "description"):
            if msg.get(f) is not None:
                setattr(group, f, msg[f])
        group.lastOpDate = utcnow()
        s.flush()
        return {"inventory": to_inventory(s, group)}


@apis.handler("DeleteUserGroup", check=_check_delete(UserGroup), sync_key=key_of("uuid", "group"))
def delete_group(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        s.execute(delete(UserGroup).where(UserGroup.uuid == msg.uuid))
    return {}


def same_account(s: DbSession, user_uuid: str, other: type, other_uuid: str) -> None:
    """SYS.1003 for a missing user or `other` row; SYS.1007 when they are of different accounts."""
    user = get_or_404(s, User, user_uuid)
    row = get_or_404(s, other, other_uuid)
    if user.accountUuid != row.accountUuid:
        raise invalid(f"the user[uuid:{user_uuid}] and the {other.__inventory__.replace('Inventory', 'VO')}"
                      f"[uuid:{other_uuid}] belong to different accounts")


def _check_membership(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        same_account(s, msg.userUuid, UserGroup, msg.groupUuid)


@apis.handler("AddUserToGroup", check=_check_membership, sync_key=key_of("groupUuid", "group"))
def add_user_to_group(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        same_account(s, msg.userUuid, UserGroup, msg.groupUuid)
        if s.get(UserGroupUserRef, (msg.userUuid, msg.groupUuid)) is None:
            now = utcnow()
            s.add(UserGroupUserRef(userUuid=msg.userUuid, groupUuid=msg.groupUuid, createDate=now, lastOpDate=now))
    return {}


@apis.handler("RemoveUserFromGroup", check=_check_membership, sync_key=key_of("groupUuid", "group"))
def remove_user_from_group(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        s.execute(delete(UserGroupUserRef).where(UserGroupUserRef.userUuid == msg.userUuid,
                                                 UserGroupUserRef.groupUuid == msg.groupUuid))
    return {}

