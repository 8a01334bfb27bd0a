"""What agents POST to the MN on their own.

POST /agent/events: what agents report (a VM that stopped, a crash). Agents learn this URL as
`sendCommandUrl` when they connect. Handlers by event type are registered by service modules in
mn.extensions.AGENT_EVENTS; each gets (services, event dict).

POST /agent/callback: the reply of a command sent in the async form (header `taskuuid`), handed
to the waiting AgentClient call.

Both are signed (kvmagent/auth.py): an event with the key of the host its `X-ZStack-Agent` header
names, which must be the event's `hostUuid` (and the handlers act only on that host's own
resources); a callback with the key of the agent its task was sent to. Anything else is refused
(401 not authentic, 403 about another host) and changes nothing.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from kvmagent import auth
from mn.agent import CALLBACK_PATH, EVENTS_PATH
from mn.extensions import AGENT_EVENTS
from mn.models import Host

bp = Blueprint("agent_events", __name__)
log = logging.getLogger(__name__)


def _verifier() -> auth.Verifier:
    return current_app.extensions["zstack.services"].component(auth.Verifier, auth.Verifier)


def _refuse(status: int, message: str):  # noqa: ANN202 - a Flask reply
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, message)
    return jsonify(auth.refusal(message)), status


def _verify(key: bytes | None, body: bytes) -> str | None:
    """None when the request is authentic under `key`, else why not."""
    path = request.full_path.rstrip("?") if request.query_string else request.path
    try:
        _verifier().verify(key, request.method, path, body, request.headers.get)
    except auth.AuthError as exc:
        return str(exc)
    return None


def _host_key(host_uuid: str) -> bytes | None:
    svc = current_app.extensions["zstack.services"]
    with svc.db.ro() as s:
        url = s.scalar(select(Host.agentUrl).where(Host.uuid == host_uuid))
    return svc.agents.key_for(url) if url else None


@bp.post(EVENTS_PATH)
def agent_event():
    body = request.get_data()
    sender = request.headers.get(auth.AGENT_HEADER) or ""
    if not sender:
        return _refuse(401, f"an agent event must name its host in the {auth.AGENT_HEADER} header and be signed")
    refused = _verify(_host_key(sender), body)
    if refused:
        return _refuse(401, f"event from host {sender}: {refused}")
    try:
        event = json.loads(body or b"{}")
    except ValueError:
        return jsonify({"success": False, "error": "the body is not JSON"}), 400
    handler = AGENT_EVENTS.get(event.get("type", "")) if isinstance(event, dict) else None
    if handler is None:
        return jsonify({"success": False, "error": f"unknown event type {event!r}"}), 400
    if event.get("hostUuid") != sender:
        return _refuse(403, f"host {sender} may report only about itself, not host {event.get('hostUuid')}")
    handler(current_app.extensions["zstack.services"], event)
    return jsonify({"success": True})


@bp.post(CALLBACK_PATH)
def agent_callback():
    task = request.headers.get("taskuuid")
    body = request.get_data()
    agents = current_app.extensions["zstack.services"].agents
    if task:
        key = agents.callback_key(task)
        if key is None:
            log.info("late or unknown agent reply for task %s", task)
            return jsonify({"success": False, "error": f"no command waits for task {task}"}), 404
        refused = _verify(key, body)
        if refused:
            return _refuse(401, f"reply of task {task}: {refused}")
    try:
        reply = json.loads(body or b"{}")
    except ValueError:
        return jsonify({"success": False, "error": "the body is not JSON"}), 400
    if not task or not isinstance(reply, dict):
        return jsonify({"success": False, "error": "a callback needs the taskuuid header and a JSON object"}), 400
    if not agents.complete(task, reply):
        log.info("late or unknown agent reply for task %s", task)
        return jsonify({"success": False, "error": f"no command waits for task {task}"}), 404
    return jsonify({"success": True})
