"""The OpenAPI 3.0.3 document of the APIs this MN serves, derived from the catalogue alone.

build_openapi(dispatcher) describes every API of Dispatcher.implemented() over REST (paths,
methods, typed parameters and bodies, shaped replies, async job locations, errors, the session
scheme) plus the RPC endpoint and the job endpoints. Nothing is written per API: names, message
classes, kinds, parameters, paths and reply mappings all come from mn/catalogue/catalog.json.

Invariants: the output is deterministic (paths, operations, schemas sorted), every `$ref` points
into `components`, and each implemented API is the operationId of exactly one operation or a
member of exactly one merged operation's `x-zstack-apis` (several actions sharing one PUT path).

3.0.3 rather than 3.1: the document only needs what 3.0 expresses, and 3.0 is what most
generators, Swagger UI builds and validators still support best.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from mn import __version__
from mn.catalogue.catalog import ApiSpec, Catalog, InventorySpec, ParamSpec, RestSpec

if TYPE_CHECKING:
    from mn.api.dispatch import Dispatcher

REST_PREFIX = "/zstack/v1"
DATE_FORMAT = "zstack-date"
DATE_NOTE = 'ZStack\'s date format, e.g. "Nov 23, 2026 8:28:38 PM"'
SESSION = "OAuth"
TAG_PARAMS = ("systemTags", "userTags")
QUERY_PARAMS = ("q", "limit", "start", "count", "replyWithCount", "sort", "fields", "groupBy", "filterName")
_VAR = re.compile(r"\{(\w+)\}")
NOT_BLANK = r"\S"
"""A string holding a non-space character (the MN refuses blank strings of most parameters)."""

_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "enum": {"type": "string"},
    "int": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "boolean": {"type": "boolean"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "timestamp": {"type": "string", "format": DATE_FORMAT, "description": DATE_NOTE},
    "map": {"type": "object", "additionalProperties": True},
    "object": {"type": "object"},
}


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def rest_paths(rest: RestSpec) -> list[str]:
    """The REST templates of an API: its path then its optional paths, literal "null" skipped."""
    out: list[str] = []
    for p in (rest.path, *rest.optionalPaths):
        if p and p != "null" and p.startswith("/") and p not in out:
            out.append(p)
    return out


def _coerce(t: str, v: Any) -> Any:
    if t in ("int", "long"):
        return int(v)
    if t in ("float", "double"):
        return float(v)
    if t == "boolean":
        return v if isinstance(v, bool) else str(v).lower() == "true"
    return str(v) if t in ("string", "enum", "timestamp") else v


HEX_UUID = "^[0-9a-f]{32}$"
SYSTEM_TAG_FORM = r"^[^:]*[^:\s][^:]*::.*\S"
"""key::value, both holding a non-space character (mn.services.tag.check_system_tag)."""
HANDLER_RULES: dict[tuple[str | None, str], dict[str, Any]] = {
    (None, "resourceUuid"): {"pattern": HEX_UUID},
    (None, "deleteMode"): {"enum": ["Permissive", "Enforcing"]},
    (None, "physicalInterface"): {"pattern": NOT_BLANK},
    (None, "username"): {"pattern": NOT_BLANK},
    ("CreateSystemTag", "tag"): {"pattern": SYSTEM_TAG_FORM},
    ("CreateUserTag", "tag"): {"pattern": NOT_BLANK},
    ("GetResourceAccount", "resourceUuids"): {"pattern": NOT_BLANK},
    ("GetFreeIp", "limit"): {"minimum": 0, "maximum": 10000},
    ("GetEipAttachableVmNics", "limit"): {"minimum": 0},
    ("GetEipAttachableVmNics", "start"): {"minimum": 0},
    ("CreateVip", "ipVersion"): {"enum": [4]},
    ("CreateL2NoVlanNetwork", "type"): {"enum": ["L2NoVlanNetwork"]},
    ("CreateL2VlanNetwork", "type"): {"enum": ["L2VlanNetwork"]},
    ("CreateDataVolume", "diskSize"): {"minimum": 1},
    ("CreateVmInstance", "cpuNum"): {"minimum": 1},
    ("CreateVmInstance", "memorySize"): {"minimum": 1},
    ("AddSimulatorHost", "cpuCapacity"): {"minimum": 1},
    ("AddSimulatorHost", "memoryCapacity"): {"minimum": 1},
    **{(api, p): {"minimum": 0} for api, names in (
        ("AddSimulatorPrimaryStorage", ("totalCapacity", "availableCapacity", "totalPhysicalCapacity",
                                        "availablePhysicalCapacity")),
        ("AddSimulatorBackupStorage", ("totalCapacity", "availableCapacity"))) for p in names},
}
"""Checks the APIs' handlers make that the catalogue's parameters do not state, as schema
keywords (by parameter name for every API, or for one API): the document promises no request
the MN refuses for a reason a schema can say."""


def _refined(api: str, p: ParamSpec, s: dict[str, Any]) -> dict[str, Any]:
    rule = HANDLER_RULES.get((api, p.name)) or HANDLER_RULES.get((None, p.name))
    if rule and p.type in ("string", "enum", "int", "long"):
        return {**s, **rule}
    if rule and p.type == "list" and "items" in s:
        return {**s, "items": {**s["items"], **rule}}
    return s


def param_schema(p: ParamSpec, api: str = "") -> dict[str, Any]:
    """The JSON schema of one parameter, with its validation as schema keywords or x-zstack-*."""
    return _refined(api, p, _param_schema(p))


def _param_schema(p: ParamSpec) -> dict[str, Any]:
    if p.type == "list":
        et = p.elementType or "string"
        s: dict[str, Any] = {"type": "array", "items": dict(_SCALARS.get(et, {}))}
        if p.nonempty:
            s["minItems"] = 1
    else:
        s = dict(_SCALARS.get(p.type, {}))
    if p.type in ("string", "enum"):
        if p.maxLength is not None:
            s["maxLength"] = p.maxLength
        if p.minLength is not None:
            s["minLength"] = p.minLength
        if not p.emptyString:
            s["x-zstack-not-blank"] = True
            s["pattern"] = NOT_BLANK
        if p.sensitive:
            s["format"] = "password"
    if p.validValues is not None and p.type != "boolean":
        try:
            s["enum"] = [_coerce(p.type, v) for v in p.validValues]
        except ValueError:
            s["enum"] = list(p.validValues)
    if p.numberRange is not None and p.type in ("int", "long"):
        s["minimum"], s["maximum"] = p.numberRange
    if p.default is not None:
        try:
            s["default"] = _coerce(p.type, p.default) if p.type != "list" else p.default
        except (TypeError, ValueError):
            s["x-zstack-default"] = p.default
    if p.resourceType:
        s["x-zstack-resource-type"] = p.resourceType
    return s


def _required(p: ParamSpec) -> bool:
    return p.required and p.default is None


def params_object(spec: ApiSpec, skip: set[str]) -> dict[str, Any]:
    props = {p.name: param_schema(p, spec.name) for p in spec.params if p.name not in skip}
    # Closed: the MN refuses a parameter the API does not declare (mn.catalogue.params.validate).
    obj: dict[str, Any] = {"type": "object", "properties": dict(sorted(props.items())), "additionalProperties": False}
    req = sorted(p.name for p in spec.params if p.name not in skip and _required(p))
    if req:
        obj["required"] = req
    return obj


def _tags_schema(system: bool = True) -> dict[str, Any]:
    """systemTags or userTags: strings, checked by the APIs that apply them (e.g. CreateVmInstance)."""
    desc = "key::value strings" if system else "strings"
    return {"type": "array", "items": {"type": "string"}, "description": desc}


def request_schema(spec: ApiSpec, template: str) -> dict[str, Any]:
    """The body of a POST or PUT call: {"params"|"<action key>": {...}, "systemTags", "userTags"}."""
    assert spec.rest is not None
    key = spec.action_key if spec.rest.method == "PUT" else (spec.rest.parameterName or "params")
    inner = params_object(spec, set(_VAR.findall(template)))
    body: dict[str, Any] = {
        "type": "object", "title": spec.name,
        "properties": {key: inner, "systemTags": _tags_schema(), "userTags": _tags_schema(False)},
        "x-zstack-api": spec.name, "x-zstack-message": spec.message, "x-zstack-kind": spec.kind,
    }
    if spec.rest.method == "PUT" or "required" in inner:
        body["required"] = [key]
    return body


def inventory_schema(inv: InventorySpec) -> dict[str, Any]:
    """An inventory as an object; list fields that are also expansions reference their inventory."""
    by_field = {e["field"]: e["inventory"] for e in inv.expanded}
    props: dict[str, Any] = {}
    for name, t in inv.fields:
        if t == "list":
            items = ref("schemas", by_field[name]) if name in by_field else {}
            s: dict[str, Any] = {"type": "array", "items": items}
        else:
            s = dict(_SCALARS.get(t, {}))
        s["nullable"] = True
        props[name] = s
    out: dict[str, Any] = {"type": "object", "properties": props, "x-zstack-class": inv.cls}
    if inv.expanded:
        out["x-zstack-expansions"] = [dict(sorted(e.items())) for e in inv.expanded]
    return out


REPLY_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("GetResourceAccount", "inventories"): {"type": "object", "additionalProperties": ref("schemas", "AccountInventory"),
                                            "description": "resource uuid -> the AccountInventory of its owner"},
}
"""Reply fields whose shape is not the generic one of their name (ZStack's maps)."""


def _reply_field(spec: ApiSpec, field: str) -> dict[str, Any]:
    """A reply field's schema. The catalogue types only query replies; others stay generic."""
    if (spec.name, field) in REPLY_FIELDS:
        return REPLY_FIELDS[(spec.name, field)]
    if spec.kind == "query" and spec.inventory:
        if field == "inventories":
            return {"type": "array", "items": ref("schemas", spec.inventory)}
        if field == "total":
            return {"type": "integer", "format": "int64"}
    if field == "inventory":
        return {"type": "object", "description": "the inventory of the resource"}
    if field == "inventories":
        return {"type": "array", "items": {"type": "object"}, "description": "inventories"}
    return {"description": f"the reply's field {field}"}


def reply_schema(spec: ApiSpec, catalog: Catalog) -> dict[str, Any]:
    """The REST body of a successful reply, mirroring mn.api.rest.shape()."""
    r = catalog.responses.get(spec.response or "")
    props: dict[str, Any] = {}
    if spec.kind == "query":
        props = {f: _reply_field(spec, f) for f in ("inventories", "total")}
    elif r is not None:
        if r.allTo:
            props = {r.allTo: _reply_field(spec, r.allTo)}
        elif r.fieldsTo == ("all",):
            props = {f: _reply_field(spec, f) for f in r.fields}
        else:
            for m in r.fieldsTo:
                dst, _, src = m.partition("=")
                props[dst] = _reply_field(spec, src or dst)
    out: dict[str, Any] = {"type": "object", "properties": dict(sorted(props.items())),
                           "x-zstack-api": spec.name, "x-zstack-message": spec.message,
                           "x-zstack-kind": spec.kind}
    out["x-zstack-reply-class"] = catalog.response_class(spec)
    return out


def _path_params(template: str, specs: list[ApiSpec]) -> list[dict[str, Any]]:
    out = []
    for var in _VAR.findall(template):
        p = next((s.param_map[var] for s in specs if var in s.param_map), None)
        schema = param_schema(p, specs[0].name) if p is not None and p.type != "list" else {"type": "string"}
        out.append({"name": var, "in": "path", "required": True, "schema": schema})
    return out


OPS_RE = "(?:!\\?=|\\?=|!~=|~=|>=|<=|!=|=|>|<)"
"""The query operators (mn.catalogue.conditions.QUERY_OPS) as a regex alternation."""
INVENTORY_PARAMS = ("q", "sort", "fields", "groupBy")
"""Query-string parameters whose valid values depend on the queried inventory."""


def _inventory_params(spec: ApiSpec) -> list[dict[str, Any]]:
    """q, sort, fields and groupBy of a query API, naming the fields of its inventory: the
    columns conditions, sortBy and groupBy take, the expansions conditions may go through, and
    every field for `fields` (mn.query.QueryCompiler decides; its errors list the same names)."""
    from mn.query import TARGETS, QueryCompiler

    inv = spec.inventory or ""
    qc = QueryCompiler()
    columns = qc.column_fields(inv) if inv in TARGETS else []
    expansions = qc.available_expansions(inv, spec) if inv in TARGETS else []
    exps = qc.expansions(inv, spec) if inv in TARGETS else {}
    names = [re.escape(c) for c in columns] + [
        re.escape(e) + r"\.(?:" + "|".join(re.escape(f) for f in qc.column_fields(exps[e]["inventory"])) + ")"
        for e in expansions if qc.column_fields(exps[e]["inventory"])]
    q = "query"
    return [
        {"name": "fields", "in": q, "style": "form", "explode": False,
         "schema": {"type": "array", "items": {"type": "string", "enum": ["", *(f for f, _ in qc.cat.inventories[inv].fields)]
                                               if inv in qc.cat.inventories else [""]}},
         "description": "only these fields of each inventory"},
        {"name": "groupBy", "in": q, "schema": {"type": "string", "enum": ["", *columns]},
         "description": "an empty value is no grouping"},
        {"name": "q", "in": q, "style": "form", "explode": True,
         "schema": {"type": "array", "items": {"type": "string", "pattern": f"^(?:{'|'.join(names)}){OPS_RE}"}},
         "description": "a condition <field><op><value>, repeated (AND): ops =, !=, >, >=, <, <=, "
                        "?= (in, comma-separated), !?= (not in), ~= (like, % wildcards), !~=, "
                        "'<field> is null', '<field> not null'; fields may be expansions "
                        "(zone.name=z1; the pattern names one level, the MN takes any depth); "
                        "the value must suit the field's type"},
        {"name": "sort", "in": q, "schema": {"type": "string", "enum": ["", *(f"{d}{c}" for c in columns for d in ("", "+", "-"))]},
         "description": "+field (ascending) or -field (descending); empty: unsorted"},
    ]


def _query_string_params(spec: ApiSpec, template: str) -> list[dict[str, Any]]:
    if spec.kind == "query":
        own = {p["name"]: p for p in _inventory_params(spec)}
        return [own.get(n) or ref("parameters", n) for n in QUERY_PARAMS]
    skip = set(_VAR.findall(template))
    out: list[dict[str, Any]] = []
    for p in spec.params:
        if p.name in skip or p.type in ("map", "object"):
            continue  # a map cannot travel in a query string: RPC carries it
        item: dict[str, Any] = {"name": p.name, "in": "query", "schema": param_schema(p, spec.name)}
        if _required(p):
            item["required"] = True
        out.append(item)
    out.sort(key=lambda x: x["name"])
    return [*out, *(ref("parameters", n) for n in TAG_PARAMS)]


def _error_responses(session: bool, body: bool = False) -> dict[str, Any]:
    """Every error an operation may answer: 401 also without a session (LogInByAccount's wrong
    password), 413/415 for bodies, 4XX for the rest of the HTTP layer's refusals (405...)."""
    out = {"400": ref("responses", "BadRequest"), "401": ref("responses", "Unauthorized"),
           "404": ref("responses", "NotFound"), "503": ref("responses", "Failed")}
    if body:
        out["413"] = ref("responses", "TooLarge")
        out["415"] = ref("responses", "UnsupportedMediaType")
    out["4XX"] = ref("responses", "ClientError")
    return out


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _success_responses(specs: list[ApiSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    direct = [s for s in specs if s.kind != "async"]
    if direct:
        refs = [ref("schemas", f"{s.name}Reply") for s in direct]
        # anyOf: the replies of several APIs sharing a path may have the same shape.
        out["200"] = {"description": "the shaped reply", **_json(refs[0] if len(refs) == 1 else {"anyOf": refs})}
    if len(direct) < len(specs):
        out["202"] = ref("responses", "Accepted")
    return out


def _family(template: str) -> str:
    return template.strip("/").split("/")[0]


def _merged_id(method: str, template: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", template)
    return method.lower() + "".join(w[0].upper() + w[1:] for w in words)


def _alternative_id(name: str, template: str) -> str:
    """The operationId of an API at one of its optional paths: QueryZone at /zones/{uuid} → QueryZoneByUuid."""
    found = _VAR.findall(template)
    return name + "By" + "And".join(v[0].upper() + v[1:] for v in found) if found else name + "Alt"


def _operation(method: str, template: str, specs: list[ApiSpec], primary: bool) -> dict[str, Any]:
    specs = sorted(specs, key=lambda s: s.name)
    names = [s.name for s in specs]
    session = any(not s.noSession for s in specs)
    op: dict[str, Any] = {"tags": [_family(template)]}
    if len(specs) == 1:
        s = specs[0]
        op["operationId"] = s.name if primary else _alternative_id(s.name, template)
        op["summary"] = s.name
        op["description"] = f"`{s.message}` ({s.kind})."
        op["x-zstack-message"] = s.message
        op["x-zstack-kind"] = s.kind
    else:
        op["operationId"] = _merged_id(method, template)
        op["summary"] = " | ".join(names)
        op["description"] = ("One of the actions " + ", ".join(names)
                             + f", told apart by the body's key ({', '.join(s.action_key for s in specs)}).")
        op["x-zstack-message"] = {s.name: s.message for s in specs}
        kinds = {s.kind for s in specs}
        op["x-zstack-kind"] = kinds.pop() if len(kinds) == 1 else "mixed"
    op["x-zstack-apis"] = names
    params = _path_params(template, specs)
    if method in ("GET", "DELETE"):
        params += _query_string_params(specs[0], template)
    elif method in ("POST", "PUT"):
        refs = [ref("schemas", f"{s.name}Request") for s in specs]
        # anyOf: each branch requires its action's key; a body may name more (the first is run).
        op["requestBody"] = {"required": True, **_json(refs[0] if len(refs) == 1 else {"anyOf": refs})}
    if params:
        op["parameters"] = params
    if specs[0].kind == "query":
        s = specs[0]
        op["x-zstack-inventory"] = s.inventory
        op["x-zstack-queryable"] = list(s.queryable)
        op["x-zstack-expansions"] = [dict(sorted(e.items())) for e in s.expanded]
    op["responses"] = {**_success_responses(specs), **_error_responses(session, method in ("POST", "PUT"))}
    if session:
        op["security"] = [{SESSION: []}] if all(not s.noSession for s in specs) else [{SESSION: []}, {}]
    return op


def _components(catalog: Catalog, specs: list[ApiSpec], templates: dict[str, str]) -> dict[str, Any]:
    error = {"type": "object", "required": ["code"], "properties": {
        "code": {"type": "string", "example": "SYS.1007"}, "description": {"type": "string"},
        "details": {"type": "string"}, "cause": {"type": "object"}}, "additionalProperties": True}
    schemas: dict[str, Any] = {
        "Error": error,
        "ErrorReply": {"type": "object", "required": ["success", "error"], "properties": {
            "success": {"type": "boolean", "enum": [False]}, "error": ref("schemas", "Error")}},
        "JobLocation": {"type": "object", "required": ["location"], "properties": {
            "location": {"type": "string", "format": "uri",
                         "description": "GET it: 202 while running, 200 with the reply, 503 with the error"}}},
        "RpcReply": {"type": "object", "properties": {
            "uuid": {"type": "string"}, "state": {"type": "string", "enum": ["Done", "Processing"]},
            "createdDate": {"type": "string", "format": DATE_FORMAT, "nullable": True},
            "finishedDate": {"type": "string", "format": DATE_FORMAT, "nullable": True},
            "result": {"type": "string", "description":
                       'JSON text of {"<reply or event class>": {"success": ..., ...}}'}}},
    }
    for n, inv in catalog.inventories.items():
        schemas[n] = inventory_schema(inv)
    for s in specs:
        schemas[f"{s.name}Reply"] = reply_schema(s, catalog)
        if s.rest is not None and s.rest.method in ("POST", "PUT"):
            schemas[f"{s.name}Request"] = request_schema(s, templates[s.name])

    def err(desc: str) -> dict[str, Any]:
        return {"description": desc, **_json(ref("schemas", "ErrorReply"))}

    q = "query"
    parameters = {
        "q": {"name": "q", "in": q, "style": "form", "explode": True,
              "schema": {"type": "array", "items": {"type": "string"}},
              "description": "a condition <field><op><value>, repeated (AND): ops =, !=, >, >=, <, <=, "
                             "?= (in, comma-separated), !?= (not in), ~= (like, % wildcards), !~=, "
                             "'<field> is null', '<field> not null'; fields may be expansions "
                             "(zone.name=z1)"},
        "limit": {"name": "limit", "in": q, "schema": {"type": "integer", "format": "int32", "default": 1000,
                                                        "minimum": 0}},
        "start": {"name": "start", "in": q, "schema": {"type": "integer", "format": "int32", "minimum": 0}},
        "count": {"name": "count", "in": q, "schema": {"type": "boolean"},
                  "description": "answer only the total"},
        "replyWithCount": {"name": "replyWithCount", "in": q, "schema": {"type": "boolean"},
                           "description": "add the total to the inventories"},
        "sort": {"name": "sort", "in": q, "schema": {"type": "string"},
                 "description": "+field (ascending) or -field (descending)"},
        "fields": {"name": "fields", "in": q, "style": "form", "explode": False,
                   "schema": {"type": "array", "items": {"type": "string"}},
                   "description": "only these fields of each inventory"},
        "groupBy": {"name": "groupBy", "in": q, "schema": {"type": "string"}},
        "filterName": {"name": "filterName", "in": q, "schema": {"type": "string"}},
        "systemTags": {"name": "systemTags", "in": q, "schema": _tags_schema()},
        "userTags": {"name": "userTags", "in": q, "schema": _tags_schema(False)},
    }
    return {
        "schemas": dict(sorted(schemas.items())),
        "parameters": parameters,
        "responses": {
            "Accepted": {"description": "an async API's job was created; poll its location",
                         **_json(ref("schemas", "JobLocation"))},
            "BadRequest": err("invalid argument (SYS.1007) or malformed request"),
            "Unauthorized": err("no or invalid session (ID.1001)"),
            "NotFound": err("no such resource, API or job"),
            "NotImplemented": err("an API of the catalogue this MN does not serve (SYS.1014)"),
            "TooLarge": err("the body is larger than the MN accepts (SYS.1007; MNConfig.api_max_body)"),
            "UnsupportedMediaType": err("the body is not JSON (SYS.1007)"),
            "ClientError": err("another refusal of the request (SYS.1007, SYS.1008, ...)"),
            "Failed": err("the API failed (ZStack's error code in error.code)"),
        },
        "securitySchemes": {SESSION: {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": 'the value is "OAuth <session uuid>"; LogInByAccount answers the session'}},
    }


def _fixed_paths() -> dict[str, dict[str, Any]]:
    uuid = [{"name": "uuid", "in": "path", "required": True, "schema": {"type": "string"}}]
    rpc_reply = {"description": "the call's state and, when done, its result", **_json(ref("schemas", "RpcReply"))}
    return {
        "/zstack/api": {"post": {
            "tags": ["rpc"], "operationId": "rpcCall", "summary": "call any API by its message class",
            "description": 'Body {"<message class>": {params..., "session": {"uuid": "..."}}}. '
                           'Async APIs answer state "Processing": poll /zstack/api/result/{uuid}.',
            "requestBody": {"required": True, **_json({
                "type": "object", "minProperties": 1, "maxProperties": 1,
                "additionalProperties": {"type": "object"}})},
            "responses": {"200": rpc_reply, **{c: {**rpc_reply, "description": d} for c, d in (
                ("400", "the body or the parameters are invalid (SYS.1007)"),
                ("401", "no or invalid session (ID.1001), or a failed login (ID.1000)"),
                ("404", "no API of that message class (SYS.1008)"),
                ("413", "the body is too large (SYS.1007)"), ("415", "the body is not JSON (SYS.1007)"),
                ("4XX", "another refusal before the call ran"))}}}},
        "/zstack/api/result/{uuid}": {"get": {
            "tags": ["rpc"], "operationId": "rpcResult", "summary": "the result of an RPC call",
            "parameters": uuid, "responses": {"200": rpc_reply, "404": rpc_reply, "4XX": rpc_reply}}},
        f"{REST_PREFIX}/api-jobs/{{uuid}}": {"get": {
            "tags": ["api-jobs"], "operationId": "getApiJob", "summary": "poll an async REST call",
            "parameters": uuid, "responses": {
                "200": {"description": "the API's shaped reply (its operation's x-zstack-result)",
                        **_json({"type": "object"})},
                "202": ref("responses", "Accepted"), "404": ref("responses", "NotFound"),
                "503": ref("responses", "Failed"), "4XX": ref("responses", "ClientError")}}},
        f"{REST_PREFIX}/openapi.json": {"get": {
            "tags": ["openapi"], "operationId": "getOpenApi", "summary": "this document",
            "responses": {"200": {"description": "the OpenAPI document", **_json({"type": "object"})},
                          "4XX": ref("responses", "ClientError")}}},
    }


def build_openapi(dispatcher: Dispatcher) -> dict[str, Any]:
    """The OpenAPI document of every API `dispatcher` implements."""
    catalog = dispatcher.catalog
    specs = sorted(dispatcher.implemented(), key=lambda s: s.name)
    groups: dict[tuple[str, str], list[ApiSpec]] = defaultdict(list)
    primary: dict[tuple[str, str], bool] = {}
    first: dict[str, str] = {}
    for s in specs:
        if s.rest is None:
            continue
        for i, t in enumerate(rest_paths(s.rest)):
            groups[(t, s.rest.method)].append(s)
            primary[(t, s.rest.method)] = i == 0
            first.setdefault(s.name, t)
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for (t, method), members in groups.items():
        op = _operation(method, t, members, primary[(t, method)] or len(members) > 1)
        for s in members:
            if s.kind == "async":
                op.setdefault("x-zstack-result", {})[s.name] = ref("schemas", f"{s.name}Reply")
        paths[REST_PREFIX + t][method.lower()] = op
    paths.update(_fixed_paths())
    tags = sorted({op["tags"][0] for item in paths.values() for op in item.values()})
    return {
        "openapi": "3.0.3",
        "info": {"title": "ZStack-compatible management node API", "version": __version__,
                 "description": "Generated from the API catalogue (mn/catalogue/catalog.json) for the APIs "
                                "this management node implements."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in tags],
        "paths": {p: dict(sorted(paths[p].items())) for p in sorted(paths)},
        "components": _components(catalog, specs, first),
    }


def offline_openapi() -> dict[str, Any]:
    """The document without a running MN: implemented() needs only the handlers and the catalogue."""
    from mn.api.dispatch import Dispatcher
    from mn.services import load_all

    load_all()
    return build_openapi(Dispatcher(None, None))  # type: ignore[arg-type]
