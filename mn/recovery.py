"""Crash recovery: run once at MN start, before any request is accepted.

For every job this MN left Processing: if it journaled a flow, rebuild the flow by name and roll
back its completed steps; then mark the job Failed. Finally each resource family's reconcile
hook puts anything still in a transitional state back into a stable one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from sqlalchemy import select

from mn.context import ApiContext, Services
from mn.errors import OPERATION_ERROR, ApiError
from mn.flow import FLOWS
from mn.models import ApiJob

log = logging.getLogger(__name__)

# Reconcile hooks by name, registered by the service modules: fn(services) -> None.
RECONCILERS: dict[str, Callable[[Services], None]] = {}


def reconciler(name: str) -> Callable[[Callable[[Services], None]], Callable[[Services], None]]:
    def deco(fn: Callable[[Services], None]) -> Callable[[Services], None]:
        RECONCILERS[name] = fn
        return fn

    return deco


def recover(svc: Services, owners: list[str] | None = None, reconcile: bool = True) -> None:
    """Roll back and fail the Processing jobs of `owners` (default: this MN), then, with
    `reconcile`, run every reconcile hook (only while no other process of this MN runs work)."""
    runner = svc.job_runner()
    with svc.db.ro() as s:
        jobs = s.scalars(select(ApiJob).where(ApiJob.state == "Processing",
                                              ApiJob.managementNodeUuid.in_(owners or [svc.mn_uuid]))).all()
    for job in jobs:
        if job.flowState:
            st = json.loads(job.flowState)
            builder = FLOWS.get(st["flow"])
            if builder is None:
                log.error("job %s journaled unknown flow %s", job.uuid, st["flow"])
            else:
                log.warning("rolling back %s steps of flow %s of job %s", len(st["done"]), st["flow"], job.uuid)
                builder().rollback_completed(ApiContext(svc, job_uuid=None), st["data"], st["done"])
        err = ApiError(OPERATION_ERROR, f"the management node restarted while {job.apiName} was running; "
                                        "everything it had done was rolled back")
        runner.finish(job.uuid, "Failed", {"success": False, "error": err.to_dict()})
    if not reconcile:
        return
    for name, fn in RECONCILERS.items():
        try:
            fn(svc)
        except Exception:
            log.exception("reconcile %s failed", name)
