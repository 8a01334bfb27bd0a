"""The OpenAPI document derived from the catalogue, and the API reference generated from it."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mn.api.dispatch import Dispatcher
from mn.api.openapi import build_openapi, offline_openapi
from mn.services import load_all

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return offline_openapi()


@pytest.fixture(scope="module")
def implemented() -> list:
    load_all()
    return Dispatcher(None, None).implemented()  # type: ignore[arg-type]


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_validates(doc):
    from openapi_spec_validator import validate

    validate(doc)
    assert doc["openapi"] == "3.0.3"


def test_every_implemented_api_appears_exactly_once(doc, implemented):
    names = {s.name for s in implemented}
    ops = _operations(doc)
    seen: Counter[str] = Counter()
    for _, _, op in ops:
        apis = op.get("x-zstack-apis", [])
        if len(apis) > 1:
            seen.update(apis)
        elif op["operationId"] in names:
            seen[op["operationId"]] += 1
    rest_names = {s.name for s in implemented if s.rest is not None}
    assert {n: c for n, c in seen.items() if c != 1} == {}
    assert set(seen) == rest_names
    listed = {n for _, _, op in ops for n in op.get("x-zstack-apis", [])}
    assert listed == rest_names


def test_operation_ids_unique_and_extensions(doc):
    ops = _operations(doc)
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    for _, _, op in ops:
        if "x-zstack-apis" in op:
            assert op["x-zstack-message"] and op["x-zstack-kind"] in ("sync", "async", "query", "mixed")


def test_every_ref_resolves(doc):
    refs = set(_refs(doc))
    assert refs
    for r in sorted(refs):
        assert r.startswith("#/components/"), r
        _, _, kind, name = r.split("/")
        assert name in doc["components"][kind], r


def test_shapes_of_known_apis(doc):
    paths = doc["paths"]
    create = paths["/zstack/v1/zones"]["post"]
    assert create["operationId"] == "CreateZone" and create["x-zstack-kind"] == "async"
    assert create["x-zstack-message"] == "org.zstack.header.zone.APICreateZoneMsg"
    assert "202" in create["responses"] and create["security"] == [{"OAuth": []}]
    body = doc["components"]["schemas"]["CreateZoneRequest"]
    assert body["properties"]["params"]["required"] == ["name"]
    assert body["properties"]["params"]["properties"]["name"]["maxLength"] == 255
    query = paths["/zstack/v1/zones"]["get"]
    assert query["operationId"] == "QueryZone"
    q = next(p for p in query["parameters"] if p.get("name") == "q")
    assert q["schema"]["items"]["pattern"].startswith("^(?:")
    reply = doc["components"]["schemas"]["QueryZoneReply"]["properties"]["inventories"]
    assert reply["items"] == {"$ref": "#/components/schemas/ZoneInventory"}
    actions = paths["/zstack/v1/zones/{uuid}/actions"]["put"]
    assert actions["x-zstack-apis"] == ["ChangeZoneState", "UpdateZone"]
    assert len(actions["requestBody"]["content"]["application/json"]["schema"]["anyOf"]) == 2
    login = paths["/zstack/v1/accounts/login"]["put"]
    assert "security" not in login and "401" in login["responses"]  # a wrong password
    assert doc["components"]["schemas"]["LogInByAccountRequest"]["required"] == ["logInByAccount"]
    for p in ("/zstack/api", "/zstack/api/result/{uuid}", "/zstack/v1/api-jobs/{uuid}"):
        assert p in paths


def test_deterministic(doc, implemented):
    again = build_openapi(Dispatcher(None, None))  # type: ignore[arg-type]
    assert json.dumps(again) == json.dumps(doc)


def test_docs_api_up_to_date(doc):
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "tools" / "gen_api_docs.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # its dataclasses look their module up
    spec.loader.exec_module(gen)
    stale = gen.stale(gen.render(doc), ROOT / "docs" / "api")
    assert not stale, f"docs/api/ is out of date ({', '.join(stale)}): run python tools/gen_api_docs.py"


def test_tight_enough_for_the_mn(doc):
    """What the MN refuses, the document refuses: unknown parameters, blank strings, fields and
    sort keys the inventory lacks; every operation documents 401 and the other 4xx; the replies
    of several APIs at one path are anyOf (they may look alike), never oneOf."""
    import re

    schemas = doc["components"]["schemas"]
    params = schemas["CreateZoneRequest"]["properties"]["params"]
    assert params["additionalProperties"] is False
    assert "pattern" not in params["properties"]["name"]  # the catalogue lets a zone's name be blank
    kvm = schemas["AddKVMHostRequest"]["properties"]["params"]["properties"]
    assert kvm["username"]["pattern"] == r"\S"  # AddKVMHost's handler refuses a blank one
    assert schemas["CreateZoneRequest"]["properties"]["params"]["properties"]["resourceUuid"]["pattern"] \
        == "^[0-9a-f]{32}$"
    query = {p.get("name"): p for p in doc["paths"]["/zstack/v1/zones"]["get"]["parameters"]}
    assert "+name" in query["sort"]["schema"]["enum"] and "+nope" not in query["sort"]["schema"]["enum"]
    assert "uuid" in query["fields"]["schema"]["items"]["enum"]
    pattern = re.compile(query["q"]["schema"]["items"]["pattern"])
    assert pattern.search("name=z1") and pattern.search("uuid?=a,b") and not pattern.search("nope=1")
    assert not pattern.search("name") and pattern.search("zone.name=z") is None  # zones have no zone
    text = json.dumps(doc)
    assert '"oneOf"' not in text
    for _, _, op in _operations(doc):
        assert "4XX" in op["responses"], op["operationId"]
        if "x-zstack-apis" in op:
            assert "401" in op["responses"], op["operationId"]
