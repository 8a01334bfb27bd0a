"""The MN's client of the agent protocol (kvmagent/protocol.py), over pooled HTTP.

Every reply has `success` and, on failure, `error`; a failure, an unreachable agent and a timeout
each become a clear ApiError naming the agent, the command and the agent's own message.

Long commands (kvmagent.protocol.ASYNC_PATHS) use the async form when the client has a
`callback_url`: the request carries the headers `taskuuid` and `callbackurl`, the agent answers at
once with `{"async": true}`, and its real reply arrives later at the MN's POST /agent/callback,
which hands it to complete(). With `reply_within` > 0 the request also carries the header
`replywithin`: an agent whose command ends that soon replies inline (no callback, two HTTP requests
saved). An agent that answers such a request synchronously is taken at its word. A reply that never comes is a timeout after `timeout` seconds, as for a synchronous call.

With `keys` (kvmagent.auth.DerivedKeys), every request is signed with the key of the agent it goes
to (kvmagent/auth.py; docs/security.md), and an async reply is accepted only when signed with the
key of the agent the task was sent to (`callback_key`). Without keys requests go unsigned, which
agents refuse: only tests of the transport itself do that.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import urllib3

from kvmagent import auth
from kvmagent.protocol import CALLBACK_HEADER, REPLY_WITHIN_HEADER, TASK_HEADER
from mn.errors import AGENT_ERROR, AGENT_UNREACHABLE, TIMEOUT, ApiError

log = logging.getLogger(__name__)


EVENTS_PATH = "/agent/events"
"""Where agents POST events they did not cause (their `sendCommandUrl`, on the MN)."""
CALLBACK_PATH = "/agent/callback"
"""Where agents POST the replies of async-form commands (the `callbackurl` header, on the MN)."""


class _Waiter:
    __slots__ = ("base_url", "done", "reply")

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url  # the agent the task went to: only its key may sign the reply
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None


class AgentClient:
    def __init__(self, timeout: float = 300.0, maxsize: int = 64,
                 callback_url: Callable[[], str | None] | None = None, reply_within: float = 0.0,
                 keys: auth.DerivedKeys | None = None):
        """`callback_url` says where async replies go (None at a call: use the synchronous form);
        `reply_within` how long agents may hold an async command's reply to send it inline;
        `keys` the agents' keys (None: requests go unsigned)."""
        from kvmagent.protocol import ASYNC_PATHS

        self.timeout = timeout
        self._async_headers = {REPLY_WITHIN_HEADER: f"{reply_within:g}"} if reply_within > 0 else {}
        self._callback_url = callback_url or (lambda: None)
        self._async_paths = ASYNC_PATHS
        self._http = urllib3.PoolManager(maxsize=maxsize, block=False, retries=False)
        self._waiters: dict[str, _Waiter] = {}
        self._lock = threading.Lock()
        self.keys = keys

    def key_for(self, agent_url: str) -> bytes | None:
        """The key of the agent at `agent_url` (None without keys)."""
        return self.keys.key_for(agent_url) if self.keys is not None else None

    def callback_key(self, task_uuid: str) -> bytes | None:
        """The key that must sign the async reply of `task_uuid`: its agent's (None: no call waits)."""
        with self._lock:
            w = self._waiters.get(task_uuid)
        return self.key_for(w.base_url) if w is not None else None

    def complete(self, task_uuid: str, reply: dict[str, Any]) -> bool:
        """Deliver an async reply; False when no call waits for this task (late or unknown)."""
        with self._lock:
            w = self._waiters.get(task_uuid)
        if w is None:
            return False
        w.reply = reply
        w.done.set()
        return True

    def abort_waiting(self, reason: str) -> int:
        """Fail every call still waiting for an async reply; returns how many there were."""
        with self._lock:
            waiting = list(self._waiters.values())
        for w in waiting:
            w.reply = {"success": False, "error": reason}
            w.done.set()
        return len(waiting)

    def call(self, base_url: str, path: str, cmd: dict[str, Any] | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        if path in self._async_paths:
            callback = self._callback_url()
            if callback:
                return self._call_async(base_url, path, cmd, timeout or self.timeout, callback)
        r = self._post(base_url, path, cmd, timeout or self.timeout, {})
        return self._check(base_url, path, r.status, r.data)

    def _call_async(self, base_url: str, path: str, cmd: dict[str, Any] | None,
                    timeout: float, callback: str) -> dict[str, Any]:
        task = uuid.uuid4().hex
        w = _Waiter(base_url)
        with self._lock:
            self._waiters[task] = w
        try:
            r = self._post(base_url, path, cmd, timeout,
                           {TASK_HEADER: task, CALLBACK_HEADER: callback, **self._async_headers})
            first = self._check(base_url, path, r.status, r.data)
            if not first.get("async"):
                return first
            if not w.done.wait(timeout):
                raise ApiError(TIMEOUT, f"agent command {path} at {base_url} timed out: no reply "
                                        f"within {timeout:.0f}s (task {task})")
            return self._check(base_url, path, 200, json.dumps(w.reply).encode())
        finally:
            with self._lock:
                self._waiters.pop(task, None)

    def _post(self, base_url: str, path: str, cmd: dict[str, Any] | None, timeout: float,
              headers: dict[str, str]) -> Any:
        url = base_url.rstrip("/") + path
        body = json.dumps(cmd or {}).encode()
        key = self.key_for(base_url)
        if key is not None:
            headers = {**headers, **auth.sign(key, "POST", urlsplit(url).path, body, headers)}
        try:
            return self._http.request("POST", url, body=body,
                                      headers={"Content-Type": "application/json", **headers},
                                      timeout=urllib3.Timeout(connect=10, read=timeout))
        except urllib3.exceptions.NewConnectionError as exc:  # refused: a subclass of the timeout error
            raise ApiError(AGENT_UNREACHABLE, f"unable to reach the agent at {base_url} for {path}: {exc}",
                           ) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise ApiError(TIMEOUT, f"agent command {path} at {base_url} timed out: {exc}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(AGENT_UNREACHABLE, f"unable to reach the agent at {base_url} for {path}: {exc}",
                           ) from None

    @staticmethod
    def _check(base_url: str, path: str, status: int, data: bytes) -> dict[str, Any]:
        try:
            reply = json.loads(data or b"{}")
        except ValueError:
            raise ApiError(AGENT_ERROR, f"agent command {path} at {base_url} returned HTTP {status} "
                                        f"with a body that is not JSON: {data[:200]!r}") from None
        if not isinstance(reply, dict):
            raise ApiError(AGENT_ERROR, f"agent command {path} at {base_url} returned {reply!r}")
        if status >= 400 or not reply.get("success", False):
            msg = reply.get("error") or f"HTTP {status}"
            raise ApiError(AGENT_ERROR, f"agent command {path} at {base_url} failed: {msg}")
        return reply

    def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A plain JSON request (for non-protocol endpoints such as the simulator's admin API),
        signed with the key of the URL's origin; unreachable → AGENT_UNREACHABLE."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        u = urlsplit(url)
        key = self.key_for(f"{u.scheme}://{u.netloc}")
        if key is not None:
            path = u.path + (f"?{u.query}" if u.query else "")
            headers.update(auth.sign(key, method, path, data or b""))
        try:
            r = self._http.request(method, url, body=data, headers=headers,
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
