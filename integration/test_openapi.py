"""The MN serves its OpenAPI document at GET /zstack/v1/openapi.json, without a session."""

from __future__ import annotations

import json
import urllib.request

import pytest

from mn.api.openapi import offline_openapi


def _get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, json.loads(r.read())


def test_served_document_matches_build(mn):
    status, served = _get(f"{mn.url}/zstack/v1/openapi.json")
    assert status == 200
    assert served == json.loads(json.dumps(offline_openapi()))
    assert "/zstack/v1/zones" in served["paths"]
    status, again = _get(f"{mn.url}/zstack/v1/openapi.json")  # cached, same answer
    assert status == 200 and again == served


def test_fuzzed_queries_never_answer_5xx(mn, api):
    """A bounded schemathesis run over the GET query operations: no generated input makes a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    doc = offline_openapi()
    query_ids = sorted(op["operationId"] for item in doc["paths"].values() for m, op in item.items()
                       if m == "get" and op.get("x-zstack-kind") == "query")
    schema = schemathesis.openapi.from_dict(doc).include(operation_id=query_ids)
    failures: list[str] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(headers={"Authorization": f"OAuth {api.session}"}))
    def check(case) -> None:
        resp = case.call(base_url=mn.url)
        if resp.status_code >= 500:
            failures.append(f"{resp.status_code} {resp.request.url}: {resp.text[:300]}")

    check()
    assert not failures, "\n".join(failures[:10])
