"""ZStack's RPC transport: POST /zstack/api and GET /zstack/api/result/<uuid>.

Request:  {"<full message class>": {params..., "session": {"uuid": "..."}}}
Reply:    {"uuid", "state": "Done"|"Processing", "createdDate", "finishedDate",
           "result": "<JSON string of {\"<reply/event class>\": {...}}>"}
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from mn.api.dispatch import CallResult, Dispatcher
from mn.api.wire import read_json
from mn.errors import INVALID_ARGUMENT, RESOURCE_NOT_FOUND, ApiError
from mn.inventory import fmt_date

bp = Blueprint("rpc", __name__)
GENERIC_REPLY = "org.zstack.header.message.APIReply"


def _dispatcher() -> Dispatcher:
    return current_app.extensions["zstack.dispatcher"]


def render(res: CallResult) -> dict[str, Any]:
    out: dict[str, Any] = {"uuid": res.uuid, "state": "Done" if res.done else "Processing",
                           "createdDate": fmt_date(res.created), "finishedDate": fmt_date(res.finished)}
    text = res.reply_json() if res.done else None
    if text is not None:  # {cls: reply} as text, the reply's JSON not parsed and dumped again
        cls = _dispatcher().catalog.response_class(res.spec) if res.spec else GENERIC_REPLY
        out["result"] = f"{{{json.dumps(cls)}: {text}}}"
    return out


def error_reply(err: ApiError, status: int = 400):
    """A failure before any job existed, in the RPC reply's shape, with its 4xx status."""
    body = {"uuid": "", "state": "Done",
            "result": json.dumps({GENERIC_REPLY: {"success": False, "error": err.to_dict()}})}
    return jsonify(body), status


def _error(code: str, details: str, status: int = 400):
    return error_reply(ApiError(code, details), status)


def status_of(res: CallResult) -> int:
    """200 for a call that ran (its failure, if any, is in the result, as ZStack answers), the
    error's 4xx status for a call refused before it ran (unknown API, parameters, session)."""
    s = res.http_status
    return s if s is not None and 400 <= s < 500 else 200


@bp.post("/zstack/api")
@bp.post("/zstack/api/")  # ZStack's own clients post here: served, not redirected
def call_api():
    try:
        body = read_json(request.get_data(), request.content_type)
    except ApiError as err:
        return error_reply(err, err.http_status or 400)
    if not isinstance(body, dict) or len(body) != 1:
        return _error(INVALID_ARGUMENT, 'the body must be one object {"<API message class>": {...}}')
    (name, params), = body.items()
    if not isinstance(params, dict):
        return _error(INVALID_ARGUMENT, f"the parameters of {name} must be a JSON object")
    params = dict(params)
    session = params.pop("session", None)
    session_uuid = session.get("uuid") if isinstance(session, dict) else session
    if session_uuid is not None and not isinstance(session_uuid, str):
        return _error(INVALID_ARGUMENT, "the session must be {\"uuid\": \"<session uuid>\"}")
    res = _dispatcher().call(name, params, session_uuid)
    return jsonify(render(res)), status_of(res)


def wait_seconds() -> float:
    """The `wait` query parameter (long polling; an extension of ZStack's protocol): 0 if absent
    or not a number."""
    try:
        return max(0.0, float(request.args.get("wait", 0)))
    except ValueError:
        return 0.0


@bp.get("/zstack/api/result/<uuid>")
@bp.get("/zstack/api/result/<uuid>/")
def get_result(uuid: str):
    """The job's state and result; `?wait=S` holds the answer up to S seconds while it runs."""
    res = _dispatcher().result(uuid, wait_seconds())
    if res is None:
        return _error(RESOURCE_NOT_FOUND, f"no API job with uuid {uuid}", 404)
    return jsonify(render(res))
