"""Property: the SQL the query compiler builds answers exactly what a naive Python filter answers.

Random condition sets over VmInstance — plain fields of every type and one level of expansion
(host, allVolumes, vmNics), every operator, values drawn from the seeded rows and at random — run
through run_query on the seeded SQLite database and through `naive()` over the same rows loaded
into Python. SQL's three-valued logic is modelled: a comparison with NULL is never true (so `!=`
and `not in` skip NULLs), SQLite's LIKE is case-insensitive for ASCII. Deterministic in CI:
derandomized, 200 examples.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import mn.query
from mn.catalogue.catalog import load_catalog
from mn.db.engine import Database
from mn.db.migrate import upgrade
from mn.models import Host, VmInstance, VmNic, Volume
from mn.query import run_query
from tests.unit.test_query_compiler import seed_datacentre

FIELDS: dict[str, str] = {  # VmInstance fields and their types
    "name": "string", "description": "string", "state": "string", "hostUuid": "string",
    "cpuNum": "int", "memorySize": "long", "createDate": "timestamp",
}
EXPANDED: dict[str, dict[str, str]] = {
    "host": {"name": "string", "status": "string", "cpuNum": "int"},
    "allVolumes": {"size": "long", "type": "string", "deviceId": "int"},
    "vmNics": {"ip": "string", "deviceId": "int"},
}
OPS = ["=", "!=", ">", ">=", "<", "<=", "in", "not in", "like", "not like", "is null", "is not null"]
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Database, list[dict[str, Any]]]:
    """The seeded database and each VM as a dict with its host, volumes and NICs."""
    url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}"
    upgrade(url)
    db = Database(url)
    seed_datacentre(db)
    with db.ro() as s:
        hosts = {h.uuid: h for h in s.scalars(select(Host))}
        vms = []
        for vm in s.scalars(select(VmInstance)):
            row = {f: getattr(vm, f) for f in FIELDS}
            row["uuid"] = vm.uuid
            host = hosts.get(vm.hostUuid)
            row["host"] = [] if host is None else [{f: getattr(host, f) for f in EXPANDED["host"]}]
            row["allVolumes"] = [{f: getattr(v, f) for f in EXPANDED["allVolumes"]}
                                 for v in s.scalars(select(Volume).where(Volume.vmInstanceUuid == vm.uuid))]
            row["vmNics"] = [{f: getattr(n, f) for f in EXPANDED["vmNics"]}
                             for n in s.scalars(select(VmNic).where(VmNic.vmInstanceUuid == vm.uuid))]
            vms.append(row)
    yield db, vms
    db.dispose()


# ---- the naive evaluator -------------------------------------------------------------------------

def _like(pattern: str) -> re.Pattern:
    out = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{out}$", re.IGNORECASE | re.DOTALL)


def _sql_text(v: Any) -> str:
    return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, dt.datetime) else str(v)


def _typed(ftype: str, raw: Any) -> Any:
    if ftype in ("int", "long"):
        return int(raw)
    if ftype == "timestamp":
        return dt.datetime.strptime(raw, "%Y-%m-%d %H:%M:%S")
    return raw


def matches(v: Any, op: str, raw: Any, ftype: str) -> bool:
    """One comparison with SQL's NULL semantics."""
    if op == "is null" or (op == "=" and raw is None):
        return v is None
    if op == "is not null" or (op == "!=" and raw is None):
        return v is not None
    if v is None:
        return False
    if op in ("like", "not like"):
        hit = bool(_like(raw).match(_sql_text(v)))
        return hit if op == "like" else not hit
    if op in ("in", "not in"):
        hit = v in [_typed(ftype, x) for x in raw.split(",")]
        return hit if op == "in" else not hit
    x = _typed(ftype, raw)
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    }
    return compare[op](v, x)


def naive(vms: list[dict[str, Any]], conditions: list[dict[str, Any]]) -> set[str]:
    def ok(vm: dict[str, Any], c: dict[str, Any]) -> bool:
        head, _, rest = c["name"].partition(".")
        if rest:  # some child matches, as `fk IN (SELECT key FROM child WHERE ...)`
            return any(matches(ch[rest], c["op"], c["value"], EXPANDED[head][rest]) for ch in vm[head])
        return matches(vm[head], c["op"], c["value"], FIELDS[head])
    return {vm["uuid"] for vm in vms if all(ok(vm, c) for c in conditions)}


# ---- strategies ----------------------------------------------------------------------------------

SEEN: dict[str, list[Any]] = {}  # field path → values present in the seeded rows


def _seen(vms: list[dict[str, Any]]) -> dict[str, list[Any]]:
    if not SEEN:
        for f in FIELDS:
            SEEN[f] = [vm[f] for vm in vms if vm[f] is not None]
        for head, fields in EXPANDED.items():
            for f in fields:
                SEEN[f"{head}.{f}"] = [ch[f] for vm in vms for ch in vm[head] if ch[f] is not None]
    return SEEN


def _as_text(v: Any) -> str:
    return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, dt.datetime) else str(v)


def scalar(path: str, ftype: str, seen: dict[str, list[Any]]) -> st.SearchStrategy[str]:
    if ftype in ("int", "long"):
        rnd = st.integers(min_value=-5, max_value=1 << 42)
    elif ftype == "timestamp":
        rnd = st.datetimes(min_value=dt.datetime(2025, 12, 1), max_value=dt.datetime(2026, 5, 1)
                           ).map(lambda d: d.replace(microsecond=0))
    else:
        rnd = st.text(alphabet="abcdeRSvm-0123456789.:", min_size=0, max_size=8)
    pool = seen.get(path) or []
    return (st.sampled_from(pool) | rnd if pool else rnd).map(_as_text)


def pattern(path: str, seen: dict[str, list[Any]]) -> st.SearchStrategy[str]:
    pool = [_as_text(v) for v in seen.get(path) or []] or ["x"]
    def mangle(draw_src: tuple[str, int, int, str]) -> str:
        s, i, j, wild = draw_src
        i, j = sorted((i % (len(s) + 1), j % (len(s) + 1)))
        return s[:i] + wild + s[j:]
    return st.tuples(st.sampled_from(pool), st.integers(0, 40), st.integers(0, 40),
                     st.sampled_from(["%", "_", "", "%%", "_%"])).map(mangle)


@st.composite
def condition(draw: st.DrawFn, seen: dict[str, list[Any]]) -> dict[str, Any]:
    paths = [(f, t) for f, t in FIELDS.items()] + [(f"{h}.{f}", t) for h, fs in EXPANDED.items()
                                                   for f, t in fs.items()]
    path, ftype = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(OPS))
    if ftype == "timestamp" and op in ("like", "not like"):
        op = "="
    if op in ("is null", "is not null"):
        value = None
    elif op in ("in", "not in"):
        value = ",".join(draw(st.lists(scalar(path, ftype, seen), min_size=1, max_size=4)))
        if ftype == "string" and "" in value.split(","):
            value = value.replace(",,", ",x,").strip(",") or "x"
    elif op in ("like", "not like"):
        value = draw(pattern(path, seen))
    elif op in ("=", "!=") and draw(st.booleans()) and draw(st.booleans()):
        value = None  # `=null` / `!=null`
    else:
        value = draw(scalar(path, ftype, seen))
    return {"name": path, "op": op, "value": value}


def _query(db: Database, msg: dict[str, Any]) -> list[dict[str, Any]]:
    with db.ro() as s:
        return run_query(s, load_catalog().api("QueryVmInstance"), msg)["inventories"]


@PROPERTY
@given(data=st.data())
def test_sql_answers_what_the_naive_filter_answers(world, data) -> None:
    db, vms = world
    conds = data.draw(st.lists(condition(_seen(vms)), min_size=1, max_size=3), label="conditions")
    got = {v["uuid"] for v in _query(db, {"conditions": conds, "fields": ["uuid"]})}
    assert got == naive(vms, conds)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_exists_form_answers_what_the_naive_filter_answers(world, data) -> None:
    """The same property with every reverse expansion compiled to a correlated EXISTS (the form
    SQLite gets when children match EXISTS_THRESHOLD rows or more)."""
    db, vms = world
    conds = data.draw(st.lists(condition(_seen(vms)), min_size=1, max_size=3), label="conditions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mn.query, "EXISTS_THRESHOLD", 1)
        got = {v["uuid"] for v in _query(db, {"conditions": conds, "fields": ["uuid"]})}
    assert got == naive(vms, conds)


@PROPERTY
@given(data=st.data())
def test_sorted_pages_are_the_naive_order(world, data) -> None:
    db, vms = world
    field = data.draw(st.sampled_from(sorted(FIELDS)), label="sortBy")
    desc = data.draw(st.booleans(), label="desc")
    start, limit = data.draw(st.integers(0, 7)), data.draw(st.integers(0, 7))
    by_uuid = sorted(vms, key=lambda v: v["uuid"], reverse=desc)  # ties by uuid, in the sort's direction
    with_values = sorted((v for v in by_uuid if v[field] is not None), key=lambda v: v[field], reverse=desc)
    nulls = [v for v in by_uuid if v[field] is None]
    expected = (with_values + nulls) if desc else (nulls + with_values)
    got = _query(db, {"conditions": [], "fields": ["uuid"], "sortBy": field,
                      "sortDirection": "desc" if desc else "asc", "start": start, "limit": limit})
    assert [v["uuid"] for v in got] == [v["uuid"] for v in expected][start:start + limit]
