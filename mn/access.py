"""Who may call what: the permission check every API call passes (mn.api.dispatch), before its
handler's check and before anything is queued. It has no side effects.

For an admin account (SystemAdmin) everything is allowed (to a user of it, what its policies allow:
rule 3). For a normal account:
1. the API must be one normal accounts may call: ZStack's @Action category (catalogue `category`)
   set and not one of the infrastructure families (ADMIN_CATEGORIES), nor an identity API kept
   for admins (ADMIN_APIS); noSession APIs are for everyone;
2. every resource the message names (parameters with a resourceType the ownership rules know,
   mn.ownership) must be the account's own; a resource of a shareable type (images, L3 networks,
   offerings) shared with the account may be used where it is not the target of the change; an
   API that only reads needs the resource visible only. Infrastructure (zones, hosts, storage,
   L2 networks) may be named where an API places a resource on it (CreateVmInstance.hostUuid).
3. a user's session (LogInByUser) must also be allowed by the user's policies and its groups':
   some Allow statement matches the API and no Deny statement does (ZStack's semantics).
A refusal is ID.1002 (403) naming the API or the resource; a resource that does not exist is
refused alike, so a normal account cannot learn which uuids exist.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import String, bindparam, exists, literal, or_, select, true, union_all
from sqlalchemy.orm import Session

from mn import models as m
from mn import ownership
from mn.catalogue.catalog import ApiSpec
from mn.context import ApiContext, Caller
from mn.errors import PERMISSION_DENIED, ApiError

ADMIN_CATEGORIES = frozenset({"zone", "cluster", "host", "primaryStorage", "backupStorage", "l2Network",
                              "console", "core", "longjob", "hostNetwork.lldp", "SdnController"})
"""ZStack @Action categories of infrastructure: admins only, reads included."""
ADMIN_APIS = frozenset({"QueryGlobalConfig", "MigrateVm", "GetVmMigrationCandidateHosts"})
"""APIs of a normal-account category that are still for admins only."""
NORMAL_APIS = frozenset({"QueryAccount", "QuerySharedResource"})
"""APIs without an @Action that normal accounts may call (answered with their own rows only)."""
ALWAYS_FOR_USERS = frozenset({"LogOut", "ValidateSession", "RenewSession", "GetAccountQuotaUsage"})
"""APIs a user may call whatever its policies say (its own session, its account's quotas)."""

TARGETS: dict[str, frozenset[str]] = {
    "AddDnsToL3Network": frozenset({"l3NetworkUuid"}),
    "RemoveDnsFromL3Network": frozenset({"l3NetworkUuid"}),
    "AddIpRange": frozenset({"l3NetworkUuid"}),
    "AddIpRangeByNetworkCidr": frozenset({"l3NetworkUuid"}),
    "ExpungeImage": frozenset({"imageUuid"}),
    "RecoverImage": frozenset({"imageUuid"}),
    "CreateSystemTag": frozenset({"resourceUuid"}),
    "CreateSystemTags": frozenset({"resourceUuid"}),
    "CreateUserTag": frozenset({"resourceUuid"}),
    "ShareResource": frozenset({"resourceUuids"}),
    "RevokeResourceSharing": frozenset({"resourceUuids"}),
}
"""Parameters besides `uuid` naming the resource an API changes: it must be owned, even if shared."""
PARAM_TYPES: dict[tuple[str, str], str] = {
    ("DeleteTag", "uuid"): "TagVO",
    ("UpdateSystemTag", "uuid"): "TagVO",
    ("CreateVmInstance", "defaultL3NetworkUuid"): "L3NetworkVO",
    ("GetEipAttachableVmNics", "vmUuid"): "VmInstanceVO",
}
"""Resource types of parameters the catalogue leaves untyped."""
NOT_CHECKED = frozenset({("ShareResource", "accountUuids"), ("RevokeResourceSharing", "accountUuids")})
"""Parameters naming resources the caller need not own nor see (the accounts it shares with)."""
SELF_APIS = {"UpdateUser": "uuid", "CheckApiPermission": "userUuid"}
"""APIs a user may call on itself (the parameter naming the user left out, or its own uuid)
whatever its policies say."""
CATEGORY_ALIASES = {"vm": "instance", "l3": "l3Network", "l2": "l2Network", "ps": "primaryStorage",
                    "bs": "backupStorage"}


def denied(details: str) -> ApiError:
    return ApiError(PERMISSION_DENIED, details, http_status=403)


def api_allowed(spec: ApiSpec, caller: Caller) -> bool:
    """Whether the caller's account may call the API at all (before resources and policies)."""
    if caller.admin or spec.noSession:
        return True
    if spec.name in NORMAL_APIS:
        return True
    return spec.category is not None and spec.category not in ADMIN_CATEGORIES and spec.name not in ADMIN_APIS


def authorize(ctx: ApiContext, spec: ApiSpec, msg: dict) -> None:
    """Refuse (ID.1002) a call the caller may not make; see the module docstring."""
    caller = ctx.caller
    if spec.noSession:
        return
    if caller.admin:  # an admin account may do anything; a user of it, what its policies allow
        if caller.user_uuid is not None and _policies_apply(spec, msg, caller):
            with ctx.db.ro() as s:
                check_user_policies(s, spec, caller, [u for _, u, _ in _named_resources(spec, msg)])
        return
    if not api_allowed(spec, caller):
        raise denied(f"the account[uuid:{caller.account_uuid}] is a normal account: {spec.name} is for "
                     "admins only")
    named = list(_named_resources(spec, msg))
    with ctx.db.ro() as s:
        if caller.user_uuid is not None and _policies_apply(spec, msg, caller):
            check_user_policies(s, spec, caller, [u for _, u, _ in named])
        for rtype, uuid, target in named:
            need_owner = target or not _shareable(rtype)
            if spec.read:
                need_owner = False
            if not _may(s, caller, rtype, uuid, need_owner):
                what = "the owner of" if need_owner else "allowed to use"
                raise denied(f"the account[uuid:{caller.account_uuid}] is not {what} the resource"
                             f"[uuid:{uuid}, type:{rtype}] ({spec.name})")


def _policies_apply(spec: ApiSpec, msg: dict, caller: Caller) -> bool:
    """Whether a user's call needs its policies' leave (not its session's APIs, nor on itself)."""
    if spec.name in ALWAYS_FOR_USERS:
        return False
    param = SELF_APIS.get(spec.name)
    return param is None or msg.get(param) not in (None, caller.user_uuid)


def _named_resources(spec: ApiSpec, msg: dict) -> Iterator[tuple[str, str, bool]]:
    """(resource type, uuid, is it the target of the change) for each resource the message names."""
    targets = TARGETS.get(spec.name, frozenset())
    for p in spec.params:
        if (spec.name, p.name) in NOT_CHECKED:
            continue
        rtype = PARAM_TYPES.get((spec.name, p.name)) or p.resourceType
        if rtype is None:
            continue
        if rtype != "ResourceVO" and rtype not in ownership.BY_TYPE:
            continue  # infrastructure, or a type nobody owns
        value = msg.get(p.name)
        values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        target = p.name == "uuid" or p.name in targets
        for v in values:
            if isinstance(v, str) and v:
                yield rtype, v, target


def _shareable(rtype: str) -> bool:
    rules = [ownership.RULES[mdl] for mdl in ownership.BY_TYPE.get(rtype, [])]
    return any(isinstance(r, ownership.Owned) and r.shareable for r in rules)


def _may(s: Session, caller: Caller, rtype: str, uuid: str, owner: bool) -> bool:
    conn = s.connection()
    return any(conn.execute(stmt, {"uuid": uuid, "acct": caller.account_uuid}).first() is not None
               for stmt in _may_statements(rtype, owner))


_MAY: dict[tuple[str, bool, tuple[type, ...]], list[Any]] = {}


def _may_statements(rtype: str, owner: bool) -> list[Any]:
    """Per model of `rtype`: a statement answering a row when the resource `uuid` is one the
    account `acct` owns (or may see), with both as bound parameters, built once per type (the
    compiled statement is cached: a check costs one execution, not a build)."""
    key = (rtype, owner, tuple(ownership.BY_TYPE.get(rtype, [])))  # a plugin's model declared later: rebuilt
    found = _MAY.get(key)
    if found is not None:
        return found
    acct = bindparam("acct", type_=String)
    uuid = bindparam("uuid", type_=String)
    ref, sh = m.AccountResourceRef, m.SharedResource
    # This one resource's owner record and shares (by their keys), not every uuid the account owns
    # (an IN over all of them: a cost growing with what the account owns).
    mine = exists().where(ref.resourceUuid == uuid, ref.accountUuid == acct)
    seen = or_(mine, exists().where(sh.resourceUuid == uuid, or_(sh.receiverAccountUuid == acct, sh.toPublic == true())))
    if rtype == "ResourceVO":  # any owned resource, by its owner record
        refs = select(ref.resourceUuid).where(ref.resourceUuid == uuid, ref.accountUuid == acct)
        shares = select(sh.resourceUuid).where(sh.resourceUuid == uuid,
                                               or_(sh.receiverAccountUuid == acct, sh.toPublic == true()))
        out = [refs.limit(1) if owner else union_all(refs, shares).limit(1)]
    else:
        out = []
        for model in ownership.BY_TYPE.get(rtype, []):
            pk = model.__mapper__.primary_key[0]
            if isinstance(ownership.RULES.get(model), ownership.Owned):
                clause = mine if owner else seen
            else:
                clause = ownership.rule_clause(model, acct, owner)
            out.append(select(literal(1)).select_from(model).where(pk == uuid, clause).limit(1))
    return _MAY.setdefault(key, out)


# --- user policies -------------------------------------------------------------------------------

def action_names(spec: ApiSpec) -> list[str]:
    """The names a policy statement's action pattern is matched against, for one API: the message
    class (org.zstack.header.vm.APICreateVmInstanceMsg), the API name, and `category:APIName`,
    `category:APIxxxMsg` and `category:read` (for reads) in ZStack's category, with aliases
    (vm: for instance:)."""
    short = spec.message.rsplit(".", 1)[-1]
    out = [spec.message, spec.name, short]
    cats = [spec.category] if spec.category else []
    cats += [a for a, c in CATEGORY_ALIASES.items() if c == spec.category]
    for c in cats:
        out += [f"{c}:{spec.name}", f"{c}:{short}"]
        if spec.read:
            out.append(f"{c}:read")
    return out


def statements_of(s: Session, user_uuid: str) -> list[dict]:
    """The statements of every policy attached to the user or to one of its groups."""
    direct = select(m.UserPolicyRef.policyUuid).where(m.UserPolicyRef.userUuid == user_uuid)
    groups = select(m.UserGroupUserRef.groupUuid).where(m.UserGroupUserRef.userUuid == user_uuid)
    via = select(m.UserGroupPolicyRef.policyUuid).where(m.UserGroupPolicyRef.groupUuid.in_(groups))
    rows = s.scalars(select(m.Policy.statementsJson).where(m.Policy.uuid.in_(union_all(direct, via)))).all()
    out: list[dict] = []
    for text in rows:
        out.extend(json.loads(text or "[]"))
    return out


def statement_matches(st: dict, names: list[str], resources: list[str]) -> bool:
    patterns = st.get("actions") or []
    if not any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names):
        return False
    scope = st.get("resources") or []
    if not scope:
        return True
    return any(fnmatch.fnmatchcase(r, p) for p in scope for r in resources)


def policy_decision(statements: list[dict], spec: ApiSpec, resources: list[str]) -> bool:
    """Allowed when some Allow statement matches and no Deny statement does."""
    names = action_names(spec)
    allowed = False
    for st in statements:
        if statement_matches(st, names, resources):
            if st.get("effect") == "Deny":
                return False
            allowed = allowed or st.get("effect") == "Allow"
    return allowed


def check_user_policies(s: Session, spec: ApiSpec, caller: Caller, resources: list[str]) -> None:
    assert caller.user_uuid is not None
    if not policy_decision(statements_of(s, caller.user_uuid), spec, resources):
        raise denied(f"the user[uuid:{caller.user_uuid}] has no policy that allows {spec.name}")
