"""The MN's side of the simulator's admin API: declaring simulated hosts and storages.

Only the simulator plugins (AddSimulatorHost/PrimaryStorage/BackupStorage) use it; everything
else reaches hosts and storages through the agent protocol.
"""

from __future__ import annotations

from typing import Any

from mn.context import ApiContext
from mn.errors import AGENT_ERROR, ApiError, operr


def require_simulator_url(ctx: ApiContext, what: str) -> str:
    if not ctx.config.simulator_url:
        raise operr(f"this management node has no simulator configured (simulator_url is empty), "
                    f"so it cannot add {what}")
    return ctx.config.simulator_url.rstrip("/")


def simulator_admin(ctx: ApiContext, method: str, path: str, body: dict[str, Any] | None = None,
                    missing_ok: bool = False, what: str = "simulated resources") -> None:
    """One call to `<simulator_url>/simulator<path>`; 404 is fine with missing_ok."""
    url = f"{require_simulator_url(ctx, what)}/simulator{path}"
    status, data = ctx.agents.request(method, url, body)
    if status == 404 and missing_ok:
        return
    if status >= 400:
        raise ApiError(AGENT_ERROR, f"the simulator failed {method} {url}: HTTP {status} {data[:300]!r}")
