"""Errors in ZStack's shape: {"code", "description", "details"}.

Every failure that reaches a client is an ApiError; anything else is wrapped as SYS.1000.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# ZStack's SysErrors codes.
INTERNAL = "SYS.1000"
TIMEOUT = "SYS.1001"
CREATE_RESOURCE_ERROR = "SYS.1002"
RESOURCE_NOT_FOUND = "SYS.1003"
DELETE_RESOURCE_ERROR = "SYS.1004"
CHANGE_RESOURCE_STATE_ERROR = "SYS.1005"
OPERATION_ERROR = "SYS.1006"
INVALID_ARGUMENT = "SYS.1007"
UNKNOWN_MESSAGE = "SYS.1008"
UNIMPLEMENTED = "SYS.1014"
# Identity.
AUTHENTICATION_ERROR = "ID.1000"
INVALID_SESSION = "ID.1001"
PERMISSION_DENIED = "ID.1002"
QUOTA_EXCEEDING = "ID.1003"
# Allocation.
NO_AVAILABLE_HOST = "HOST_ALLOCATION.1001"
NO_AVAILABLE_PRIMARY_STORAGE = "PRIMARY_STORAGE_ALLOCATION.1001"
IP_ALLOCATION_FAILURE = "L3.1001"
# Agent failures.
AGENT_ERROR = "HOST.1001"
AGENT_UNREACHABLE = "HOST.1002"
VM_STATE_ERROR = "VM.1001"

_DESCRIPTIONS = {
    INTERNAL: "An internal error happened in the management node",
    TIMEOUT: "An operation timed out",
    CREATE_RESOURCE_ERROR: "Failed to create a resource",
    RESOURCE_NOT_FOUND: "Unable to find the resource",
    DELETE_RESOURCE_ERROR: "Failed to delete a resource",
    CHANGE_RESOURCE_STATE_ERROR: "Failed to change the state of a resource",
    OPERATION_ERROR: "The operation failed",
    INVALID_ARGUMENT: "One or more API arguments are invalid",
    UNKNOWN_MESSAGE: "The API is unknown to this management node",
    UNIMPLEMENTED: "The API is not implemented by this management node",
    AUTHENTICATION_ERROR: "Authentication failed",
    INVALID_SESSION: "The session is invalid or expired",
    PERMISSION_DENIED: "Permission denied",
    QUOTA_EXCEEDING: "Quota exceeding",
    NO_AVAILABLE_HOST: "No host can satisfy the request",
    NO_AVAILABLE_PRIMARY_STORAGE: "No primary storage can satisfy the request",
    IP_ALLOCATION_FAILURE: "Unable to allocate an IP address",
    AGENT_ERROR: "The agent failed the command",
    AGENT_UNREACHABLE: "The agent cannot be reached",
    VM_STATE_ERROR: "The VM is in a state that does not allow the operation",
}


class ApiError(Exception):
    """A failure with a ZStack error code; `details` says exactly what went wrong."""

    def __init__(self, code: str, details: str, description: str | None = None,
                 cause: ApiError | None = None, http_status: int | None = None):
        super().__init__(details)
        self.code = code
        self.details = details
        self.description = description or _DESCRIPTIONS.get(code, "The operation failed")
        self.cause = cause
        self.http_status = http_status

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "description": self.description, "details": self.details}
        if self.cause is not None:
            out["cause"] = self.cause.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiError:
        cause = cls.from_dict(d["cause"]) if d.get("cause") else None
        return cls(d.get("code", INTERNAL), d.get("details", ""), d.get("description"), cause)


def invalid(details: str) -> ApiError:
    return ApiError(INVALID_ARGUMENT, details, http_status=400)


def not_found(resource: str, uuid: str) -> ApiError:
    return ApiError(RESOURCE_NOT_FOUND, f"{resource}[uuid:{uuid}] is not found", http_status=404)


def operr(details: str) -> ApiError:
    return ApiError(OPERATION_ERROR, details)


def wrap(exc: BaseException) -> ApiError:
    """Return exc as an ApiError, wrapping unexpected exceptions as SYS.1000. The wrapped
    exception's text (SQL, paths, values) is not in the error, which clients see: it is logged
    here, with its traceback, once per wrapping."""
    if isinstance(exc, ApiError):
        return exc
    log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return ApiError(INTERNAL, f"an internal error ({type(exc).__name__}) happened in the management node; "
                              "its log has the details")
