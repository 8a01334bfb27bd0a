"""Model rows → ZStack inventories, derived from the catalogue's inventory fields.

Every inventory carries exactly the catalogue's fields. Column values come from the model;
collection fields (attachedClusterUuids, vmNics, allVolumes, ...) are declared once in
COLLECTIONS and loaded in one batched query per collection and page, never per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mn import models as m
from mn.api.catalog import load_catalog


def fmt_date(d: dt.datetime | None) -> str | None:
    """ZStack's (Gson's) default date format, e.g. "Nov 23, 2026 8:28:38 PM"."""
    if d is None:
        return None
    return f"{d:%b} {d.day}, {d.year} {(d.hour % 12) or 12}:{d:%M:%S} {'AM' if d.hour < 12 else 'PM'}"


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

# Inventory chosen by row, where one table serves several inventories.
INVENTORY_BY_ROW: dict[type, Callable[[Any], str]] = {
    m.L2Network: lambda r: "L2VlanNetworkInventory" if r.type == "L2VlanNetwork" else "L2NetworkInventory",
}


def inventory_name(row: Any) -> str:
    chooser = INVENTORY_BY_ROW.get(type(row))
    return chooser(row) if chooser else type(row).__inventory__


def _render(value: Any, ftype: str) -> Any:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return fmt_date(value)
    return value


def _empty(ftype: str) -> Any:
    return [] if ftype == "list" else None


def to_inventories(s: Session, rows: Sequence[Any], fields: Sequence[str] | None = None) -> list[dict]:
    """Serialise rows of one model; `fields` restricts the output (the query API's `fields`)."""
    if not rows:
        return []
    cat = load_catalog()
    model = type(rows[0])
    colls = COLLECTIONS.get(model, {})
    wanted = set(fields) if fields else None
    loaded: dict[str, dict[Any, list]] = {}
    for name, c in colls.items():
        if wanted is not None and name not in wanted:
            continue
        keys = [getattr(r, c.key) for r in rows]
        groups: dict[Any, list] = defaultdict(list)
        for i in range(0, len(keys), 500):
            q = select(c.model).where(getattr(c.model, c.fk).in_(keys[i:i + 500]))
            if c.order_by:
                q = q.order_by(getattr(c.model, c.order_by))
            children = s.scalars(q).all()
            if c.attr:
                for ch in children:
                    groups[getattr(ch, c.fk)].append(getattr(ch, c.attr))
            else:
                invs = to_inventories(s, children)
                for ch, inv in zip(children, invs, strict=True):
                    groups[getattr(ch, c.fk)].append(inv)
        loaded[name] = groups
    out = []
    for r in rows:
        spec = cat.inventories[inventory_name(r)]
        inv: dict[str, Any] = {}
        for fname, ftype in spec.fields:
            if wanted is not None and fname not in wanted:
                continue
            if fname in loaded:
                inv[fname] = loaded[fname].get(getattr(r, colls[fname].key), [])
            elif hasattr(r, fname):
                inv[fname] = _render(getattr(r, fname), ftype)
            else:
                inv[fname] = _empty(ftype)
        out.append(inv)
    return out


def to_inventory(s: Session, row: Any) -> dict:
    return to_inventories(s, [row])[0]
