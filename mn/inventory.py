"""Model rows → ZStack inventories, derived from the catalogue's inventory fields.

Every inventory carries exactly the catalogue's fields. Column values come from the model;
collection fields (attachedClusterUuids, vmNics, allVolumes, ...) are declared once in
COLLECTIONS (register_collections for a plugin's models) and loaded in one batched query per collection and page, never per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mn import models as m
from mn.catalogue.catalog import load_catalog

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def fmt_date(d: dt.datetime | None) -> str | None:
    """ZStack's (Gson's) default date format, e.g. "Nov 23, 2026 8:28:38 PM" (English months)."""
    if d is None:
        return None
    h = d.hour
    return (f"{_MONTHS[d.month - 1]} {d.day}, {d.year} {(h % 12) or 12}:{d.minute:02d}:{d.second:02d} "
            f"{'AM' if h < 12 else 'PM'}")


@dataclass(frozen=True)
class Collection:
    """A list field filled from child rows: child.fk == parent.key."""

    model: type
    fk: str
    key: str = "uuid"
    attr: str | None = None  # a plain attribute list instead of child inventories
    order_by: str | None = None


COLLECTIONS: dict[type, dict[str, Collection]] = {
    m.PrimaryStorage: {"attachedClusterUuids": Collection(m.PrimaryStorageClusterRef, "primaryStorageUuid",
                                                          attr="clusterUuid")},
    m.BackupStorage: {"attachedZoneUuids": Collection(m.BackupStorageZoneRef, "backupStorageUuid",
                                                      attr="zoneUuid")},
    m.L2Network: {"attachedClusterUuids": Collection(m.L2NetworkClusterRef, "l2NetworkUuid", attr="clusterUuid")},
    m.Image: {"backupStorageRefs": Collection(m.ImageBackupStorageRef, "imageUuid")},
    m.L3Network: {
        "ipRanges": Collection(m.IpRange, "l3NetworkUuid", order_by="startIpInLong"),
        "dns": Collection(m.L3NetworkDns, "l3NetworkUuid", attr="dns", order_by="id"),
    },
    m.VmInstance: {
        "vmNics": Collection(m.VmNic, "vmInstanceUuid", order_by="deviceId"),
        "allVolumes": Collection(m.Volume, "vmInstanceUuid", order_by="deviceId"),
    },
    m.VmNic: {"usedIps": Collection(m.UsedIp, "vmNicUuid")},
}


def register_collections(model: type, collections: dict[str, Collection]) -> None:
    """Declare the collection fields of a model's inventory (a plugin's models call this)."""
    for name in collections:
        if name in COLLECTIONS.get(model, {}):
            raise ValueError(f"collection {name} of {model.__name__} is declared twice")
    COLLECTIONS.setdefault(model, {}).update(collections)

# Inventory chosen by row, where one table serves several inventories.
INVENTORY_BY_ROW: dict[type, Callable[[Any], str]] = {
    m.L2Network: lambda r: "L2VlanNetworkInventory" if r.type == "L2VlanNetwork" else "L2NetworkInventory",
}


def inventory_name(row: Any) -> str:
    chooser = INVENTORY_BY_ROW.get(type(row))
    return chooser(row) if chooser else type(row).__inventory__


# How each output field is filled: from a loaded collection, a column attribute, or empty.
_COLL, _ATTR, _LIST, _NONE = range(4)
_MISSING = object()


@lru_cache(maxsize=1024)
def _plan(model: type, inventory: str, wanted: frozenset[str] | None, loaded: frozenset[str],
          ) -> tuple[tuple[str, int], ...]:
    """The inventory's fields in catalogue order with their source, for rows of `model`."""
    out = []
    for fname, ftype in load_catalog().inventories[inventory].fields:
        if wanted is not None and fname not in wanted:
            continue
        if fname in loaded:
            out.append((fname, _COLL))
        elif hasattr(model, fname):
            out.append((fname, _ATTR))
        else:
            out.append((fname, _LIST if ftype == "list" else _NONE))
    return tuple(out)


@cache
def _children_query(c: Collection) -> Any:
    """The children of some parents (`keys`), built once per collection (every inventory asks)."""
    q = select(c.model).where(getattr(c.model, c.fk).in_(bindparam("keys", expanding=True)))
    return q.order_by(getattr(c.model, c.order_by)) if c.order_by else q


def to_inventories(s: Session, rows: Sequence[Any], fields: Sequence[str] | None = None) -> list[dict]:
    """Serialise rows of one model; `fields` restricts the output (the query API's `fields`)."""
    if not rows:
        return []
    model = type(rows[0])
    colls = next((COLLECTIONS[c] for c in model.__mro__ if c in COLLECTIONS), {})  # subclasses too
    wanted = set(fields) if fields else None
    loaded: dict[str, dict[Any, list]] = {}
    for name, c in colls.items():
        if wanted is not None and name not in wanted:
            continue
        keys = [getattr(r, c.key) for r in rows]
        groups: dict[Any, list] = defaultdict(list)
        for i in range(0, len(keys), 500):
            children = s.scalars(_children_query(c), {"keys": keys[i:i + 500]}).all()
            if c.attr:
                for ch in children:
                    groups[getattr(ch, c.fk)].append(getattr(ch, c.attr))
            else:
                invs = to_inventories(s, children)
                for ch, inv in zip(children, invs, strict=True):
                    groups[getattr(ch, c.fk)].append(inv)
        loaded[name] = groups
    frozen_wanted = frozenset(wanted) if wanted is not None else None
    loaded_names = frozenset(loaded)
    out = []
    for r in rows:
        plan = _plan(model, inventory_name(r), frozen_wanted, loaded_names)
        values = r.__dict__  # loaded column values (rows are freshly loaded; else getattr below)
        inv: dict[str, Any] = {}
        for fname, source in plan:
            if source == _ATTR:
                v = values.get(fname, _MISSING)
                if v is _MISSING:
                    v = getattr(r, fname)
                inv[fname] = fmt_date(v) if isinstance(v, dt.datetime) else v
            elif source == _COLL:
                inv[fname] = loaded[fname].get(getattr(r, colls[fname].key), [])
            else:
                inv[fname] = [] if source == _LIST else None
        out.append(inv)
    return out


def to_inventory(s: Session, row: Any) -> dict:
    return to_inventories(s, [row])[0]
