"""The MN's side of the simulator's admin API: declaring simulated hosts and storages.

Only this plugin's APIs (AddSimulatorHost/PrimaryStorage/BackupStorage) use it, and its hooks
that make the simulator forget a simulated host or storage deleted here; everything else reaches
hosts and storages through the agent protocol.
"""

from __future__ import annotations

import logging
from typing import Any

from mn.context import ApiContext
from mn.errors import AGENT_ERROR, ApiError, operr

log = logging.getLogger(__name__)


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


def undo_declare(ctx: ApiContext, kind: str, uuid: str) -> None:
    """Best effort: forget a simulated storage (kind "primary-storage" or "backup-storage")."""
    try:
        simulator_admin(ctx, "DELETE", f"/{kind}/{uuid}", missing_ok=True)
    except ApiError as exc:
        log.warning("the simulator may still hold %s %s: %s", kind, uuid, exc.details)


def simulated(ctx: ApiContext, kind: str, agent_url: str | None) -> bool:
    """Whether an agent URL is this MN's simulator's (kind "hosts", "primary-storage", "backup-storage")."""
    base = (ctx.config.simulator_url or "").rstrip("/")
    return bool(base) and (agent_url or "").startswith(f"{base}/{kind}/")
