"""Zones: CreateZone, UpdateZone, ChangeZoneState, DeleteZone (QueryZone is derived)."""

from __future__ import annotations

from sqlalchemy import update

from mn.api.registry import Msg, apis, key_of
from mn.cascade import cascade
from mn.context import ApiContext
from mn.inventory import to_inventory
from mn.models import Zone
from mn.services.common import (
    add_tags,
    apply_update,
    change_state,
    check_exists,
    forget_resource,
    get_or_404,
    new_resource_uuid,
)


@apis.handler("CreateZone")
def create_zone(ctx: ApiContext, msg: Msg) -> dict:
    uuid = new_resource_uuid(msg)
    with ctx.db.tx() as s:
        if msg.get("isDefault"):
            s.execute(update(Zone).values(isDefault=False))
        z = Zone(uuid=uuid, name=msg.name, description=msg.get("description"),
                 isDefault=bool(msg.get("isDefault")))
        s.add(z)
        add_tags(s, uuid, "ZoneVO", msg)
        s.flush()
        return {"inventory": to_inventory(s, z)}


def _check(ctx: ApiContext, msg: Msg) -> None:
    check_exists(ctx, Zone, msg.uuid)


@apis.handler("UpdateZone", check=_check, sync_key=key_of("uuid", "zone"))
def update_zone(ctx: ApiContext, msg: Msg) -> dict:
    if msg.get("isDefault"):
        with ctx.db.tx() as s:
            s.execute(update(Zone).where(Zone.uuid != msg.uuid).values(isDefault=False))
    return apply_update(ctx, Zone, msg, ("name", "description", "isDefault"))


@apis.handler("ChangeZoneState", check=_check, sync_key=key_of("uuid", "zone"))
def change_zone_state(ctx: ApiContext, msg: Msg) -> dict:
    return change_state(ctx, Zone, msg)


def delete_zone(ctx: ApiContext, uuid: str, mode: str) -> None:
    cascade(ctx, Zone, uuid, mode)
    with ctx.db.tx() as s:
        z = s.get(Zone, uuid)
        if z is not None:
            forget_resource(s, uuid)
            s.delete(z)


@apis.handler("DeleteZone", check=_check, sync_key=key_of("uuid", "zone"))
def api_delete_zone(ctx: ApiContext, msg: Msg) -> dict:
    with ctx.db.ro() as s:
        get_or_404(s, Zone, msg.uuid)
    delete_zone(ctx, msg.uuid, msg.deleteMode)
    return {}
