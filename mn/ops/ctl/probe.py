"""Asking over the network: whether a port is taken, and a running MN's /health and version.

Requests go straight to the MN, never through an HTTP proxy from the environment.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port (an IPv6 host may be in brackets)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(0.5)
        return s.connect_ex((host.strip("[]"), port)) == 0


def get_health(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET <url>/health; raises OSError/ValueError when the MN does not answer it well."""
    with _NO_PROXY.open(f"{url}/health", timeout=timeout) as r:
        body = json.loads(r.read())
    if not isinstance(body, dict) or body.get("status") != "ok":
        raise ValueError(f"unexpected /health answer: {body!r}")
    return body


def get_version(url: str) -> str | None:
    """The MN's version via the public API (GetVersion), or None when it cannot tell."""
    try:
        from mn.client import ZStackClient

        reply = ZStackClient(url, timeout=5.0, maxsize=1).call("GetVersion")
        return str(reply.get("version")) if reply.get("version") else None
    except Exception:  # noqa: BLE001 (status must report, not fail, when the API cannot)
        return None
