"""What agents POST to the MN on their own.

POST /agent/events: what agents report (a VM that stopped, a crash). Agents learn this URL as
`sendCommandUrl` when they connect. Handlers by event type are registered by service modules in
mn.extensions.AGENT_EVENTS; each gets (services, event dict).

POST /agent/callback: the reply of a command sent in the async form (header `taskuuid`), handed
to the waiting AgentClient call.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request

from mn.agent import CALLBACK_PATH, EVENTS_PATH
from mn.extensions import AGENT_EVENTS

bp = Blueprint("agent_events", __name__)
log = logging.getLogger(__name__)



@bp.post(EVENTS_PATH)
def agent_event():
    try:
        event = json.loads(request.get_data() or b"{}")
    except ValueError:
        return jsonify({"success": False, "error": "the body is not JSON"}), 400
    handler = AGENT_EVENTS.get(event.get("type", "")) if isinstance(event, dict) else None
    if handler is None:
        return jsonify({"success": False, "error": f"unknown event type {event!r}"}), 400
    handler(current_app.extensions["zstack.services"], event)
    return jsonify({"success": True})


@bp.post(CALLBACK_PATH)
def agent_callback():
    task = request.headers.get("taskuuid")
    try:
        reply = json.loads(request.get_data() or b"{}")
    except ValueError:
        return jsonify({"success": False, "error": "the body is not JSON"}), 400
    if not task or not isinstance(reply, dict):
        return jsonify({"success": False, "error": "a callback needs the taskuuid header and a JSON object"}), 400
    if not current_app.extensions["zstack.services"].agents.complete(task, reply):
        log.info("late or unknown agent reply for task %s", task)
        return jsonify({"success": False, "error": f"no command waits for task {task}"}), 404
    return jsonify({"success": True})
