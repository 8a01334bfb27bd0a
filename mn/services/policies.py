"""Policies of an account and their attachment to users and groups: CreatePolicy, DeletePolicy,
Attach/DetachPolicyToUser (one or several), Attach/DetachPolicyToUserGroup, CheckApiPermission.

A policy's statements are ZStack's: [{"name"?, "effect": "Allow"|"Deny", "actions": [pattern, ...],
"resources"?: [pattern, ...]}], stored as JSON (Policy.statementsJson); the action patterns are
matched by mn.access against the names action_names() gives an API. A policy belongs to the
caller's account, its name unique there, and is attached only to users and groups of that account;
attaching twice changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete

from mn import access
from mn.api.registry import Msg, apis, key_of
from mn.catalogue.catalog import load_catalog
from mn.context import ApiContext, Caller
from mn.db.base import utcnow
from mn.errors import invalid
from mn.inventory import to_inventory
from mn.models import Account, Policy, User, UserGroup, UserGroupPolicyRef, UserPolicyRef
from mn.services.accounts import check_name_free
from mn.services.common import get_or_404, new_resource_uuid
from mn.services.primary_storage import check_delete_mode
from mn.services.users import same_account

EFFECTS = ("Allow", "Deny")
_STATEMENT_KEYS = {"name", "effect", "actions", "resources", "principals"}


def validate_statements(statements: Any) -> list[dict]:
    """The statements as stored, or SYS.1007 naming the first statement that is not ZStack's shape."""
    if not isinstance(statements, list) or not statements:
        raise invalid("parameter 'statements' of CreatePolicy must be a non-empty list of statements")
    out = []
    for i, st in enumerate(statements):
        where = f"statement {i} of CreatePolicy"
        if not isinstance(st, dict):
            raise invalid(f"{where} must be an object {{name?, effect, actions, resources?}}, got {st!r}")
        unknown = sorted(set(st) - _STATEMENT_KEYS)
        if unknown:
            raise invalid(f"{where} has unknown fields {unknown}; a statement has name, effect, actions, resources")
        if st.get("name") is not None and not isinstance(st["name"], str):
            raise invalid(f"{where}: 'name' must be a string")
        if st.get("effect") not in EFFECTS:
            raise invalid(f"{where}: 'effect' must be one of {list(EFFECTS)}, got {st.get('effect')!r}")
        for field, required in (("actions", True), ("resources", False), ("principals", False)):
            v = st.get(field)
            if v is None and not required:
                continue
            if not isinstance(v, list) or (required and not v) or not all(isinstance(a, str) and a for a in v):
                need = "a non-empty list" if required else "a list"
                raise invalid(f"{where}: '{field}' must be {need} of non-empty strings, got {v!r}")
        out.append({k: st[k] for k in ("name", "effect", "actions", "resources", "principals") if k in st})
    return out


def _check_create(ctx: ApiContext, msg: Msg) -> None:
    new_resource_uuid(msg)
    validate_statements(msg.statements)
    with ctx.db.ro() as s:
        check_name_free(s, Policy, msg.name, "policy", account=ctx.account_uuid)


@apis.handler("CreatePolicy", check=_check_create, sync_key=lambda msg: "policy-names")
def create_policy(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    statements = validate_statements(msg.statements)
    with ctx.db.tx() as s:
        check_name_free(s, Policy, msg.name, "policy", account=ctx.account_uuid, lock=True)
        p = Policy(uuid=uuid, name=msg.name, description=msg.get("description"), accountUuid=ctx.account_uuid,
                   statementsJson=json.dumps(statements))
        s.add(p)
        s.flush()
        return {"inventory": to_inventory(s, p)}


def _check_delete(ctx: ApiContext, msg: Msg) -> None:
    check_delete_mode(msg)
    with ctx.db.ro() as s:
        get_or_404(s, Policy, msg.uuid)


@apis.handler("DeletePolicy", check=_check_delete, sync_key=key_of("uuid", "policy"))
def delete_policy(ctx: ApiContext, msg: Msg) -> dict:
    """The policy and (ON DELETE CASCADE) its attachments."""
    with ctx.db.tx() as s:
        s.execute(delete(Policy).where(Policy.uuid == msg.uuid))
    return {}


# ---- attachments --------------------------------------------------------------------------------

def _policies(msg: Msg) -> list[str]:
    uuids = msg.get("policyUuids")
    return list(dict.fromkeys(uuids if uuids is not None else [msg.policyUuid]))


def _check_user_policies(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        for p in _policies(msg):
            same_account(s, msg.userUuid, Policy, p)


def _check_group_policy(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        group = get_or_404(s, UserGroup, msg.groupUuid)
        policy = get_or_404(s, Policy, msg.policyUuid)
        if group.accountUuid != policy.accountUuid:
            raise invalid(f"the user group[uuid:{group.uuid}] and the policy[uuid:{policy.uuid}] belong to "
                          "different accounts")


def _attach_to_user(ctx: ApiContext, msg: Msg) -> dict:
    _check_user_policies(ctx, msg)
    with ctx.db.tx() as s:
        now = utcnow()
        for p in _policies(msg):
            if s.get(UserPolicyRef, (msg.userUuid, p)) is None:
                s.add(UserPolicyRef(userUuid=msg.userUuid, policyUuid=p, createDate=now, lastOpDate=now))
    return {}


def _detach_from_user(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        s.execute(delete(UserPolicyRef).where(UserPolicyRef.userUuid == msg.userUuid,
                                              UserPolicyRef.policyUuid.in_(_policies(msg))))
    return {}


_USER_KEY = key_of("userUuid", "user")
apis.handler("AttachPolicyToUser", check=_check_user_policies, sync_key=_USER_KEY)(_attach_to_user)
apis.handler("AttachPoliciesToUser", check=_check_user_policies, sync_key=_USER_KEY)(_attach_to_user)
apis.handler("DetachPolicyFromUser", check=_check_user_policies, sync_key=_USER_KEY)(_detach_from_user)
apis.handler("DetachPoliciesFromUser", check=_check_user_policies, sync_key=_USER_KEY)(_detach_from_user)


@apis.handler("AttachPolicyToUserGroup", check=_check_group_policy, sync_key=key_of("groupUuid", "group"))
def attach_to_group(ctx: ApiContext, msg: Msg) -> dict:
    _check_group_policy(ctx, msg)
    with ctx.db.tx() as s:
        if s.get(UserGroupPolicyRef, (msg.groupUuid, msg.policyUuid)) is None:
            now = utcnow()
            s.add(UserGroupPolicyRef(groupUuid=msg.groupUuid, policyUuid=msg.policyUuid, createDate=now,
                                     lastOpDate=now))
    return {}


@apis.handler("DetachPolicyFromUserGroup", check=_check_group_policy, sync_key=key_of("groupUuid", "group"))
def detach_from_group(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        s.execute(delete(UserGroupPolicyRef).where(UserGroupPolicyRef.groupUuid == msg.groupUuid,
                                                   UserGroupPolicyRef.policyUuid == msg.policyUuid))
    return {}


# ---- CheckApiPermission -------------------------------------------------------------------------

@apis.handler("CheckApiPermission")
def check_api_permission(ctx: ApiContext, msg: Msg) -> dict:
    """apiName -> "Allow"|"Deny" for the user given (else the caller): what mn.access would decide on
    the API itself (resources aside). Names are API names or message classes."""
    catalog = load_catalog()
    specs = {}
    for name in msg.apiNames:
        spec = catalog.api(name)
        if spec is None:
            raise invalid(f"parameter 'apiNames' of CheckApiPermission: {name!r} is not an API of this management "
                          "node")
        specs[name] = spec
    with ctx.db.ro() as s:
        caller = ctx.caller
        user_uuid = msg.get("userUuid") or caller.user_uuid
        if msg.get("userUuid"):
            user = get_or_404(s, User, user_uuid)
            acc = get_or_404(s, Account, user.accountUuid)
            caller = Caller(acc.uuid, admin=acc.type == "SystemAdmin", user_uuid=user.uuid)
        statements = access.statements_of(s, user_uuid) if user_uuid else []
        out = {}
        for name, spec in specs.items():
            ok = access.api_allowed(spec, caller)
            if ok and user_uuid is not None and not spec.noSession and spec.name not in access.ALWAYS_FOR_USERS:
                ok = access.policy_decision(statements, spec, [])
            out[name] = "Allow" if ok else "Deny"
    return {"inventory": out}



