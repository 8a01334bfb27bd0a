"""The MN's client of the agent protocol (kvmagent/protocol.py), over pooled HTTP.

Every reply has `success` and, on failure, `error`; a failure, an unreachable agent and a timeout
each become a clear ApiError naming the agent, the command and the agent's own message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import urllib3

from mn.errors import AGENT_ERROR, AGENT_UNREACHABLE, TIMEOUT, ApiError

log = logging.getLogger(__name__)


class AgentClient:
    def __init__(self, timeout: float = 300.0, maxsize: int = 64):
        self.timeout = timeout
        self._http = urllib3.PoolManager(maxsize=maxsize, block=False, retries=False)

    def call(self, base_url: str, path: str, cmd: dict[str, Any] | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        url = base_url.rstrip("/") + path
        body = json.dumps(cmd or {}).encode()
        try:
            r = self._http.request("POST", url, body=body, headers={"Content-Type": "application/json"},
                                   timeout=urllib3.Timeout(connect=10, read=timeout or self.timeout))
        except urllib3.exceptions.NewConnectionError as exc:  # refused: a subclass of the timeout error
            raise ApiError(AGENT_UNREACHABLE, f"unable to reach the agent at {base_url} for {path}: {exc}",
                           ) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise ApiError(TIMEOUT, f"agent command {path} at {base_url} timed out: {exc}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(AGENT_UNREACHABLE, f"unable to reach the agent at {base_url} for {path}: {exc}",
                           ) from None
        try:
            reply = json.loads(r.data or b"{}")
        except ValueError:
            raise ApiError(AGENT_ERROR, f"agent command {path} at {base_url} returned HTTP {r.status} "
                                        f"with a body that is not JSON: {r.data[:200]!r}") from None
        if r.status >= 400 or not reply.get("success", False):
            msg = reply.get("error") or f"HTTP {r.status}"
            raise ApiError(AGENT_ERROR, f"agent command {path} at {base_url} failed: {msg}")
        return reply

    def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A plain JSON request (for non-protocol endpoints); unreachable → AGENT_UNREACHABLE."""
        try:
            r = self._http.request(method, url, body=json.dumps(body).encode() if body is not None else None,
                                   headers={"Content-Type": "application/json"},
                                   timeout=urllib3.Timeout(connect=10, read=self.timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(AGENT_UNREACHABLE, f"unable to reach {method} {url}: {exc}") from None
        return r.status, r.data

    def send(self, base_url: str, cmd: Any, reply_cls: type | None = None,
             timeout: float | None = None) -> Any:
        """Send a typed protocol command; return the typed reply (or the raw dict)."""
        from kvmagent.protocol import from_wire, to_wire

        reply = self.call(base_url, cmd.PATH, to_wire(cmd), timeout)
        return from_wire(reply_cls, reply) if reply_cls is not None else reply
