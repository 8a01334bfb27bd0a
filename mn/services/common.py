"""Helpers every service module uses: lookups, compare-and-swap state changes, updates, tags."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mn import ownership
from mn.context import ApiContext
from mn.errors import CHANGE_RESOURCE_STATE_ERROR, ApiError, invalid, not_found
from mn.inventory import to_inventory
from mn.models import SystemTag, UserTag

M = TypeVar("M")

# ZStack's stateEvent words and the admin states they lead to.
STATE_EVENTS = {"enable": "Enabled", "disable": "Disabled", "maintain": "Maintenance",
                "preMaintain": "PreMaintenance", "deleting": "Deleting"}


def resource_name(model: type) -> str:
    """ZStack's VO name for messages, e.g. ZoneVO."""
    inv = getattr(model, "__inventory__", None) or model.__name__
    return inv.replace("Inventory", "VO")


def get_or_404(s: Session, model: type[M], uuid: str | None) -> M:
    row = s.get(model, uuid) if uuid else None
    if row is None:
        raise not_found(resource_name(model), str(uuid))
    return row


_ROW_BY_UUID: dict[type, Any] = {}  # model -> prebuilt select of its table's row by uuid


def row_or_404(conn: Connection, model: type, uuid: str | None) -> Row:
    """The row of `model`'s own table with this uuid, read in Core (a Row with the columns as
    attributes, no ORM object: for reads that only look), or RESOURCE_NOT_FOUND."""
    q = _ROW_BY_UUID.get(model)
    if q is None:
        table = model.__table__  # type: ignore[attr-defined]
        q = _ROW_BY_UUID.setdefault(model, select(table).where(table.c.uuid == bindparam("u")))
    row = conn.execute(q, {"u": uuid}).first() if uuid else None
    if row is None:
        raise not_found(resource_name(model), str(uuid))
    return row


def check_exists(ctx: ApiContext, model: type, *uuids: str | None) -> None:
    """A `check` helper: every given uuid (None skipped) exists."""
    with ctx.db.ro() as s:
        for u in uuids:
            if u is not None:
                get_or_404(s, model, u)


def cas(s: Session, model: type, uuid: str, expected: Iterable[str], new: str, field: str = "state",
        **values: Any) -> bool:
    """Set `field` to `new` only if it is one of `expected` now; True if the row changed."""
    col = getattr(model, field)
    res = s.execute(update(model).where(model.uuid == uuid, col.in_(list(expected)))
                    .values({field: new, **values}))
    return res.rowcount == 1


def transition(ctx: ApiContext, model: type, uuid: str, expected: Iterable[str], new: str,
               field: str = "state", **values: Any) -> None:
    """A compare-and-swap in its own transaction; a clear error when the row is not in `expected`."""
    expected = list(expected)
    with ctx.db.tx() as s:
        row = get_or_404(s, model, uuid)
        if not cas(s, model, uuid, expected, new, field, **values):
            raise ApiError(CHANGE_RESOURCE_STATE_ERROR,
                           f"{resource_name(model)}[uuid:{uuid}] is {getattr(row, field)}; "
                           f"this operation needs it to be one of {expected}")


def inventory(ctx: ApiContext, model: type, uuid: str) -> dict:
    with ctx.db.ro() as s:
        return to_inventory(s, get_or_404(s, model, uuid))


def apply_update(ctx: ApiContext, model: type, msg: dict, fields: Iterable[str]) -> dict:
    """UpdateXxx: set each given field that the message carries; return the new inventory."""
    uuid = msg["uuid"]
    with ctx.db.tx() as s:
        row = get_or_404(s, model, uuid)
        for f in fields:
            if msg.get(f) is not None:
                setattr(row, f, msg[f])
        s.flush()
        return {"inventory": to_inventory(s, row)}


def change_state(ctx: ApiContext, model: type, msg: dict, allowed: dict[str, Iterable[str]] | None = None,
                 ) -> dict:
    """ChangeXxxState: map the stateEvent to a state; `allowed` maps event -> states it may leave."""
    event = msg["stateEvent"]
    new = STATE_EVENTS.get(event)
    if new is None:
        raise invalid(f"unknown stateEvent {event!r}")
    with ctx.db.tx() as s:
        row = get_or_404(s, model, msg["uuid"])
        if allowed is not None and event in allowed and row.state not in allowed[event]:
            raise ApiError(CHANGE_RESOURCE_STATE_ERROR,
                           f"{resource_name(model)}[uuid:{row.uuid}] in state {row.state} cannot take "
                           f"the state event {event}")
        row.state = new
        s.flush()
        return {"inventory": to_inventory(s, row)}


def add_tags(s: Session, resource_uuid: str, resource_type: str, msg: dict) -> None:
    """Attach the message's systemTags and userTags to a resource created in this transaction."""
    for t in msg.get("systemTags") or []:
        s.add(SystemTag(resourceUuid=resource_uuid, resourceType=resource_type, tag=t, type="System"))
    for t in msg.get("userTags") or []:
        s.add(UserTag(resourceUuid=resource_uuid, resourceType=resource_type, tag=t, type="User"))


def system_tag_value(tags: Iterable[str], key: str) -> str | None:
    """The value of `key::value` among system tags, or None."""
    prefix = key + "::"
    for t in tags:
        if t.startswith(prefix):
            return t[len(prefix):]
    return None


def stored_tag_value(s: Session, resource_uuid: str, key: str) -> str | None:
    tags = s.scalars(select(SystemTag.tag).where(SystemTag.resourceUuid == resource_uuid,
                                                 SystemTag.tag.like(key + "::%"))).all()
    return system_tag_value(tags, key)


def forget_resource(s: Session, resource_uuid: str) -> None:
    """What refers to a resource being deleted (in its deleting transaction): its tags, its owner
    record and its shares."""
    from sqlalchemy import delete

    s.execute(delete(SystemTag).where(SystemTag.resourceUuid == resource_uuid))
    s.execute(delete(UserTag).where(UserTag.resourceUuid == resource_uuid))
    ownership.disown(s, [resource_uuid])


def check_storage_path(url: Any, api: str, what: str = "directory path") -> str:
    """A storage's `url` as a path: absolute, normalised (no `.`/`..` components, no `//`, no
    trailing `/` but the root's), no control characters; SYS.1007 naming the rule otherwise."""
    if not isinstance(url, str) or not url.startswith("/"):
        raise invalid(f"parameter 'url' of {api} must be an absolute {what}, got {url!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise invalid(f"parameter 'url' of {api} has control characters: {url!r}")
    parts = url.split("/")[1:]
    if url != "/" and any(p in ("", ".", "..") for p in parts):
        raise invalid(f"parameter 'url' of {api} must be a normalised absolute {what} (no '.', '..' or empty "
                      f"components, no trailing '/'), got {url!r}")
    return url


def new_resource_uuid(msg: dict) -> str:
    """APICreateMessage's resourceUuid, or a fresh uuid."""
    from mn.db.base import new_uuid

    u = msg.get("resourceUuid")
    if u is not None and (len(u) != 32 or any(c not in "0123456789abcdef" for c in u)):
        raise invalid(f"resourceUuid must be 32 lower-case hex characters, got {u!r}")
    return u or new_uuid()


def standard_handlers(model: type, key_prefix: str, *, update_api: str | None = None,
                      update_fields: tuple[str, ...] = ("name", "description"), state_api: str | None = None,
                      update_check: Any = None) -> None:
    """Declare a resource's plain UpdateXxx (sets the given fields) and ChangeXxxState handlers.

    Both check that the uuid exists before queueing and run on the resource's sync key;
    `update_check(msg)` adds a side-effect-free check of the update's values.
    """
    from mn.api.registry import apis, key_of

    def check(ctx: ApiContext, msg: dict) -> None:
        check_exists(ctx, model, msg["uuid"])

    def check_update(ctx: ApiContext, msg: dict) -> None:
        check(ctx, msg)
        if update_check is not None:
            update_check(msg)

    key = key_of("uuid", key_prefix)
    if update_api:
        apis.handler(update_api, check=check_update, sync_key=key)(
            lambda ctx, msg: apply_update(ctx, model, msg, update_fields))
    if state_api:
        apis.handler(state_api, check=check, sync_key=key)(lambda ctx, msg: change_state(ctx, model, msg))
