"""The simulator's admin API (JSON over HTTP, under /simulator/): not part of the agent protocol.

    PUT|GET|DELETE /simulator/hosts/{uuid}                 GET /simulator/hosts -> {"count"}
    POST /simulator/hosts/{uuid}/vms/{vmUuid}/state        {"state", "cpuNum"?, "memory"?}
    POST /simulator/hosts/{uuid}/restart-agent             forget the connection (see SimState)
    PUT|GET|DELETE /simulator/primary-storage/{uuid}       GET /simulator/primary-storage -> {"count"}
    PUT|GET|DELETE /simulator/backup-storage/{uuid}        GET /simulator/backup-storage -> {"count"}
    POST|GET|DELETE /simulator/faults                      DELETE /simulator/faults/{id}
    GET /simulator/stats

Errors answer 400 (bad body), 404 (unknown object or route) or 405 with {"error": message}.
DELETE of an unknown object answers 200 {"deleted": false}, so cleanups can be blind.
"""

from __future__ import annotations

import json
from typing import Any

from simulator.dispatch import BAD_REQUEST, JSON_TYPE, NOT_FOUND, OK
from simulator.model import SimError
from simulator.state import SimState

METHOD_NOT_ALLOWED = "405 Method Not Allowed"


class AdminError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise AdminError(BAD_REQUEST, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AdminError(BAD_REQUEST, "body must be a JSON object")
    return data


def _int(data: dict[str, Any], key: str, minimum: int = 1) -> int | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise AdminError(BAD_REQUEST, f"{key} must be an integer of at least {minimum}, not {v!r}")
    return v


def _str(data: dict[str, Any], key: str) -> str | None:
    v = data.get(key)
    if v is not None and not isinstance(v, str):
        raise AdminError(BAD_REQUEST, f"{key} must be a string, not {v!r}")
    return v


def _capacities(data: dict[str, Any]) -> tuple[int | None, int | None]:
    total, available = _int(data, "totalCapacity", 0), _int(data, "availableCapacity", 0)
    if total is not None and available is not None and available > total:
        raise AdminError(BAD_REQUEST, f"availableCapacity {available} exceeds totalCapacity {total}")
    return total, available


def _hosts(state: SimState, method: str, parts: list[str], data: dict[str, Any]) -> Any:
    if not parts:
        if method == "GET":
            return {"count": len(state.hosts)}
        raise AdminError(METHOD_NOT_ALLOWED, f"{method} is not allowed on /simulator/hosts")
    uuid, rest = parts[0], parts[1:]
    if not rest:
        if method == "PUT":
            h = state.put_host(uuid, _int(data, "cpuNum"), _int(data, "memory"), _int(data, "cpuSpeed"),
                               _int(data, "cpuSockets"), _str(data, "managementIp"))
            with h.lock:
                return h.view()
        if method == "DELETE":
            return {"deleted": state.remove_host(uuid)}
        if method == "GET":
            h = state.host(uuid)
            with h.lock:
                return h.view()
    elif rest == ["restart-agent"] and method == "POST":
        state.restart_agent(uuid)
        return {"restarted": True}
    elif len(rest) == 3 and rest[0] == "vms" and rest[2] == "state" and method == "POST":
        new_state = _str(data, "state")
        if new_state is None:
            raise AdminError(BAD_REQUEST, "state is required")
        try:
            sent = state.set_vm_state(uuid, rest[1], new_state, _int(data, "cpuNum") or 1,
                                      _int(data, "memory", 0) or 0)
        except LookupError as exc:
            raise AdminError(NOT_FOUND, str(exc)) from None
        return {"eventSent": sent}
    raise AdminError(NOT_FOUND, f"no admin route {method} /simulator/hosts/{'/'.join(parts)}")


def _storage(state: SimState, kind: str, method: str, parts: list[str], data: dict[str, Any]) -> Any:
    primary = kind == "primary-storage"
    registry = state.primary_storages if primary else state.backup_storages
    if not parts:
        if method == "GET":
            return {"count": len(registry)}
        raise AdminError(METHOD_NOT_ALLOWED, f"{method} is not allowed on /simulator/{kind}")
    if len(parts) != 1:
        raise AdminError(NOT_FOUND, f"no admin route {method} /simulator/{kind}/{'/'.join(parts)}")
    uuid = parts[0]
    if method == "PUT":
        total, available = _capacities(data)
        put = state.put_primary_storage if primary else state.put_backup_storage
        obj = put(uuid, total, available)
    elif method == "DELETE":
        remove = state.remove_primary_storage if primary else state.remove_backup_storage
        return {"deleted": remove(uuid)}
    elif method == "GET":
        obj = state.primary_storage(uuid) if primary else state.backup_storage(uuid)
    else:
        raise AdminError(METHOD_NOT_ALLOWED, f"{method} is not allowed on /simulator/{kind}/{uuid}")
    with obj.lock:
        return obj.view()


def _faults(state: SimState, method: str, parts: list[str], data: dict[str, Any]) -> Any:
    if not parts:
        if method == "POST":
            try:
                f = state.faults.add(data.get("path"), data.get("target"), data.get("mode", "fail"),
                                     data.get("count", 1), data.get("delay"), data.get("message"))
            except ValueError as exc:
                raise AdminError(BAD_REQUEST, str(exc)) from None
            return {"id": f.id}
        if method == "GET":
            return {"faults": state.faults.list()}
        if method == "DELETE":
            return {"deleted": state.faults.clear()}
    elif len(parts) == 1 and method == "DELETE":
        if not state.faults.remove(parts[0]):
            raise AdminError(NOT_FOUND, f"no fault {parts[0]}")
        return {"deleted": 1}
    raise AdminError(NOT_FOUND, f"no admin route {method} /simulator/faults/{'/'.join(parts)}")


def handle_admin(state: SimState, method: str, path: str, body: bytes) -> tuple[str, bytes, str]:
    """Serve one admin request for `path` (starting with /simulator/)."""
    parts = [x for x in path.split("/")[2:] if x]
    try:
        data = _body(body)
        section, rest = (parts[0], parts[1:]) if parts else ("", [])
        if section == "hosts":
            result = _hosts(state, method, rest, data)
        elif section in ("primary-storage", "backup-storage"):
            result = _storage(state, section, method, rest, data)
        elif section == "faults":
            result = _faults(state, method, rest, data)
        elif section == "stats" and not rest and method == "GET":
            result = state.stats()
        else:
            raise AdminError(NOT_FOUND, f"no admin route {method} {path}")
    except AdminError as exc:
        return exc.status, json.dumps({"error": str(exc)}).encode(), JSON_TYPE
    except SimError as exc:  # an unknown host or storage
        return NOT_FOUND, json.dumps({"error": str(exc)}).encode(), JSON_TYPE
    except ValueError as exc:
        return BAD_REQUEST, json.dumps({"error": str(exc)}).encode(), JSON_TYPE
    return OK, json.dumps(result).encode(), JSON_TYPE
