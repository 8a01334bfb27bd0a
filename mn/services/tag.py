"""Tags: CreateSystemTag, CreateSystemTags, CreateUserTag, UpdateSystemTag, DeleteTag
(QuerySystemTag and QueryUserTag are derived).

Invariants: a tag names an existing resource by its ZStack VO type (ZoneVO, VmInstanceVO, ...),
mapped to a model through the models' inventory names; a system tag is `key::value` (key and
value non-empty); a resource carries a given tag string at most once per tag kind; inherent
system tags (created by the system) can be neither updated nor deleted through the API.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import select

from mn.api.registry import Msg, apis, key_of
from mn.context import ApiContext
from mn.db.base import Base
from mn.errors import invalid, not_found, operr
from mn.inventory import to_inventory
from mn.models import L2Network, Session, SystemTag, UserTag
from mn.query import FILTERED

# VO names ZStack uses for subtypes that share one of our tables, beyond the query's filtered targets.
_ALIASES: dict[str, type] = {"L2NoVlanNetworkVO": L2Network}
_TAG_MODELS = (SystemTag, UserTag)
_EXCLUDED = (*_TAG_MODELS, Session)  # not resources one tags


@cache
def resource_types() -> dict[str, type]:
    """VO name -> model, for every model that is a uuid-keyed resource (tags themselves excluded):
    a subtype's (KVMHostVO) is its base table's model (Host), and so is that of an inventory served
    by a filtered table (SimulatorHostVO, L2VlanNetworkVO). Cached: cleared when plugins load."""
    out: dict[str, type] = {}
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        inv = getattr(cls, "__inventory__", None)
        if inv and "uuid" in mapper.columns and cls not in _EXCLUDED:
            out[inv.replace("Inventory", "VO")] = mapper.base_mapper.class_
    for inv, target in FILTERED.items():
        out[inv.replace("Inventory", "VO")] = target.model
    out.update(_ALIASES)
    return out


def model_of(resource_type: str) -> type:
    model = resource_types().get(resource_type)
    if model is None:
        raise invalid(f"resourceType {resource_type!r} is not a resource type of this management node; valid "
                      f"types: {', '.join(sorted(resource_types()))}")
    return model


def check_system_tag(tag: str) -> None:
    key, sep, value = tag.partition("::")
    if not sep or not key.strip() or not value.strip():
        raise invalid(f"system tag {tag!r} is not of the form key::value")


def _check_user_tag(tag: str) -> None:
    if not tag.strip():
        raise invalid("a user tag cannot be empty")


def _check_resource(ctx: ApiContext, resource_type: str, resource_uuid: str) -> None:
    model = model_of(resource_type)
    with ctx.db.ro() as s:
        if s.get(model, resource_uuid) is None:
            raise not_found(resource_type, resource_uuid)


def _create(ctx: ApiContext, model: type, msg: Msg, tags: list[str]) -> list[dict]:
    kind = "System" if model is SystemTag else "User"
    with ctx.db.tx() as s:
        if s.get(model_of(msg.resourceType), msg.resourceUuid) is None:
            raise not_found(msg.resourceType, msg.resourceUuid)
        rows = []
        for t in tags:
            dup = s.scalars(select(model.uuid).where(model.resourceUuid == msg.resourceUuid, model.tag == t)).first()
            if dup is not None:
                raise invalid(f"{msg.resourceType}[uuid:{msg.resourceUuid}] already has the {kind.lower()} tag "
                              f"{t!r} (tag uuid {dup})")
            row = model(resourceUuid=msg.resourceUuid, resourceType=msg.resourceType, tag=t, type=kind)
            s.add(row)
            rows.append(row)
        s.flush()
        return [to_inventory(s, r) for r in rows]


def _check_create_system(ctx: ApiContext, msg: Msg) -> None:
    check_system_tag(msg.tag)
    _check_resource(ctx, msg.resourceType, msg.resourceUuid)


@apis.handler("CreateSystemTag", check=_check_create_system, sync_key=key_of("resourceUuid", "tags"))
def create_system_tag(ctx: ApiContext, msg: Msg) -> dict:
    return {"inventory": _create(ctx, SystemTag, msg, [msg.tag])[0]}


def _check_create_systems(ctx: ApiContext, msg: Msg) -> None:
    for t in msg.tags:
        check_system_tag(t)
    if len(set(msg.tags)) != len(msg.tags):
        raise invalid("parameter 'tags' of CreateSystemTags names a tag twice")
    _check_resource(ctx, msg.resourceType, msg.resourceUuid)


@apis.handler("CreateSystemTags", check=_check_create_systems, sync_key=key_of("resourceUuid", "tags"))
def create_system_tags(ctx: ApiContext, msg: Msg) -> dict:
    return {"inventories": _create(ctx, SystemTag, msg, list(msg.tags))}


def _check_create_user(ctx: ApiContext, msg: Msg) -> None:
    _check_user_tag(msg.tag)
    _check_resource(ctx, msg.resourceType, msg.resourceUuid)


@apis.handler("CreateUserTag", check=_check_create_user, sync_key=key_of("resourceUuid", "tags"))
def create_user_tag(ctx: ApiContext, msg: Msg) -> dict:
    return {"inventory": _create(ctx, UserTag, msg, [msg.tag])[0]}


def _check_update_system(ctx: ApiContext, msg: Msg) -> None:
    check_system_tag(msg.tag)
    with ctx.db.ro() as s:
        row = s.get(SystemTag, msg.uuid)
        if row is None:
            raise not_found("SystemTagVO", msg.uuid)
        if row.inherent:
            raise operr(f"system tag[uuid:{row.uuid}] is inherent (created by the system); it cannot be updated")


@apis.handler("UpdateSystemTag", check=_check_update_system, sync_key=key_of("uuid", "tag"))
def update_system_tag(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        row = s.get(SystemTag, msg.uuid)
        if row is None:
            raise not_found("SystemTagVO", msg.uuid)
        dup = s.scalars(select(SystemTag.uuid).where(SystemTag.resourceUuid == row.resourceUuid,
                                                     SystemTag.tag == msg.tag, SystemTag.uuid != row.uuid)).first()
        if dup is not None:
            raise invalid(f"{row.resourceType}[uuid:{row.resourceUuid}] already has the system tag {msg.tag!r} "
                          f"(tag uuid {dup})")
        row.tag = msg.tag
        s.flush()
        return {"inventory": to_inventory(s, row)}


def _check_delete(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        sys_row = s.get(SystemTag, msg.uuid)
        if sys_row is None and s.get(UserTag, msg.uuid) is None:
            raise not_found("TagVO", msg.uuid)
        if sys_row is not None and sys_row.inherent:
            raise operr(f"system tag[uuid:{msg.uuid}] is inherent (created by the system); it cannot be deleted")


@apis.handler("DeleteTag", check=_check_delete, sync_key=key_of("uuid", "tag"))
def delete_tag(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.tx() as s:
        for model in _TAG_MODELS:
            row = s.get(model, msg.uuid)
            if row is not None and not getattr(row, "inherent", False):
                s.delete(row)
    return {}
