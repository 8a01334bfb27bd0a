"""The query API: conditions compiled to SQL, derived from the catalogue and the models.

A condition is {name, op, value}. `name` is a field of the queried inventory, or a path through
the catalogue's expansions to any depth (`vmNics.l3Network.zone.name`, and reverse ones such as
`vmInstance.state` from HostInventory), or `__systemTag__`/`__userTag__` (at any level).
Each expansion step compiles to `fk IN (SELECT key FROM target WHERE ...)`, so the database does
all filtering; the operator applies inside the innermost subquery, as in ZStack ("some child
matches"). On SQLite, which materialises every IN subquery in full, a reverse (one-to-many)
expansion whose children match at least EXISTS_THRESHOLD rows (a bounded probe, run while
compiling a page) compiles instead to the equivalent correlated `EXISTS (SELECT 1 FROM child
WHERE child.fk = parent.key AND ...)`, so a page of 20 hosts "with a running VM" probes a few
VMs per host instead of collecting 800,000; counts keep the IN form (they visit every parent).
Likewise a small SQLite page (start+limit <= WALK_PAGE) whose conditions match at least
WALK_MATCHES rows walks the index of its order and filters (the table's own terms are written
`+col`, which no index may serve) instead of gathering every match to sort it. Pages are ordered
by the sort field then the primary key, both in the sort's direction, so an index on (field, uuid)
serves them; a page with `start` first finds its keys, then loads only those rows.
Tag conditions compile to `uuid [NOT] IN (SELECT resourceUuid FROM <tag table> WHERE tag <op> :v)`:
negative operators (!=, not in, not like) select resources with no matching tag, `is null`
resources with no tag at all, `is not null` resources with at least one.

Values are bound parameters typed by the field (int/long, float/double, boolean, timestamp —
ZStack's date formats, ISO 8601 or epoch milliseconds — else string); field names come only from
the catalogue, so conditions cannot inject SQL. An unknown field, expansion or operator, or a
value of the wrong type, is a SYS.1007 error naming it and listing the valid ones.

groupBy=<field>: ZStack appends `GROUP BY <field>` to its entity query, which MySQL answers with
one (arbitrary) row per distinct value. Here the answer is made deterministic and portable: one
row per distinct value of the field among the matching rows (NULL is one group), the row with
the smallest primary key; sortBy/start/limit then apply to those rows, and `total`
(count/replyWithCount) counts the groups.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, exists, func, literal, not_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from mn import models as m
from mn import ownership
from mn.catalogue.catalog import ApiSpec, Catalog, load_catalog
from mn.context import SYSTEM, Caller
from mn.errors import invalid
from mn.inventory import to_inventories

# ZStack's op words (RPC), with the CLI's operator spellings mapped onto them.
OPS = {"=", "!=", ">", ">=", "<", "<=", "in", "not in", "like", "not like", "is null", "is not null"}
CLI_OPS = {"?=": "in", "!?=": "not in", "~=": "like", "!~=": "not like"}
NEGATIVE = {"!=": "=", "not in": "in", "not like": "like"}
TAG_FIELDS = {"__systemTag__": m.SystemTag, "__userTag__": m.UserTag}
DEFAULT_LIMIT = 1000
EXISTS_THRESHOLD = 1000  # children matching at least this many rows: EXISTS instead of IN (SQLite)
WALK_PAGE = 100  # SQLite pages up to start+limit this small may walk the order's index (see run_query)
WALK_MATCHES = 300  # ... when their conditions match at least this many rows
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d", "%b %d, %Y %I:%M:%S %p", "%b %d, %Y, %I:%M:%S %p")


@dataclass(frozen=True)
class Target:
    """The table behind an inventory, with a filter when one table serves several inventories."""

    model: type
    where: tuple[tuple[str, Any], ...] = ()


# Inventories served by a table with a filter (one table, several inventories); plugins add theirs.
FILTERED: dict[str, Target] = {
    "L2VlanNetworkInventory": Target(m.L2Network, (("type", "L2VlanNetwork"),)),
    "NormalIpRangeInventory": Target(m.IpRange, (("ipRangeType", "Normal"),)),
}


def register_target(inventory: str, target: Target) -> None:
    """Serve `inventory` from a table with a filter (e.g. SimulatorHostInventory: hosts of type Simulator)."""
    FILTERED[inventory] = target
    TARGETS[inventory] = target


def refresh_targets() -> None:
    """TARGETS from every mapped model with an inventory (plugins' models too, once they are
    loaded) and the filtered targets. Updated in place: modules hold the same dict."""
    out: dict[str, Target] = {}
    for mapper in m.Account.registry.mappers:
        cls = mapper.class_
        inv = getattr(cls, "__inventory__", None)
        if inv:
            out[inv] = Target(cls)
    out.update(FILTERED)
    TARGETS.clear()
    TARGETS.update(out)


TARGETS: dict[str, Target] = {}
"""Inventory name -> the table (and filter) behind it: what Query APIs can serve."""
refresh_targets()


def parse_date(v: str) -> dt.datetime:
    """A condition's date: ZStack's formats, ISO 8601 (naive UTC or with an offset), epoch millis."""
    v = v.strip()
    if v.lstrip("-").isdigit():
        return dt.datetime.fromtimestamp(int(v) / 1000, dt.UTC).replace(tzinfo=None)
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(v, fmt)
        except ValueError:
            continue
    d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))  # raises ValueError
    return d.astimezone(dt.UTC).replace(tzinfo=None) if d.tzinfo else d


def typed_value(field: str, ftype: str, raw: Any) -> Any:
    """`raw` converted to the type of `field`; a SYS.1007 error naming the field if it cannot be."""
    if raw is None:
        return None
    try:
        if isinstance(raw, list | dict):
            raise ValueError(raw)
        if ftype in ("int", "long"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw) if isinstance(raw, int | float) else int(str(raw).strip())
        if ftype in ("float", "double"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if ftype == "boolean":
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s not in ("true", "false"):
                raise ValueError(raw)
            return s == "true"
        if ftype == "timestamp":
            if isinstance(raw, dt.datetime):
                return raw
            if isinstance(raw, int) and not isinstance(raw, bool):
                raw = str(raw)
            return parse_date(str(raw))
    except (TypeError, ValueError, OverflowError):
        raise invalid(f"the value {raw!r} of field '{field}' is not a valid {ftype}") from None
    return raw if isinstance(raw, str) else str(raw)


class QueryCompiler:
    """Compiles conditions on an inventory to SQLAlchemy clauses, from the catalogue alone."""

    def __init__(self, catalog: Catalog | None = None, probe: Callable[[Select], bool] | None = None,
                 caller: Caller = SYSTEM):
        """`probe(stmt)` tells whether `stmt` matches many rows (EXISTS_THRESHOLD or more); with it,
        reverse expansions that match many children compile to a correlated EXISTS. `caller`: whose
        query it is; every table it reaches, the queried one and each expansion's, is restricted
        to the rows the caller may see (mn.ownership), so no condition, count or groupBy sees others'."""
        self.cat = catalog or load_catalog()
        self.probe = probe
        self.caller = caller
        self.unindexed = False  # wrap the queried table's own columns so no index serves them
        self.indexable = False  # the last where() has a top-level term an index could serve

    def expansions(self, inventory: str, api: ApiSpec | None = None) -> dict[str, dict]:
        """The expansions of an inventory (plus the API's own, at the root of a query)."""
        exp = {e["field"]: e for e in self.cat.inventories[inventory].expanded}
        if api is not None:
            exp.update({e["field"]: e for e in api.expanded})
        return exp

    def available_expansions(self, inventory: str, api: ApiSpec | None = None) -> list[str]:
        model = TARGETS[inventory].model
        return sorted(f for f, e in self.expansions(inventory, api).items()
                      if e["inventory"] in TARGETS and hasattr(model, e["foreignKey"]))

    def field_type(self, inventory: str, field: str) -> str | None:
        for n, t in self.cat.inventories[inventory].fields:
            if n == field:
                return t
        return None

    def column_fields(self, inventory: str) -> list[str]:
        """The inventory's fields stored as columns: those conditions, sortBy and groupBy take."""
        model = TARGETS[inventory].model
        return sorted(n for n, t in self.cat.inventories[inventory].fields if t != "list" and hasattr(model, n))

    def column(self, inventory: str, field: str, what: str) -> tuple[Any, str]:
        """The column of a plain field and its type, or a SYS.1007 error listing the valid ones."""
        ftype = self.field_type(inventory, field)
        model = TARGETS[inventory].model
        if ftype is None or ftype == "list" or not hasattr(model, field):
            raise invalid(f"'{field}' is not a {what} field of {inventory}; valid fields: "
                          f"{self.column_fields(inventory)}")
        return getattr(model, field), ftype

    @staticmethod
    def _compare(col: Any, op: str, value: Any, ftype: str) -> ColumnElement[bool]:
        if op in ("like", "not like") and ftype != "string":
            col = cast(col, String)
        match op:
            case "=":
                return col.is_(None) if value is None else col == value
            case "!=":
                return col.is_not(None) if value is None else col != value
            case ">":
                return col > value
            case ">=":
                return col >= value
            case "<":
                return col < value
            case "<=":
                return col <= value
            case "in":
                return col.in_(value)
            case "not in":
                return col.not_in(value)
            case "like":
                return col.like(value)
            case "not like":
                return col.not_like(value)
            case "is null":
                return col.is_(None)
        return col.is_not(None)

    def condition(self, inventory: str, name: str, op: str, value: Any, api: ApiSpec | None = None,
                  path: str | None = None) -> ColumnElement[bool]:
        """One condition on `inventory`; `path` is the full condition name, for error messages."""
        outer = path is None and self.unindexed
        path = path or name
        op = CLI_OPS.get(op, op).strip().lower()
        if op not in OPS:
            raise invalid(f"unknown query operator '{op}' in the condition on '{path}'; valid: {sorted(OPS)}")
        target = TARGETS.get(inventory)
        if target is None:
            raise invalid(f"{inventory} cannot be queried by this management node")
        model = target.model
        head, _, rest = name.partition(".")
        if head in TAG_FIELDS and not rest:
            if not hasattr(model, "uuid"):
                raise invalid(f"{inventory} has no uuid, so it carries no tags: '{path}' cannot be queried")
            self.indexable = self.indexable or path == name
            return self._tag_condition(model, TAG_FIELDS[head], op, value, head, outer)
        if rest:
            exps = self.expansions(inventory, api)
            exp = exps.get(head)
            if exp is None:
                raise invalid(f"'{head}' is not a field or expansion of {inventory} (in '{path}'); "
                              f"expansions: {self.available_expansions(inventory, api)}")
            sub_target = TARGETS.get(exp["inventory"])
            if sub_target is None or not hasattr(model, exp["foreignKey"]):
                raise invalid(f"the expansion '{head}' ({exp['inventory']}) of {inventory} in '{path}' is "
                              f"not available on this management node; available expansions: "
                              f"{self.available_expansions(inventory, api)}")
            inner = [self.condition(exp["inventory"], rest, op, value, path=path),
                     *self._base_where(sub_target)]
            key = getattr(sub_target.model, exp["expandedInventoryKey"])
            fk = getattr(model, exp["foreignKey"])
            sub_model = sub_target.model
            reverse = (exp["foreignKey"] == model.__mapper__.primary_key[0].key
                       and sub_model.__table__ is not model.__table__)
            if reverse and self.probe is not None and self.probe(select(literal(1)).select_from(sub_model)
                                                                 .where(*inner)):
                return exists(select(literal(1)).select_from(sub_model).where(key == fk, *inner)
                              .correlate(model))
            self.indexable = self.indexable or path == name
            return _unindexed(fk, outer).in_(select(key).where(*inner).correlate(None))
        ftype = self.field_type(inventory, head)
        if ftype is None or ftype == "list" or not hasattr(model, head):
            where = f" (in '{path}')" if path != head else ""
            raise invalid(f"'{head}' is not a queryable field of {inventory}{where}; valid fields: "
                          f"{self.column_fields(inventory)}; expansions: "
                          f"{self.available_expansions(inventory, api)}")
        self.indexable = self.indexable or path == name
        col = _unindexed(getattr(model, head), outer)
        return self._compare(col, op, self._values(path, ftype, op, value), ftype)

    def _tag_condition(self, model: type, tag_model: type, op: str, value: Any, head: str,
                       outer: bool = False) -> ColumnElement[bool]:
        tagged = select(tag_model.resourceUuid).correlate(None)
        uuid = _unindexed(model.uuid, outer)
        if op == "is null":
            return not_(uuid.in_(tagged))
        if op == "is not null":
            return uuid.in_(tagged)
        positive = NEGATIVE.get(op, op)
        vals = self._values(head, "string", positive, value)
        inside = uuid.in_(tagged.where(self._compare(tag_model.tag, positive, vals, "string")))
        return not_(inside) if op in NEGATIVE else inside

    @staticmethod
    def _values(field: str, ftype: str, op: str, value: Any) -> Any:
        if op in ("is null", "is not null"):
            return None
        if op in ("in", "not in"):
            if value is None:
                raise invalid(f"operator '{op}' on field '{field}' needs a list of values")
            items = value if isinstance(value, list) else str(value).split(",")
            return [typed_value(field, ftype, v) for v in items]
        if op in ("like", "not like"):
            if value is None or isinstance(value, list | dict):
                raise invalid(f"operator '{op}' on field '{field}' takes one pattern, got {value!r}")
            return value if isinstance(value, str) else str(value)
        if isinstance(value, list):
            raise invalid(f"operator '{op}' on field '{field}' takes one value, got a list")
        if value is None and op not in ("=", "!="):
            raise invalid(f"operator '{op}' on field '{field}' needs a value")
        return typed_value(field, ftype, value)

    def _base_where(self, t: Target) -> list[ColumnElement[bool]]:
        """The target's filter and the caller's visibility on its table."""
        own = ownership.visible(t.model, self.caller)
        return [getattr(t.model, k) == v for k, v in t.where] + (own or [])

    def where(self, inventory: str, conditions: list[dict], api: ApiSpec | None = None,
              ) -> list[ColumnElement[bool]]:
        clauses = self._base_where(TARGETS[inventory])
        self.indexable = False
        if not isinstance(conditions, list):
            raise invalid(f"'conditions' must be a list of {{name, op, value}}, got {conditions!r}")
        for c in conditions:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("op"), str):
                raise invalid(f"a query condition must be an object with name, op and value: {c!r}")
            clauses.append(self.condition(inventory, c["name"], c["op"], c.get("value"), api))
        return clauses

    def select(self, inventory: str, conditions: list[dict], api: ApiSpec | None = None,
               group_by: str | None = None) -> Select:
        """SELECT of the matching rows; with group_by, one row per distinct value (smallest key)."""
        model = TARGETS[inventory].model
        clauses = self.where(inventory, conditions, api)
        if group_by:
            col, _ = self.column(inventory, group_by, "groupBy")
            pk = model.__mapper__.primary_key[0]
            # Uncorrelated, from the model's own tables: with joined inheritance every column of
            # the subquery is also in the outer query, which would otherwise swallow its FROM.
            firsts = select(func.min(pk)).select_from(model).where(*clauses).group_by(col).correlate(None)
            return select(model).where(pk.in_(firsts))
        return select(model).where(and_(*clauses)) if clauses else select(model)


def _unindexed(col: Any, wrap: bool) -> Any:
    """`+col` (SQLite: the same value, but no index may serve the term) when `wrap`, else col."""
    if not wrap:
        return col
    expr = getattr(col, "expression", col)
    return UnaryExpression(expr, operator=custom_op("+"), type_=expr.type)


def _int_param(msg: dict[str, Any], name: str, default: int | None) -> int | None:
    v = msg.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise invalid(f"'{name}' must be an integer, got {v!r}") from None
    if isinstance(v, bool) or n < 0:
        raise invalid(f"'{name}' must be a non-negative integer, got {v!r}")
    return n


def _probe(s: Session, threshold: int | None = None) -> Callable[[Select], bool]:
    """Whether a statement matches `threshold` (EXISTS_THRESHOLD) rows or more; reads at most that many.

    Answers are remembered for the query (a statement is probed once however often it compiles)."""
    seen: dict[tuple[str, tuple], bool] = {}

    def many(stmt: Select) -> bool:
        bound = threshold or EXISTS_THRESHOLD
        compiled = stmt.compile(s.get_bind())
        key = (str(compiled), tuple(sorted((k, repr(v)) for k, v in compiled.params.items())))
        if key not in seen:
            n = s.scalar(select(func.count()).select_from(stmt.limit(bound).subquery()))
            seen[key] = int(n or 0) >= bound
        return seen[key]

    return many


def _sort_key(col: Any, direction: str, dialect: str) -> Any:
    """ORDER BY term: NULLs first ascending and last descending, alike on every database.

    SQLite and MySQL/MariaDB already order NULLs so; PostgreSQL is told. A NOT NULL column gets a
    plain term everywhere, so an index on it serves the order (and deep pages) directly.
    """
    nullable = getattr(getattr(col, "expression", col), "nullable", True)
    if direction == "asc":
        return col.asc().nulls_first() if nullable and dialect == "postgresql" else col.asc()
    return col.desc().nulls_last() if nullable and dialect == "postgresql" else col.desc()


def run_query(s: Session, api: ApiSpec, msg: dict[str, Any], caller: Caller = SYSTEM) -> dict[str, Any]:
    """Execute a Query API message as `caller`; returns the reply fields (inventories and/or total),
    of the rows the caller may see only."""
    inventory = api.inventory
    if inventory is None or inventory not in TARGETS:
        raise invalid(f"{api.name} is not available on this management node")
    dialect = s.get_bind().dialect.name
    conditions, group_by = msg.get("conditions") or [], msg.get("groupBy") or None
    qc = QueryCompiler(caller=caller)
    model = TARGETS[inventory].model
    limit = _int_param(msg, "limit", DEFAULT_LIMIT)
    start = _int_param(msg, "start", 0)
    fields = msg.get("fields") or None
    if fields:
        known = [n for n, _ in qc.cat.inventories[inventory].fields]
        bad = [f for f in fields if f not in known]
        if bad:
            raise invalid(f"unknown fields {bad} of {inventory}; valid: {sorted(known)}")
    reply: dict[str, Any] = {}
    if msg.get("count") or msg.get("replyWithCount"):
        # Counting visits every match: IN subqueries (no EXISTS probes), no ORDER BY.
        if group_by:
            groups = qc.select(inventory, conditions, api, group_by).subquery()
            counted = select(func.count()).select_from(groups)
        else:
            counted = select(func.count()).select_from(model).where(*qc.where(inventory, conditions, api))
        total = s.scalar(counted)
        reply["total"] = int(total or 0)
        if msg.get("count"):
            return reply  # ZStack answers a count with the total alone
    probing = QueryCompiler(qc.cat, _probe(s), caller) if dialect == "sqlite" else qc
    q = probing.select(inventory, conditions, api, group_by)
    if (probing.probe is not None and probing.indexable and not group_by and (limit or 0) + start <= WALK_PAGE
            and _probe(s, WALK_MATCHES)(q.with_only_columns(literal(1), maintain_column_froms=True))):
        # SQLite, a small page of a condition matching many rows: walk the index of the page's
        # order and filter (a few rows per result), rather than gather every match and sort it.
        probing.unindexed = True
        q = probing.select(inventory, conditions, api)
    sort_by = msg.get("sortBy")
    pk = model.__mapper__.primary_key[0]
    order: list[Any] = [pk]
    if sort_by:
        col, _ = qc.column(inventory, sort_by, "sortBy")
        direction = str(msg.get("sortDirection") or "asc").lower()
        if direction not in ("asc", "desc"):
            raise invalid(f"sortDirection must be asc or desc, got {direction!r}")
        # Ties by primary key, in the sort's direction: an index on (field, uuid) serves the order.
        order = [_sort_key(col, direction, dialect), pk.desc() if direction == "desc" else pk]
    q = q.order_by(*order).limit(limit)
    if start:
        # A deep page: find its keys first (an index-only walk past `start` entries), then load
        # those rows alone; a derived table, since MySQL/MariaDB refuse LIMIT inside IN (...).
        # maintain_column_froms: a subclass's table (joined inheritance) stays for its sort column.
        keys = q.with_only_columns(pk, maintain_column_froms=True).offset(start).subquery()
        q = select(model).join(keys, pk == keys.c[pk.key]).order_by(*order)
    rows = s.scalars(q).all()
    reply["inventories"] = to_inventories(s, rows, fields)
    return reply
