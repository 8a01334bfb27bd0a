"""Agent-protocol command dispatch: route, apply faults, validate, run, encode.

serve_command() is the whole life of one protocol request minus HTTP; run_command() is the same
without faults, JSON or counting (what unit tests call). Every path in protocol.COMMANDS has a
handler here or in a plugin's simulator module (simulator.registry), checked when the routes are built. A command is validated against its dataclass before it runs:
required fields present, JSON types right (an int is not a string, a list is a list), nested
VolumeTO/NicTO too; unknown fields are ignored, like protocol.from_wire does. A command whose
hostUuid/psUuid/bsUuid names another target than the URL's fails (ping excepted: its reply's
hostUuid is how the MN notices a different host answering).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from kvmagent import protocol as p
from kvmagent.wire import WireError, encode_reply, failure, validate
from simulator import hosts, plugins, registry, storage
from simulator.faults import Fault
from simulator.model import SimError
from simulator.state import SimState

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
OK, BAD_REQUEST, NOT_FOUND, SERVER_ERROR = "200 OK", "400 Bad Request", "404 Not Found", "500 Internal Server Error"

HOSTS, PRIMARY, BACKUP = registry.HOSTS, registry.PRIMARY, registry.BACKUP
NOUNS = {HOSTS: "host", PRIMARY: "primary storage", BACKUP: "backup storage"}


class Route(NamedTuple):
    cmd_cls: type
    handler: Callable[[SimState, Any, Any], p.Reply]


def _routes() -> dict[str, dict[str, Route]]:
    tables = {HOSTS: {**hosts.HANDLERS, **registry.HANDLERS[HOSTS]},
              PRIMARY: {**storage.PS_HANDLERS, **registry.HANDLERS[PRIMARY]},
              BACKUP: {**storage.BS_HANDLERS, **registry.HANDLERS[BACKUP]}}
    routes: dict[str, dict[str, Route]] = {k: {} for k in tables}
    for path, cls in p.COMMANDS.items():
        kind = next((k for k, t in tables.items() if path in t), None)
        if kind is None:
            raise RuntimeError(f"the simulator has no handler for protocol command {path}")
        routes[kind][path] = Route(cls, tables[kind][path])
    return routes


_ROUTES: list = [-1, {}]  # [registry version they were built at, routes]


def routes() -> dict[str, dict[str, Route]]:
    """Target kind -> protocol path -> Route, for the core and every plugin (loaded on first use).
    Every protocol command has a handler (checked when the routes are built)."""
    if _ROUTES[0] != registry.version():
        plugins.load()
        _ROUTES[:] = [registry.version(), _routes()]
    return _ROUTES[1]

_LOOKUP: dict[str, Callable[[SimState, str], Any]] = {
    HOSTS: SimState.host, PRIMARY: SimState.primary_storage, BACKUP: SimState.backup_storage,
}
_OWNER_FIELD = {HOSTS: "hostUuid", PRIMARY: "psUuid", BACKUP: "bsUuid"}


# ---- running a command ------------------------------------------------------------------------

def run_command(state: SimState, kind: str, target_uuid: str, path: str, data: Any) -> dict[str, Any]:
    """Run one protocol command on one target; always returns a reply dict (failures included)."""
    route = routes()[kind].get(path)
    if route is None:
        return failure(f"{path} is not a command a simulated {NOUNS[kind]} serves")
    try:
        target = _LOOKUP[kind](state, target_uuid)
        validate(route.cmd_cls, data, f"invalid {route.cmd_cls.__name__} for {path}")
        cmd = p.from_wire(route.cmd_cls, data)
        owner = getattr(cmd, _OWNER_FIELD[kind], None)
        if owner is not None and owner != target_uuid and path != p.PingCmd.PATH:
            raise SimError(f"{path} for {NOUNS[kind]} {owner} was sent to simulated {NOUNS[kind]} {target_uuid}")
        return encode_reply(route.handler(state, target, cmd))
    except (SimError, WireError) as exc:
        return failure(str(exc))


def _apply_fault(state: SimState, fault: Fault, path: str, target: str) -> tuple[str, bytes, str] | None:
    """The response a fault imposes, or None to go on normally (after a slow fault's delay)."""
    if fault.mode == "slow":
        state.stopping.wait(fault.delay)
        return None
    if fault.mode == "error":
        msg = fault.message or f"simulated internal error of {path} on {target}"
        return SERVER_ERROR, msg.encode(), TEXT_TYPE
    if fault.mode == "timeout":
        state.stopping.wait(fault.delay)
        msg = fault.message or f"simulated timeout of {path} on {target} after {fault.delay}s"
    else:
        msg = fault.message or f"simulated failure of {path} on {target}"
    return OK, json.dumps(failure(msg)).encode(), JSON_TYPE


def serve_command(state: SimState, kind: str, target_uuid: str, path: str,
                  body: bytes) -> tuple[str, bytes, str]:
    """One protocol request: (HTTP status line, body, content type)."""
    if path not in routes()[kind]:
        msg = f"{path} is not a command a simulated {NOUNS[kind]} serves"
        return NOT_FOUND, json.dumps(failure(msg)).encode(), JSON_TYPE
    fault = state.faults.take(path, target_uuid)
    if fault is not None:
        imposed = _apply_fault(state, fault, path, target_uuid)
        if imposed is not None:
            state.calls.count(path, False)
            return imposed
    status = OK
    try:
        data = json.loads(body) if body else {}
    except ValueError as exc:
        state.calls.count(path, False)
        return BAD_REQUEST, json.dumps(failure(f"{path}: body is not JSON: {exc}")).encode(), JSON_TYPE
    try:
        reply = run_command(state, kind, target_uuid, path, data)
    except Exception as exc:  # a simulator bug: say so, never hang the caller
        log.exception("simulator failed on %s for %s", path, target_uuid)
        status, reply = SERVER_ERROR, failure(f"internal simulator error on {path}: {type(exc).__name__}: {exc}")
    state.calls.count(path, reply["success"])
    return status, json.dumps(reply).encode(), JSON_TYPE
