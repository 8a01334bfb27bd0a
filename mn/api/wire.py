"""What both API transports do with a request before the dispatcher sees it, and how every
failure of the HTTP layer is answered.

read_json(): the body as JSON, or ApiError(SYS.1007, 400/415) saying why not: a content type that
is not JSON, bytes that are not UTF-8, text that is not JSON (NaN and Infinity included), nesting
deeper than MAX_DEPTH, a string (key or value) holding a lone surrogate (not a Unicode scalar
value sequence: it could not be stored), named by its path in the body.

http_error(): the ApiError standing for one of werkzeug's own HTTP errors (404, 405, 413, 500...),
so that no path under /zstack/ ever answers an HTML page or a Python exception's text.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import HTTPException

from mn.catalogue.params import has_lone_surrogate
from mn.errors import INTERNAL, INVALID_ARGUMENT, UNKNOWN_MESSAGE, ApiError, invalid

MAX_DEPTH = 32
"""The deepest nesting of objects and arrays a body may have; ZStack's messages need < 6."""
JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")
"""Content types a JSON body may come with: JSON itself (and any `+json` type), and
curl's default for `-d` (ZStack's clients and its docs send that too); a missing type is JSON."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_content_type(content_type: str | None) -> None:
    """ApiError(SYS.1007, 415) unless `content_type` (a Content-Type header) may carry JSON."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime and mime not in JSON_TYPES and not mime.endswith("+json"):
        raise ApiError(INVALID_ARGUMENT, f"the request body must be application/json, not {mime}", http_status=415)


def _walk(doc: Any) -> None:
    """Depth and surrogates, iteratively (a deep document must not exhaust the stack)."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                raise invalid(f"the request body is nested deeper than {MAX_DEPTH} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in items:
                where = f"{path}[{k}]" if isinstance(k, int) else (f"{path}.{k}" if path else str(k))
                if isinstance(k, str) and has_lone_surrogate(k):
                    raise invalid(f"the key {where!r} of the request body is not valid Unicode (a lone surrogate)")
                stack.append((v, where, depth + 1))
        elif isinstance(node, str) and has_lone_surrogate(node):
            raise invalid(f"'{path}' of the request body is not valid Unicode (a lone surrogate)")


def read_json(raw: bytes, content_type: str | None) -> Any:
    """The JSON document of a request body (None when empty); see the module's invariants."""
    if not raw:
        return None
    check_content_type(content_type)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"the request body is not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise invalid(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None
    _walk(doc)
    return doc


def http_error(exc: HTTPException | BaseException, max_body: int | None = None) -> ApiError:
    """ZStack's error for a failure of the HTTP layer (no exception text goes to the client)."""
    if not isinstance(exc, HTTPException) or exc.code is None or exc.code >= 500:
        return ApiError(INTERNAL, "an internal error happened in the management node; see its log",
                        http_status=500)
    if exc.code == 404:
        return ApiError(UNKNOWN_MESSAGE, "no API at this path", http_status=404)
    if exc.code == 405:
        return ApiError(UNKNOWN_MESSAGE, "no API at this path with this method", http_status=405)
    if exc.code == 413:
        limit = f" ({max_body} bytes)" if max_body else ""
        return ApiError(INVALID_ARGUMENT, f"the request body is larger than the management node accepts{limit}",
                        http_status=413)
    return ApiError(INVALID_ARGUMENT, f"the request is malformed ({exc.name})", http_status=exc.code)
