"""Issue 13, findings 7 and 8: every malformed request answers ZStack's error shape with a 4xx
(never an HTML page, never a Python exception's text), and every route takes a trailing slash."""

from __future__ import annotations

import hashlib
import json

import pytest
import urllib3

from mn.client import ZStackClient
from mn.models import Zone

HTTP = urllib3.PoolManager(retries=False)
CREATE_ZONE = "org.zstack.header.zone.APICreateZoneMsg"
LOGIN = "org.zstack.header.identity.APILogInByAccountMsg"
PW = hashlib.sha512(b"password").hexdigest()


def _send(mn, method: str, path: str, body: bytes | str | None = None, session: str | None = None,
          content_type: str | None = "application/json") -> tuple[int, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    if session:
        headers["Authorization"] = f"OAuth {session}"
    r = HTTP.request(method, mn.url + path, body=body, headers=headers, timeout=30)
    assert r.headers.get("Content-Type", "").startswith("application/json"), (r.status, r.data[:200])
    return r.status, json.loads(r.data)


def _error(path: str, body: dict) -> dict:
    """ZStack's error of a REST reply, or of an RPC reply's result."""
    if path.startswith("/zstack/api"):
        (_, reply), = json.loads(body["result"]).items()
        body = reply
    assert body["success"] is False
    err = body["error"]
    assert set(err) >= {"code", "description", "details"}
    for marker in ("Traceback", "Error:", "<html", "codec can't"):
        assert marker not in err["details"], err["details"]
    return err


def _rpc(params: dict, session: str | None = None) -> str:
    if session:
        params = {**params, "session": {"uuid": session}}
    return json.dumps({CREATE_ZONE: params})


DEEP = '{"params":' + '{"a":' * 1000 + "1" + "}" * 1001
BAD = [
    # (method, path, raw body, content type, status, code, words of the details)
    ("POST", "/zstack/v1/zones", '{"params": "abc"}', "application/json", 400, "SYS.1007", "'params'"),
    ("POST", "/zstack/v1/zones", '{"params": [1, 2]}', "application/json", 400, "SYS.1007", "'params'"),
    ("PUT", "/zstack/v1/zones/" + "0" * 32 + "/actions", '{"updateZone": "x"}', "application/json", 400,
     "SYS.1007", "'updateZone'"),
    ("POST", "/zstack/v1/zones", DEEP, "application/json", 400, "SYS.1007", "nested"),
    ("POST", "/zstack/v1/zones", "[" * 1000 + "]" * 1000, "application/json", 400, "SYS.1007", "nested"),
    ("POST", "/zstack/api", '{"x":' * 1000 + "1" + "}" * 1000, "application/json", 400, "SYS.1007", "nested"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": "a\\ud800b"}}', "application/json", 400, "SYS.1007",
     "params.name"),
    ("POST", "/zstack/v1/zones", b'{"params": {"name": "\xff\xfe"}}', "application/json", 400, "SYS.1007", "UTF-8"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": NaN}}', "application/json", 400, "SYS.1007", "NaN"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": "z"}}', "text/plain", 415, "SYS.1007", "application/json"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": "z"}}', "multipart/form-data", 415, "SYS.1007", "json"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": "z", "bogus": 1}}', "application/json", 400, "SYS.1007",
     "unknown parameter 'bogus'"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": 5}}', "application/json", 400, "SYS.1007", "'name'"),
    ("POST", "/zstack/v1/zones", '{"params": {"name": "z"}, "systemTags": "x"}', "application/json", 400,
     "SYS.1007", "systemTags"),
    ("PATCH", "/zstack/v1/zones", "{}", "application/json", 405, "SYS.1008", "method"),
    ("GET", "/zstack/nothing-here", None, None, 404, "SYS.1008", "no API"),
    ("POST", "/zstack/api", "[1]", "application/json", 400, "SYS.1007", "one object"),
    ("POST", "/zstack/api", '"abc"', "application/json", 400, "SYS.1007", "one object"),
    ("POST", "/zstack/api", json.dumps({CREATE_ZONE: "abc"}), "application/json", 400, "SYS.1007", "JSON object"),
    ("POST", "/zstack/api", '{"no.such.Msg": {}}', "application/json", 404, "SYS.1008", "no API"),
    ("PUT", "/zstack/api", "{}", "application/json", 405, "SYS.1008", "method"),
]


@pytest.mark.parametrize(("method", "path", "body", "ctype", "status", "code", "words"), BAD,
                         ids=[f"{m} {p[:24]} {str(b)[:28]}" for m, p, b, *_ in BAD])
def test_malformed_request_answers_zstack_error(mn, api, method, path, body, ctype, status, code, words):
    got, reply = _send(mn, method, path, body, api.session, ctype)
    err = _error(path, reply)
    assert (got, err["code"]) == (status, code), err
    assert words in err["details"], err


def test_rpc_refusals_are_4xx_with_the_error_in_the_result(mn, api):
    """Unknown parameters, wrong types and a lone surrogate over RPC: a 4xx, before any job ran."""
    for params, words in [({"name": "z", "bogus": 1}, "unknown parameter 'bogus'"),
                          ({"name": ["z"]}, "'name'"),
                          ({"name": "a\ud800"}, "not valid Unicode")]:
        status, reply = _send(mn, "POST", "/zstack/api", _rpc(params, api.session))
        err = _error("/zstack/api", reply)
        assert status == 400 and err["code"] == "SYS.1007" and words in err["details"], err
    status, reply = _send(mn, "POST", "/zstack/api", _rpc({"name": "z"}, "0" * 32))
    assert status == 401 and _error("/zstack/api", reply)["code"] == "ID.1001"


def test_lone_surrogates_never_reach_the_database(mn, api):
    names = ["s\ud800x", "\udfff", "ok\ud83d"]
    for n in names:
        status, reply = _send(mn, "POST", "/zstack/v1/zones", json.dumps({"params": {"name": n}}), api.session)
        assert status == 400 and "not valid Unicode" in _error("/zstack/v1", reply)["details"]
        status, reply = _send(mn, "POST", "/zstack/api", _rpc({"name": n, "description": "d"}, api.session))
        assert status == 400
    status, reply = _send(mn, "POST", "/zstack/v1/zones",
                          json.dumps({"params": {"name": "z"}, "userTags": ["t\udc00"]}), api.session)
    assert status == 400 and "userTags" in _error("/zstack/v1", reply)["details"]
    from sqlalchemy import select

    with mn.services.db.ro() as s:
        stored = [z for z in s.scalars(select(Zone.name)) if z.startswith(("s", "ok")) or z == "\udfff"]
    assert not [z for z in stored if "\ud800" in z or "\udfff" in z or "\ud83d" in z]


def test_body_size_limit(mn, api):
    limit = mn.services.config.api_max_body
    big = b'{"params": {"name": "' + b"a" * limit + b'"}}'
    status, reply = _send(mn, "POST", "/zstack/v1/zones", big, api.session)
    err = _error("/zstack/v1", reply)
    assert status == 413 and err["code"] == "SYS.1007" and str(limit) in err["details"]
    status, reply = _send(mn, "POST", "/zstack/api", big)
    assert status == 413 and _error("/zstack/api", reply)["code"] == "SYS.1007"
    # Beyond the HTTP server's own former limit (64 MiB): still ZStack's JSON, not plain text.
    status, reply = _send(mn, "POST", "/zstack/v1/zones", b"x" * (65 << 20), api.session)
    assert status == 413 and _error("/zstack/v1", reply)["code"] == "SYS.1007"


def test_queries_of_a_subclass_inventory_never_fail(api):
    """Found by the schemathesis run: an SFTP backup storage (joined inheritance) sorted by its
    own column on a deep page, and grouped with a condition, answered 503 SYS.1000."""
    for fields in ({"sort": "+sshPort", "start": "5"}, {"groupBy": "type", "q": "uuid=abc"},
                   {"groupBy": "type", "sort": "-status", "limit": "302"}):
        status, body = api.rest("GET", "/backup-storage/sftp", fields=fields)
        assert status == 200 and body == {"inventories": []}, (fields, body)
    status, body = api.rest("GET", "/backup-storage/sftp/abc", fields={"groupBy": "type"})
    assert status == 200 and body == {"inventories": []}


def test_internal_error_details_hold_no_exception_text():
    from mn.errors import wrap

    err = wrap(KeyError("SELECT secret FROM table"))
    assert err.code == "SYS.1000" and "secret" not in err.details and "KeyError" in err.details


# ---- finding 8: a trailing slash on every route --------------------------------------------------

def test_login_by_account_at_zstack_api_with_trailing_slash(mn):
    """ZStack's own clients POST to /zstack/api/: served directly (200), no redirect."""
    r = HTTP.request("POST", mn.url + "/zstack/api/", body=json.dumps({LOGIN: {"accountName": "admin",
                                                                             "password": PW}}),
                     headers={"Content-Type": "application/json"}, redirect=False, timeout=30)
    assert r.status == 200, r.data[:300]
    reply = json.loads(r.data)
    (cls, result), = json.loads(reply["result"]).items()
    assert result["success"] and result["inventory"]["uuid"]
    session = result["inventory"]["uuid"]
    r = HTTP.request("POST", mn.url + "/zstack/api/", body=_rpc({"name": "slash-rpc"}, session),
                     headers={"Content-Type": "application/json"}, redirect=False, timeout=30)
    assert r.status == 200
    job = json.loads(r.data)
    r = HTTP.request("GET", f"{mn.url}/zstack/api/result/{job['uuid']}/", fields={"wait": "20"},
                     redirect=False, timeout=30)
    assert r.status == 200 and json.loads(r.data)["state"] == "Done"


def test_rest_get_and_post_with_trailing_slash(mn, api):
    c = ZStackClient(mn.url, api.session)
    h = {"Authorization": f"OAuth {api.session}", "Content-Type": "application/json"}
    r = HTTP.request("POST", mn.url + "/zstack/v1/zones/", body=json.dumps({"params": {"name": "slash-rest"}}),
                     headers=h, redirect=False, timeout=30)
    assert r.status == 202, r.data[:300]
    location = json.loads(r.data)["location"]
    r = HTTP.request("GET", location + "/", fields={"wait": "20"}, headers=h, redirect=False, timeout=30)
    assert r.status == 200 and json.loads(r.data)["inventory"]["name"] == "slash-rest"
    uuid = json.loads(r.data)["inventory"]["uuid"]
    r = HTTP.request("GET", f"{mn.url}/zstack/v1/zones/{uuid}/", headers=h, redirect=False, timeout=30)
    assert r.status == 200 and [z["uuid"] for z in json.loads(r.data)["inventories"]] == [uuid]
    r = HTTP.request("GET", mn.url + "/zstack/v1/openapi.json/", redirect=False, timeout=30)
    assert r.status == 200 and "paths" in json.loads(r.data)
    assert c.query("QueryZone", f"uuid={uuid}")[0]["name"] == "slash-rest"
