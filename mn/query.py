"""The query API: conditions compiled to SQL, derived from the catalogue and the models.

A condition is {name, op, value}. `name` is a field of the queried inventory, or a path through
the catalogue's expansions (`vmNics.l3Network.zone.name`), or `__systemTag__`/`__userTag__`.
Each expansion step compiles to `fk IN (SELECT key FROM target WHERE ...)`, so the database does
all filtering. Values are bound parameters typed by the field: conditions cannot inject SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, not_, select
from sqlalchemy.orm import Session

from mn import models as m
from mn.api.catalog import ApiSpec, Catalog, load_catalog
from mn.errors import invalid
from mn.inventory import to_inventories

# ZStack's op words (RPC), with the CLI's operator spellings mapped onto them.
OPS = {"=", "!=", ">", ">=", "<", "<=", "in", "not in", "like", "not like", "is null", "is not null"}
CLI_OPS = {"?=": "in", "!?=": "not in", "~=": "like", "!~=": "not like"}
NEGATIVE = {"!=": "=", "not in": "in", "not like": "like", "is not null": "is null"}
TAG_FIELDS = {"__systemTag__": m.SystemTag, "__userTag__": m.UserTag}


@dataclass(frozen=True)
class Target:
    """The table behind an inventory, with a filter when one table serves several inventories."""

    model: type
    where: tuple[tuple[str, Any], ...] = ()


def _targets() -> dict[str, Target]:
    out: dict[str, Target] = {}
    for mapper in m.Account.registry.mappers:
        cls = mapper.class_
        inv = getattr(cls, "__inventory__", None)
        if inv:
            out[inv] = Target(cls)
    out["L2VlanNetworkInventory"] = Target(m.L2Network, (("type", "L2VlanNetwork"),))
    out["SimulatorHostInventory"] = Target(m.Host, (("hypervisorType", "Simulator"),))
    out["NormalIpRangeInventory"] = Target(m.IpRange, (("ipRangeType", "Normal"),))
    return out


TARGETS = _targets()


def _parse_date(v: str) -> dt.datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%b %d, %Y %I:%M:%S %p"):
        try:
            return dt.datetime.strptime(v, fmt)
        except ValueError:
            continue
    if v.isdigit():  # epoch milliseconds, as ZStack accepts
        return dt.datetime.fromtimestamp(int(v) / 1000, dt.UTC).replace(tzinfo=None)
    raise ValueError(v)


def _typed(field: str, ftype: str, raw: Any) -> Any:
    if raw is None:
        return None
    try:
        if ftype in ("int", "long"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if ftype in ("float", "double"):
            return float(raw)
        if ftype == "boolean":
            if isinstance(raw, bool):
                return raw
            s = str(raw).lower()
            if s not in ("true", "false"):
                raise ValueError(raw)
            return s == "true"
        if ftype == "timestamp":
            return raw if isinstance(raw, dt.datetime) else _parse_date(str(raw))
    except (TypeError, ValueError):
        raise invalid(f"the value {raw!r} of field '{field}' is not a valid {ftype}") from None
    return str(raw)


class QueryCompiler:
    def __init__(self, catalog: Catalog | None = None):
        self.cat = catalog or load_catalog()

    def _expansions(self, inventory: str, api: ApiSpec | None) -> dict[str, dict]:
        exp = {e["field"]: e for e in self.cat.inventories[inventory].expanded}
        if api is not None:
            exp.update({e["field"]: e for e in api.expanded})
        return exp

    def _field_type(self, inventory: str, field: str) -> str | None:
        for n, t in self.cat.inventories[inventory].fields:
            if n == field:
                return t
        return None

    def _compare(self, col: Any, op: str, value: Any) -> ColumnElement[bool]:
        if op == "=":
            return col == value
        if op == "!=":
            return col != value
        if op == ">":
            return col > value
        if op == ">=":
            return col >= value
        if op == "<":
            return col < value
        if op == "<=":
            return col <= value
        if op == "in":
            return col.in_(value)
        if op == "not in":
            return col.not_in(value)
        if op == "like":
            return col.like(value)
        if op == "not like":
            return col.not_like(value)
        if op == "is null":
            return col.is_(None)
        return col.is_not(None)

    def condition(self, inventory: str, name: str, op: str, value: Any, api: ApiSpec | None = None,
                  ) -> ColumnElement[bool]:
        op = CLI_OPS.get(op, op).lower()
        if op not in OPS:
            raise invalid(f"unknown query operator '{op}' in condition on '{name}'; valid: {sorted(OPS)}")
        target = TARGETS.get(inventory)
        if target is None:
            raise invalid(f"{inventory} cannot be queried by this management node")
        model = target.model
        head, _, rest = name.partition(".")
        if head in TAG_FIELDS and not rest:
            tag_model = TAG_FIELDS[head]
            positive = NEGATIVE.get(op, op)
            vals = self._values(head, "string", positive, value)
            sub = select(tag_model.resourceUuid).where(self._compare(tag_model.tag, positive, vals))
            inside = model.uuid.in_(sub)
            return not_(inside) if op in NEGATIVE else inside
        if rest:
            exp = self._expansions(inventory, api).get(head)
            if exp is None:
                valid = sorted(self._expansions(inventory, api))
                raise invalid(f"'{head}' is not a field or expansion of {inventory}; expansions: {valid}")
            sub_target = TARGETS.get(exp["inventory"])
            if sub_target is None or not hasattr(model, exp["foreignKey"]):
                raise invalid(f"the expansion '{head}' ({exp['inventory']}) of {inventory} is not "
                              f"available on this management node")
            inner = self.condition(exp["inventory"], rest, op, value)
            sub_model = sub_target.model
            sub = select(getattr(sub_model, exp["expandedInventoryKey"])).where(
                inner, *self._base_where(sub_target))
            return getattr(model, exp["foreignKey"]).in_(sub)
        ftype = self._field_type(inventory, head)
        if ftype is None or not hasattr(model, head) or ftype == "list":
            valid = sorted(n for n, t in self.cat.inventories[inventory].fields
                           if hasattr(model, n) and t != "list")
            raise invalid(f"'{head}' is not a queryable field of {inventory}; valid fields: {valid}"
                          f"; expansions: {sorted(self._expansions(inventory, api))}")
        return self._compare(getattr(model, head), op, self._values(head, ftype, op, value))

    def _values(self, field: str, ftype: str, op: str, value: Any) -> Any:
        if op in ("is null", "is not null"):
            return None
        if op in ("in", "not in"):
            items = value if isinstance(value, list) else [x for x in str(value).split(",")]
            return [_typed(field, ftype, v) for v in items]
        if op in ("like", "not like"):
            return str(value)
        if isinstance(value, list):
            raise invalid(f"operator '{op}' on field '{field}' takes one value, got a list")
        return _typed(field, ftype, value)

    @staticmethod
    def _base_where(t: Target) -> list[ColumnElement[bool]]:
        return [getattr(t.model, k) == v for k, v in t.where]

    def select(self, inventory: str, conditions: list[dict], api: ApiSpec | None = None) -> Select:
        target = TARGETS[inventory]
        clauses = self._base_where(target)
        for c in conditions:
            if not isinstance(c, dict) or "name" not in c or "op" not in c:
                raise invalid(f"a query condition must be an object with name, op and value: {c!r}")
            clauses.append(self.condition(inventory, str(c["name"]), str(c["op"]), c.get("value"), api))
        return select(target.model).where(and_(*clauses)) if clauses else select(target.model)


def run_query(s: Session, api: ApiSpec, msg: dict[str, Any]) -> dict[str, Any]:
    """Execute a Query API message; returns the reply fields (inventories and/or total)."""
    inventory = api.inventory
    if inventory is None or inventory not in TARGETS:
        raise invalid(f"{api.name} is not available on this management node")
    qc = QueryCompiler()
    base = qc.select(inventory, msg.get("conditions") or [], api)
    model = TARGETS[inventory].model
    reply: dict[str, Any] = {}
    if msg.get("count") or msg.get("replyWithCount"):
        total = s.scalar(select(func.count()).select_from(base.subquery()))
        reply["total"] = int(total or 0)
        if msg.get("count"):
            reply["inventories"] = []
            return reply
    q = base
    sort_by = msg.get("sortBy")
    if sort_by:
        if not hasattr(model, sort_by) or qc._field_type(inventory, sort_by) in (None, "list"):
            raise invalid(f"cannot sort {inventory} by '{sort_by}': not a field")
        col = getattr(model, sort_by)
        q = q.order_by(col.desc() if (msg.get("sortDirection") or "asc") == "desc" else col.asc())
    pk = model.__mapper__.primary_key[0]
    q = q.order_by(pk)
    limit = msg.get("limit")
    q = q.limit(1000 if limit is None else int(limit))
    if msg.get("start"):
        q = q.offset(int(msg["start"]))
    fields = msg.get("fields") or None
    if fields:
        known = {n for n, _ in qc.cat.inventories[inventory].fields}
        bad = [f for f in fields if f not in known]
        if bad:
            raise invalid(f"unknown fields {bad} of {inventory}; valid: {sorted(known)}")
    rows = s.scalars(q).all()
    reply["inventories"] = to_inventories(s, rows, fields)
    return reply
