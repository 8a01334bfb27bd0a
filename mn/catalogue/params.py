"""Parameter validation and coercion, derived from the catalogue's ParamSpecs.

validate() returns a new dict with defaults applied and values of the declared types, or raises
ApiError(SYS.1007) naming the parameter. It has no side effects.
"""

from __future__ import annotations

import re
from typing import Any

from mn.catalogue.catalog import ApiSpec, ParamSpec
from mn.errors import invalid

# Fields every message accepts (ZStack's Message/APIMessage base fields).
BASE_FIELDS = frozenset({
    "session", "systemTags", "userTags", "timeout", "clientIp", "clientBrowser", "id", "headers",
    "props", "serviceId", "createdTime", "messageDeadline",
})
_INT_TYPES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_HEX32 = re.compile("[0-9a-f]{32}")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def has_lone_surrogate(s: str) -> bool:
    """Whether `s` holds a code point U+D800..U+DFFF: not a Unicode scalar value sequence, so
    UTF-8 (and every database) cannot store it."""
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _text(where: str, v: Any) -> None:
    """SYS.1007 naming `where` if a string in `v` (a map's keys and values too) is not valid Unicode
    or holds a NUL (PostgreSQL cannot store one)."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if has_lone_surrogate(x):
                raise invalid(f"{where} is not valid Unicode (it holds a lone surrogate)")
            if "\x00" in x:
                raise invalid(f"{where} holds a NUL character, which no database stores")
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)


def _scalar(api: str, p: ParamSpec, t: str, v: Any, lenient: bool) -> Any:
    where = f"parameter '{p.name}' of {api}"
    if t in _INT_TYPES:
        if isinstance(v, bool):
            raise invalid(f"{where} must be an integer, got a boolean")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, str) and lenient and re.fullmatch(r"-?\d+", v.strip()):
            v = int(v)
        if not isinstance(v, int):
            raise invalid(f"{where} must be an integer, got {v!r}")
        lo, hi = _INT_TYPES[t]
        if not lo <= v <= hi:
            raise invalid(f"{where} is out of the range of a {t}: {v}")
        return v
    if t in ("float", "double"):
        if isinstance(v, str) and lenient:
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise invalid(f"{where} must be a number, got {v!r}")
        return float(v)
    if t == "boolean":
        if isinstance(v, str) and lenient and v.lower() in _TRUE | _FALSE:
            return v.lower() in _TRUE
        if not isinstance(v, bool):
            raise invalid(f"{where} must be a boolean, got {v!r}")
        return v
    if t in ("string", "enum", "timestamp"):
        if isinstance(v, str):
            return v
        if lenient and isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        raise invalid(f"{where} must be a string, got {v!r}")
    if t == "map":
        if not isinstance(v, dict):
            raise invalid(f"{where} must be a map, got {v!r}")
        return v
    return v  # "object": passed through, checked by the handler


def _check_param(api: str, p: ParamSpec, v: Any, lenient: bool) -> Any:
    where = f"parameter '{p.name}' of {api}"
    if p.type == "list":
        if isinstance(v, str) and lenient:
            v = [x for x in v.split(",") if x != ""]
        if not isinstance(v, list):
            raise invalid(f"{where} must be a list, got {v!r}")
        et = p.elementType or "string"
        v = [_scalar(api, p, et, x, lenient) if et != "object" else x for x in v]
        if p.nonempty and not v:
            raise invalid(f"{where} must not be empty")
        return v
    v = _scalar(api, p, p.type, v, lenient)
    if isinstance(v, str):
        if not p.emptyString and v.strip() == "":
            raise invalid(f"{where} must not be an empty string")
        if p.maxLength is not None and len(v) > p.maxLength:
            raise invalid(f"{where} is longer than {p.maxLength} characters")
        if p.minLength is not None and len(v) < p.minLength:
            raise invalid(f"{where} is shorter than {p.minLength} characters")
    if p.validValues is not None:
        sval = str(v).lower() if isinstance(v, bool) else str(v)
        if sval not in p.validValues:
            raise invalid(f"{where} must be one of {list(p.validValues)}, got {v!r}")
    if p.numberRange is not None and isinstance(v, int):
        lo, hi = p.numberRange
        if not lo <= v <= hi:
            raise invalid(f"{where} must be within [{lo}, {hi}], got {v}")
    return v


def validate(spec: ApiSpec, params: dict[str, Any], lenient: bool = False) -> dict[str, Any]:
    """Check `params` against the spec; `lenient` accepts strings for numbers (query strings)."""
    if not isinstance(params, dict):
        raise invalid(f"the body of {spec.name} must be a JSON object")
    out: dict[str, Any] = {}
    for k in params:
        if k not in spec.param_map and k not in BASE_FIELDS:
            valid = ", ".join(sorted(spec.param_map)) or "none"
            raise invalid(f"unknown parameter '{k}' of {spec.name}; valid parameters: {valid}")
    for p in spec.params:
        v = params.get(p.name)
        if v is None:
            if p.required and p.default is None:
                raise invalid(f"missing mandatory parameter '{p.name}' of {spec.name}")
            out[p.name] = p.default
            continue
        out[p.name] = _check_param(spec.name, p, v, lenient)
        if not isinstance(v, bool | int | float):
            _text(f"parameter '{p.name}' of {spec.name}", out[p.name])
    rid = out.get("resourceUuid")
    if isinstance(rid, str) and not _HEX32.fullmatch(rid):
        # ZStack's APICreateMessage: checked before an async API's job is queued, not in it.
        raise invalid(f"resourceUuid must be 32 lower-case hex characters, got {rid!r}")
    for k in ("systemTags", "userTags"):
        tags = params.get(k)
        if tags is None:
            continue
        if isinstance(tags, str) and lenient:
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise invalid(f"'{k}' of {spec.name} must be a list of strings")
        _text(f"'{k}' of {spec.name}", tags)
        out[k] = tags
    return out
