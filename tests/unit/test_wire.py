"""mn.api.wire: the JSON reader both transports share, and the HTTP layer's errors as ZStack's."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from mn.api.wire import MAX_DEPTH, read_json
from mn.app import mount_error_handlers
from mn.catalogue.params import has_lone_surrogate
from mn.errors import ApiError


def _refused(raw: bytes | str, ctype: str | None = "application/json") -> ApiError:
    with pytest.raises(ApiError) as e:
        read_json(raw.encode() if isinstance(raw, str) else raw, ctype)
    assert e.value.code == "SYS.1007"
    return e.value


def test_reads_json_with_the_content_types_clients_send():
    for ctype in (None, "application/json", "application/json; charset=utf-8",
                  "application/x-www-form-urlencoded", "application/merge-patch+json"):
        assert read_json(b'{"a": [1, "\\u00e9", "\\ud83d\\ude00"]}', ctype) == {"a": [1, "é", "😀"]}
    assert read_json(b"", "text/plain") is None


def test_refuses_what_is_not_json():
    assert _refused('{"a": 1}', "text/plain").http_status == 415
    assert "UTF-8" in _refused(b'{"a": "\xff"}').details
    assert "NaN" in _refused('{"a": NaN}').details
    assert "Infinity" in _refused('[-Infinity]').details
    assert "not valid JSON" in _refused("{").details


def test_depth_is_bounded_without_recursion_errors():
    ok = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert read_json(ok.encode(), None) is not None
    for n in (MAX_DEPTH + 1, 900, 1000, 100_000):
        assert "nested deeper" in _refused("[" * n + "]" * n).details


def test_lone_surrogates_are_refused_by_path():
    assert "'params.name'" in _refused('{"params": {"name": "a\\ud800"}}').details
    assert "'params.tags[1]'" in _refused('{"params": {"tags": ["x", "\\udfff"]}}').details
    assert "key" in _refused('{"params": {"\\ud800": 1}}').details
    assert has_lone_surrogate("\ud800") and not has_lone_surrogate("😀") and not has_lone_surrogate("abc")


def test_http_layer_errors_are_zstack_json():
    app = Flask("t")
    mount_error_handlers(app, api_max_body=100)

    @app.get("/zstack/v1/boom")
    def boom():
        raise KeyError("secret-detail")

    @app.post("/zstack/v1/echo")
    def echo():
        from flask import request
        return {"n": len(request.get_data())}

    @app.get("/zstack/api/boom")
    def rpc_boom():
        raise RuntimeError("secret-detail")

    c = app.test_client()
    r = c.get("/zstack/v1/boom")
    assert r.status_code == 500 and r.is_json and "secret-detail" not in r.get_data(as_text=True)
    assert r.get_json()["error"]["code"] == "SYS.1000"
    r = c.get("/zstack/api/boom")
    assert r.status_code == 500 and "secret-detail" not in r.get_data(as_text=True)
    (_, reply), = json.loads(r.get_json()["result"]).items()
    assert reply["error"]["code"] == "SYS.1000"
    assert c.post("/zstack/v1/echo", data=b"x" * 100).status_code == 200
    r = c.post("/zstack/v1/echo", data=b"x" * 101)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "SYS.1007"
    r = c.delete("/zstack/v1/echo")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "SYS.1008"
    r = c.get("/nothing")
    assert r.status_code == 404 and r.is_json and r.get_json()["error"]["code"] == "SYS.1008"
