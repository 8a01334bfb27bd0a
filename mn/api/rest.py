"""ZStack's REST transport under /zstack/v1/, with routes derived from the catalogue.

- Session: `Authorization: OAuth <session uuid>`.
- POST bodies carry {"params": {...}, "systemTags": [...], "userTags": [...]}; PUT actions carry
  {"<apiName with lower-case first letter>": {...}}; GET and DELETE take the query string.
- Queries: repeated `q=<field><op><value>`, limit, start, count, replyWithCount, groupBy,
  sort=+f|-f (or sortBy and sortDirection), fields; GET .../<resources>/{uuid} adds uuid=<uuid>.
- Sync calls answer 200; async calls answer 202 {"location": ".../zstack/v1/api-jobs/<uuid>"},
  which answers 202 while running, 200 with the result, 503 with the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from mn.api.dispatch import CallResult, Dispatcher
from mn.api.rpc import wait_seconds
from mn.api.wire import read_json
from mn.catalogue.catalog import ApiSpec
from mn.catalogue.conditions import parse_condition
from mn.errors import INVALID_ARGUMENT, RESOURCE_NOT_FOUND, UNKNOWN_MESSAGE, ApiError

bp = Blueprint("rest", __name__)
PREFIX = "/zstack/v1"
_parse_condition = parse_condition  # the former home of the parser; kept for existing imports


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    regex: re.Pattern
    literals: int
    spec: ApiSpec


def _compile(template: str) -> tuple[re.Pattern, int]:
    parts = template.strip("/").split("/")
    rx, literals = [], 0
    for p in parts:
        m = re.fullmatch(r"\{(\w+)\}", p)
        if m:
            rx.append(f"(?P<{m.group(1)}>[^/]+)")
        else:
            rx.append(re.escape(p))
            literals += 1
    return re.compile("^/" + "/".join(rx) + "$"), literals


def build_routes(dispatcher: Dispatcher) -> list[Route]:
    """Every catalogue API's routes, so an API this MN does not serve answers 501 (SYS.1014) at its
    own path rather than matching another's; the most literal template first, then the served ones."""
    routes = []
    served = {s.name for s in dispatcher.implemented()}
    for spec in dispatcher.catalog.apis.values():
        if spec.rest is None:
            continue
        for t in (spec.rest.path, *spec.rest.optionalPaths):
            if not t or t == "null":
                continue
            rx, lit = _compile(t)
            routes.append(Route(spec.rest.method, t, rx, lit, spec))
    routes.sort(key=lambda r: (-r.literals, r.spec.name not in served, r.template))
    return routes


def _error(err: ApiError, status: int):
    return jsonify({"success": False, "error": err.to_dict()}), status


def _query_params() -> dict[str, Any]:
    args = request.args
    out: dict[str, Any] = {"conditions": [parse_condition(q) for q in args.getlist("q")]}
    for k in ("limit", "start", "count", "replyWithCount", "groupBy", "filterName", "sortBy", "sortDirection"):
        if k in args:
            out[k] = args[k]
    if "sort" in args:
        s = args["sort"]
        out["sortDirection"] = "desc" if s.startswith("-") else "asc"
        out["sortBy"] = s.lstrip("+-")
    if "fields" in args:
        out["fields"] = [f for v in args.getlist("fields") for f in v.split(",") if f]
    return out


def _arg_params(spec: ApiSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in request.args:
        vals = request.args.getlist(k)
        p = spec.param_map.get(k)
        if p is not None and p.type == "list":
            out[k] = [x for v in vals for x in v.split(",") if x]
        elif k in ("systemTags", "userTags"):
            out[k] = vals
        else:
            out[k] = vals[-1]
    return out


def _body() -> dict[str, Any]:
    body = read_json(request.get_data(), request.content_type)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(INVALID_ARGUMENT, "the request body must be a JSON object", http_status=400)
    return body


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The body's `key` member (absent or null: {}); SYS.1007 unless it is a JSON object."""
    v = body.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ApiError(INVALID_ARGUMENT, f"'{key}' of the request body must be a JSON object, got {type(v).__name__}",
                       http_status=400)
    return dict(v)


def _session() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("OAuth "):
        return auth[6:].strip()
    return None


def shape(spec: ApiSpec | None, reply: dict[str, Any], dispatcher: Dispatcher) -> dict[str, Any]:
    """The REST body of a successful reply, per the response's restResponse mapping."""
    fields = {k: v for k, v in reply.items() if k not in ("success", "error")}
    if spec is None:
        return fields
    if spec.kind == "query":
        return fields
    r = dispatcher.catalog.responses.get(spec.response or "")
    if r is None:
        return fields
    if r.allTo:
        return {r.allTo: fields.get(r.allTo)}
    if r.fieldsTo:
        if r.fieldsTo == ("all",):
            return fields
        out = {}
        for m in r.fieldsTo:
            dst, _, src = m.partition("=")
            out[dst] = fields.get(src or dst)
        return out
    return {}


def _location(uuid: str) -> str:
    return f"{request.host_url.rstrip('/')}{PREFIX}/api-jobs/{uuid}"


def respond(res: CallResult, dispatcher: Dispatcher):
    if not res.done:
        return jsonify({"location": _location(res.uuid)}), 202
    reply = res.reply or {}
    if not reply.get("success"):
        err = ApiError.from_dict(reply.get("error") or {})
        return _error(err, res.http_status or 503)
    return jsonify(shape(res.spec, reply, dispatcher)), 200


def _match(method: str, path: str, routes: list[Route]) -> list[tuple[Route, dict[str, str]]]:
    found = []
    for r in routes:
        if r.method != method:
            continue
        m = r.regex.match(path)
        if m:
            found.append((r, m.groupdict()))
    return found


@bp.route(f"{PREFIX}/api-jobs/<uuid>", methods=["GET"])
@bp.route(f"{PREFIX}/api-jobs/<uuid>/", methods=["GET"])
def api_job(uuid: str):
    d: Dispatcher = current_app.extensions["zstack.dispatcher"]
    res = d.result(uuid, wait_seconds())
    if res is None:
        return _error(ApiError(RESOURCE_NOT_FOUND, f"no API job with uuid {uuid}"), 404)
    return respond(res, d)


@bp.route(f"{PREFIX}/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
def rest_call(path: str):
    d: Dispatcher = current_app.extensions["zstack.dispatcher"]
    routes: list[Route] = current_app.extensions["zstack.routes"]
    method = request.method
    matches = _match(method, "/" + path.strip("/"), routes)
    if not matches:
        return _error(ApiError(UNKNOWN_MESSAGE, f"no API at {method} {PREFIX}/{path}"), 404)
    try:
        body = _body() if method in ("POST", "PUT") else {}
        route, pathvars = matches[0]
        if method == "PUT":
            acting = [(r, pv) for r, pv in matches if r.spec.action_key in body]
            if not acting:
                keys = sorted({r.spec.action_key for r, _ in matches})
                raise ApiError(INVALID_ARGUMENT, f"the body of PUT {PREFIX}/{path} must hold one of the "
                                                 f"actions {keys}", http_status=400)
            route, pathvars = acting[0]
        spec = route.spec
        lenient = False
        if method in ("GET", "DELETE"):
            params = _query_params() if spec.kind == "query" else _arg_params(spec)
            lenient = True
        elif method == "PUT":
            params = _object(body, spec.action_key)
        else:
            key = spec.rest.parameterName or "params" if spec.rest else "params"
            params = _object(body, key)
        for k in ("systemTags", "userTags"):
            if k in body:
                params[k] = body[k]
        if spec.kind == "query":
            params["conditions"] = [*params.get("conditions", []),
                                    *({"name": k, "op": "=", "value": v} for k, v in pathvars.items())]
        else:
            params.update(pathvars)
    except ApiError as err:
        return _error(err, err.http_status or 400)
    return respond(d.call(spec.name, params, _session(), lenient=lenient), d)
