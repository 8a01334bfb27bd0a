"""POST /agent/events: what agents report on their own (a VM that stopped, a crash).

Agents learn this URL as `sendCommandUrl` when they connect. Handlers by event type are
registered by service modules in HANDLERS; each gets (services, event dict).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, jsonify, request

bp = Blueprint("agent_events", __name__)
log = logging.getLogger(__name__)

HANDLERS: dict[str, Callable[[Any, dict[str, Any]], None]] = {}
PATH = "/agent/events"


@bp.post(PATH)
def agent_event():
    try:
        event = json.loads(request.get_data() or b"{}")
    except ValueError:
        return jsonify({"success": False, "error": "the body is not JSON"}), 400
    handler = HANDLERS.get(event.get("type", "")) if isinstance(event, dict) else None
    if handler is None:
        return jsonify({"success": False, "error": f"unknown event type {event!r}"}), 400
    handler(current_app.extensions["zstack.services"], event)
    return jsonify({"success": True})
