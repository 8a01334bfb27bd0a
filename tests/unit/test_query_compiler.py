from __future__ import annotations

import pytest
from sqlalchemy import select

from mn.api.catalog import load_catalog
from mn.api.rest import _parse_condition
from mn.errors import ApiError
from mn.models import SystemTag, Zone
from mn.query import QueryCompiler, run_query


@pytest.fixture
def zones(db):
    with db.tx() as s:
        for i in range(5):
            s.add(Zone(uuid=f"{i:032x}", name=f"zone-{i}", description="d" if i % 2 else None))
        s.add(SystemTag(resourceUuid=f"{1:032x}", resourceType="ZoneVO", tag="region::west", type="System"))
    return db


def q(db, *conds, **kw):
    api = load_catalog().api("QueryZone")
    msg = {"conditions": [_parse_condition(c) if isinstance(c, str) else c for c in conds], **kw}
    with db.ro() as s:
        return run_query(s, api, msg)


def names(reply):
    return sorted(z["name"] for z in reply["inventories"])


def test_operators(zones):
    assert names(q(zones, "name=zone-1")) == ["zone-1"]
    assert names(q(zones, "name!=zone-1")) == ["zone-0", "zone-2", "zone-3", "zone-4"]
    assert names(q(zones, "name?=zone-1,zone-3")) == ["zone-1", "zone-3"]
    assert names(q(zones, "name!?=zone-1,zone-3")) == ["zone-0", "zone-2", "zone-4"]
    assert names(q(zones, "name~=zone-%")) == [f"zone-{i}" for i in range(5)]
    assert names(q(zones, "name!~=%1")) == ["zone-0", "zone-2", "zone-3", "zone-4"]
    assert names(q(zones, "description=null")) == ["zone-0", "zone-2", "zone-4"]
    assert names(q(zones, "description!=null")) == ["zone-1", "zone-3"]


def test_tags_positive_and_negative(zones):
    assert names(q(zones, "__systemTag__=region::west")) == ["zone-1"]
    assert names(q(zones, "__systemTag__!=region::west")) == ["zone-0", "zone-2", "zone-3", "zone-4"]
    assert names(q(zones, "__systemTag__~=region::%")) == ["zone-1"]


def test_paging_sorting_count_fields(zones):
    r = q(zones, limit=2, start=1, sortBy="name", sortDirection="desc", replyWithCount=True)
    assert [z["name"] for z in r["inventories"]] == ["zone-3", "zone-2"]
    assert r["total"] == 5
    assert q(zones, count=True)["total"] == 5
    r = q(zones, "name=zone-1", fields=["name"])
    assert r["inventories"] == [{"name": "zone-1"}]


def test_unknown_field_and_bad_values_are_clear_errors(zones):
    with pytest.raises(ApiError, match="'nme' is not a queryable field of ZoneInventory; valid fields"):
        q(zones, "nme=x")
    with pytest.raises(ApiError, match="'bogus' is not a field or expansion"):
        q(zones, "bogus.name=x")
    with pytest.raises(ApiError, match="not a valid boolean"):
        q(zones, "isDefault=maybe")


def test_injection_is_inert(zones):
    evil = "zone-1' OR '1'='1"
    assert q(zones, {"name": "name", "op": "=", "value": evil})["inventories"] == []
    assert q(zones, {"name": "name", "op": "in", "value": ["x'); DROP TABLE zone; --"]})["inventories"] == []
    with pytest.raises(ApiError):
        q(zones, {"name": "name; DROP TABLE zone", "op": "=", "value": "x"})
    with pytest.raises(ApiError, match="unknown query operator"):
        q(zones, {"name": "name", "op": "= 1 OR 1=1 --", "value": "x"})
    with zones.ro() as s:
        assert len(s.scalars(select(Zone)).all()) == 5


def test_nested_expansions_compile_to_subqueries():
    api = load_catalog().api("QueryVmInstance")
    sql = str(QueryCompiler().select("VmInstanceInventory", [
        {"name": "vmNics.l3Network.l2Network.zone.name", "op": "=", "value": "z"}], api))
    assert sql.count("SELECT") == 5 and "IN (SELECT" in sql


def test_condition_parser():
    assert _parse_condition("cpuNum>=2") == {"name": "cpuNum", "op": ">=", "value": "2"}
    assert _parse_condition("name!=a=b") == {"name": "name", "op": "!=", "value": "a=b"}
    assert _parse_condition("state?=Running,Stopped") == {"name": "state", "op": "in", "value": "Running,Stopped"}
    assert _parse_condition("x is null") == {"name": "x", "op": "is null", "value": None}
    with pytest.raises(ApiError):
        _parse_condition("novalue")
