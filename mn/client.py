"""A client of the MN's public API (both transports), used by zstack-cli, tests and benchmarks.

It speaks only HTTP: short API names are mapped to message classes with the catalogue, async
calls are polled until done, and failures raise ClientError carrying ZStack's error. It imports
nothing of the MN but the catalogue and the condition parser (urllib3 and the stdlib otherwise).
The SDK's guide: docs/sdk.md.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import urllib3

from mn.catalogue.catalog import load_catalog
from mn.catalogue.conditions import parse_condition

LONG_POLL = "20"
"""Seconds the MN may hold a result request while the job runs (the MN's `wait` parameter)."""


class ClientError(Exception):
    """An API the MN answered with a failure.

    `api` is the API called, `error` ZStack's error dict (`code`, `description`, `details`, maybe
    `cause`: mn.errors.ApiError.to_dict's shape), `status` the HTTP status when the raiser had one
    (ZStackClient's RPC calls leave it None).
    """

    def __init__(self, api: str, error: dict[str, Any], status: int | None = None):
        self.api, self.error, self.status = api, error, status
        super().__init__(f"{api} failed: {error.get('code')} {error.get('details') or error.get('description')}")

    @property
    def code(self) -> str | None:
        """ZStack's error code (SYS.1007, ID.1001, ...)."""
        return self.error.get("code")


class ZStackClient:
    """A client of one MN at `base_url`, over RPC (call, submit, wait, query) or REST (rest).

    `session` is sent with every call (login sets it). `timeout` bounds one HTTP request and the
    wait for one job; `poll_interval` is the first pause between result polls (it grows to
    0.5 s); `maxsize` connections are kept alive, so threads may share one client. Network
    failures surface as urllib3.exceptions.HTTPError: nothing is retried.
    """

    def __init__(self, base_url: str, session_uuid: str | None = None, timeout: float = 600.0,
                 poll_interval: float = 0.02, maxsize: int = 16) -> None:
        self.base = base_url.rstrip("/")
        self.session = session_uuid
        self.timeout = timeout
        self.poll = poll_interval
        self.http = urllib3.PoolManager(maxsize=maxsize, retries=False)
        self.catalog = load_catalog()

    # ---- RPC: POST /zstack/api -----------------------------------------------------------------

    def _post_rpc(self, message: str, params: dict[str, Any]) -> dict[str, Any]:
        body = dict(params)
        if self.session:
            body["session"] = {"uuid": self.session}
        r = self.http.request("POST", f"{self.base}/zstack/api", body=json.dumps({message: body}).encode(),
                              headers={"Content-Type": "application/json"}, timeout=self.timeout)
        return json.loads(r.data)

    def submit(self, api: str, **params: Any) -> dict[str, Any]:
        """Send one RPC call and return the raw reply: state Done with the result as JSON text in
        `result`, or Processing with the job's `uuid`. It never raises for a failed API (wait does)."""
        spec = self.catalog.api(api)
        message = spec.message if spec else api
        return self._post_rpc(message, params)

    def wait(self, reply: dict[str, Any], api: str = "") -> dict[str, Any]:
        """Poll the job of `reply` (from submit) until it is done; its reply's fields. ClientError
        when the API failed, TimeoutError after `timeout`; `api` names the call in both."""
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        while reply.get("state") == "Processing":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{api} job {reply['uuid']} did not finish in {self.timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            r = self.http.request("GET", f"{self.base}/zstack/api/result/{reply['uuid']}",
                                  fields={"wait": LONG_POLL}, timeout=self.timeout)
            reply = json.loads(r.data)
        (_, result), = json.loads(reply["result"]).items()
        if not result.get("success"):
            raise ClientError(api, result.get("error") or {})
        return result

    def call(self, api: str, **params: Any) -> dict[str, Any]:
        """Call an API by short name (CreateZone) or message class and wait for it; the reply's
        fields (`success` included). ClientError when it failed."""
        return self.wait(self.submit(api, **params), api)

    def login(self, account: str = "admin", password: str = "password") -> str:
        """LogInByAccount (the password sent as SHA-512 hex); keeps and returns the session uuid."""
        reply = self.call("LogInByAccount", accountName=account,
                          password=hashlib.sha512(password.encode()).hexdigest())
        self.session = reply["inventory"]["uuid"]
        return self.session

    def query(self, api: str, *conditions: str | dict[str, Any], **params: Any) -> list[dict[str, Any]]:
        """A Query* API's inventories; conditions as dicts or CLI-style strings ("name=x",
        "cpuNum>2"; a string without an operator raises mn.errors.ApiError before sending). For
        count=true, which answers no inventories, use call."""
        conds = [c if isinstance(c, dict) else parse_condition(c) for c in conditions]
        return self.call(api, conditions=conds, **params)["inventories"]

    # ---- REST: /zstack/v1 ----------------------------------------------------------------------

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None,
             fields: dict[str, Any] | list[tuple[str, str]] | None = None, wait: bool = True,
             ) -> tuple[int, dict[str, Any]]:
        """One REST call under /zstack/v1; with wait, a 202 is polled until the job ends. Returns
        (HTTP status, decoded body); a failed API is a status and the body's `error`, not raised."""
        headers = {"Content-Type": "application/json"}
        if self.session:
            headers["Authorization"] = f"OAuth {self.session}"
        url = f"{self.base}/zstack/v1{path}"
        data = json.dumps(body).encode() if body is not None else None
        r = self.http.request(method, url, body=data, fields=fields if method in ("GET", "DELETE") else None,
                              headers=headers, timeout=self.timeout)
        status, out = r.status, (json.loads(r.data) if r.data else {})
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        while wait and status == 202:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path} did not finish in {self.timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            r = self.http.request("GET", out["location"], fields={"wait": LONG_POLL}, headers=headers,
                                  timeout=self.timeout)
            status, out = r.status, (json.loads(r.data) if r.data else {})
        return status, out
