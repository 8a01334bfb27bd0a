"""The garbage collector: agent cleanups that failed, recorded and retried until the agent
succeeds (a volume a rolled-back VM creation could not delete, a VM it could not destroy, an image
a backup storage kept). QueryGCJob is derived; TriggerGCJob, DeleteGCJob.

Invariants:
- A cleanup whose agent call fails is recorded (`cleanup`, `record`) before, or in the same
  transaction as, the MN forgets the resource: nothing is forgotten while a storage or host still
  holds it without a job that will remove it. One open (Idle or Processing) job per resource and
  command: recording it again (a rollback run twice) only notes the new error.
- A job runs only while claimed: a compare-and-swap from Idle (or from Processing whose lease
  expired: its MN died) to Processing sets managementNodeUuid and leaseExpiry, so two MN
  processes never run one job at once; only the claimer ends the run (Done, or Idle again).
- The n-th failed attempt puts the next run min(gc.retryInterval * 2**(n-1), gc.maxRetryInterval)
  seconds later; the periodic scan (every gc.interval seconds, in the first process of each MN)
  runs due jobs; TriggerGCJob runs one now.
- The command goes to its target's current agent address (resolved at each run). A job whose
  target is gone (the storage or host was deleted, and what it held with it) is Done.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from kvmagent.protocol import to_wire
from mn.api.registry import Msg, apis, key_of
from mn.background import periodic
from mn.context import ApiContext, Services
from mn.db.base import utcnow
from mn.errors import ApiError, operr
from mn.globalconfig import define
from mn.models import BackupStorage, GarbageCollector, Host, Image, PrimaryStorage, VmInstance, Volume
from mn.services.common import get_or_404

log = logging.getLogger(__name__)

IDLE, PROCESSING, DONE = "Idle", "Processing", "Done"
_positive = lambda v: v > 0  # noqa: E731
GC_INTERVAL = define("gc", "interval", 60, "seconds between two scans of the garbage collector for due jobs",
                     int, _positive)
GC_RETRY = define("gc", "retryInterval", 60,
                  "seconds before a failed garbage-collector job runs again; doubled after each failure", int,
                  _positive)
GC_MAX_RETRY = define("gc", "maxRetryInterval", 3600,
                      "the longest wait between two runs of a failing garbage-collector job (seconds)", int,
                      _positive)
SCAN_BATCH = 100

# Target kind -> the agent address of the target now (None: the target is gone).
Resolver = Callable[[Session, dict[str, Any]], str | None]


def _primary_storage(s: Session, t: dict[str, Any]) -> str | None:
    ps = s.get(PrimaryStorage, t["uuid"])
    if ps is None:
        return None
    if ps.agentUrl:
        return ps.agentUrl
    host = s.get(Host, t["hostUuid"]) if t.get("hostUuid") else None  # local storage: the host's agent
    return host.agentUrl if host is not None else None


def _backup_storage(s: Session, t: dict[str, Any]) -> str | None:
    bs = s.get(BackupStorage, t["uuid"])
    return bs.agentUrl if bs is not None else None


def _host(s: Session, t: dict[str, Any]) -> str | None:
    host = s.get(Host, t["uuid"])
    return host.agentUrl if host is not None else None


TARGETS: dict[str, Resolver] = {"PrimaryStorage": _primary_storage, "BackupStorage": _backup_storage,
                                "Host": _host}

# Runner class -> why the job's resource is no longer garbage (None: it still is). A uuid given
# again (resourceUuid) must not lose its new resource to an old job.
Reused = Callable[[Session, str, dict[str, Any]], str | None]


def _volume_reused(s: Session, uuid: str, cmd: dict[str, Any]) -> str | None:
    vol = s.get(Volume, uuid)
    if vol is not None and vol.installPath == cmd.get("installPath"):
        return f"volume {uuid} exists again at {vol.installPath}"
    return None


def _vm_reused(s: Session, uuid: str, cmd: dict[str, Any]) -> str | None:
    return f"VM {uuid} exists again" if s.get(VmInstance, uuid) is not None else None


def _image_reused(s: Session, uuid: str, cmd: dict[str, Any]) -> str | None:
    return f"image {uuid} exists again" if s.get(Image, uuid) is not None else None


REUSED: dict[str, Reused] = {"DeleteVolumeCmd": _volume_reused, "DestroyVmCmd": _vm_reused,
                             "DeleteImageCmd": _image_reused}


def target(kind: str, uuid: str, host_uuid: str | None = None) -> dict[str, Any]:
    """Where a cleanup command goes: a primary storage (through `host_uuid` for local storage),
    a backup storage or a host."""
    if kind not in TARGETS:
        raise ValueError(f"unknown garbage-collector target kind {kind!r}")
    return {"kind": kind, "uuid": uuid, "hostUuid": host_uuid}


# ---- recording ----------------------------------------------------------------------------------

def record(s: Session, mn_uuid: str, name: str, where: dict[str, Any], cmd: Any, resource_uuid: str,
           error: str) -> str:
    """Record (in the caller's transaction) a job that sends `cmd` to `where` until it succeeds;
    the uuid of the job (an open job of the same resource and command is reused)."""
    runner = type(cmd).__name__
    open_job = s.scalar(select(GarbageCollector).where(
        GarbageCollector.resourceUuid == resource_uuid, GarbageCollector.runnerClass == runner,
        GarbageCollector.status != DONE).limit(1))
    if open_job is not None:
        open_job.lastError = error
        open_job.context = _context(json.loads(open_job.context), open_job.attempts, error, open_job.nextRunDate)
        return open_job.uuid
    now = utcnow()
    c = {"target": where, "path": cmd.PATH, "command": to_wire(cmd)}
    job = GarbageCollector(name=name[:255], runnerClass=runner, status=IDLE, managementNodeUuid=mn_uuid,
                           type="TimeBased", resourceUuid=resource_uuid, attempts=1, lastError=error,
                           nextRunDate=now, context=_context(c, 1, error, now))
    s.add(job)
    s.flush()
    log.warning("garbage collector: %s failed (%s); job %s retries it", name, error, job.uuid)
    return job.uuid


def _context(c: dict[str, Any], attempts: int, error: str | None, next_run: dt.datetime | None) -> str:
    """The inventory's `context`: what the job calls where, and how it went so far."""
    return json.dumps({"target": c["target"], "path": c["path"], "command": c["command"], "attempts": attempts,
                       "lastError": error, "nextRunDate": f"{next_run:%Y-%m-%d %H:%M:%S}" if next_run else None})


def cleanup(ctx: ApiContext, url: str, cmd: Any, where: dict[str, Any], name: str, resource_uuid: str,
            forget: Callable[[Session], None] | None = None) -> bool:
    """Send a cleanup command; when the agent fails, record a job that retries it. `forget`
    (dropping the MN's rows of the resource) runs in the transaction that records the job, or in
    one of its own when the command succeeded. True when the agent did the cleanup now."""
    try:
        ctx.agents.send(url, cmd)
        failed: str | None = None
    except ApiError as exc:
        failed = exc.details
    if failed is None and forget is None:
        return True
    with ctx.db.tx() as s:
        if failed is not None:
            record(s, ctx.svc.mn_uuid, name, where, cmd, resource_uuid, failed)
        if forget is not None:
            forget(s)
    return failed is None


# ---- running ------------------------------------------------------------------------------------

def _lease(svc: Services) -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(svc.agents, "timeout", 300.0)) + 60)


def _claimable(now: dt.datetime) -> Any:
    return or_(GarbageCollector.status == IDLE,
               and_(GarbageCollector.status == PROCESSING, GarbageCollector.leaseExpiry < now))


def claim(svc: Services, uuid: str) -> bool:
    """Compare-and-swap the job to Processing for this MN; False when another holds it or it is Done."""
    now = utcnow()
    with svc.db.tx() as s:
        res = s.execute(update(GarbageCollector).where(GarbageCollector.uuid == uuid, _claimable(now))
                        .values(status=PROCESSING, managementNodeUuid=svc.mn_uuid, leaseExpiry=now + _lease(svc),
                                lastOpDate=now).execution_options(synchronize_session=False))
        return res.rowcount == 1


def backoff(svc: Services, attempts: int) -> float:
    """Seconds until the next run after `attempts` failed attempts."""
    base, cap = svc.gconf.get(GC_RETRY), svc.gconf.get(GC_MAX_RETRY)
    return float(min(cap, base * 2 ** max(0, min(attempts - 1, 32))))


def _end(svc: Services, uuid: str, **values: Any) -> None:
    """End this MN's run of the job (only the claimer can)."""
    with svc.db.tx() as s:
        s.execute(update(GarbageCollector).where(GarbageCollector.uuid == uuid,
                                                 GarbageCollector.status == PROCESSING,
                                                 GarbageCollector.managementNodeUuid == svc.mn_uuid)
                  .values(leaseExpiry=None, lastOpDate=utcnow(), **values)
                  .execution_options(synchronize_session=False))


def run_job(svc: Services, uuid: str) -> str | None:
    """Claim and run one job; its status afterwards (None: not claimed, another MN runs it or it
    is Done)."""
    if not claim(svc, uuid):
        return None
    try:
        with svc.db.ro() as s:
            job = s.get(GarbageCollector, uuid)
            c = json.loads(job.context)
            attempts = job.attempts
            resolve = TARGETS.get(c["target"]["kind"])
            url = resolve(s, c["target"]) if resolve is not None else None
            reused = REUSED.get(job.runnerClass)
            why = reused(s, job.resourceUuid, c["command"]) if reused is not None and job.resourceUuid else None
        if why is None and url is None:
            why = f"{c['target']['kind']} {c['target']['uuid']} is gone, and what it held with it"
        if why is not None:
            error = f"nothing to collect: {why}"
            _end(svc, uuid, status=DONE, lastError=error, context=_context(c, attempts, error, None))
            return DONE
        svc.agents.call(url, c["path"], c["command"])
    except ApiError as exc:
        attempts += 1
        wait = backoff(svc, attempts)
        nxt = utcnow() + dt.timedelta(seconds=wait)
        _end(svc, uuid, status=IDLE, attempts=attempts, lastError=exc.details, nextRunDate=nxt,
             context=_context(c, attempts, exc.details, nxt))
        log.warning("garbage-collector job %s failed again (attempt %d): %s; next run in %.0f s", uuid, attempts,
                    exc.details, wait)
        return IDLE
    except BaseException:
        _end(svc, uuid, status=IDLE)  # unexpected: let go at once (the scan will try again)
        raise
    _end(svc, uuid, status=DONE, attempts=attempts + 1, lastError=None, context=_context(c, attempts + 1, None, None))
    log.info("garbage-collector job %s done", uuid)
    return DONE


def due(svc: Services, limit: int = SCAN_BATCH) -> list[str]:
    now = utcnow()
    with svc.db.ro() as s:
        return list(s.scalars(select(GarbageCollector.uuid).where(
            or_(and_(GarbageCollector.status == IDLE, GarbageCollector.nextRunDate <= now),
                and_(GarbageCollector.status == PROCESSING, GarbageCollector.leaseExpiry < now)))
            .order_by(GarbageCollector.nextRunDate, GarbageCollector.uuid).limit(limit)))


@periodic("garbage-collector", lambda svc: float(svc.gconf.get(GC_INTERVAL)), first=10.0)
def collect(svc: Services) -> None:
    """Run the due jobs, each in the job runner under its own sync key."""
    for uuid in due(svc):
        svc.job_runner().submit_internal(f"gc-{uuid}", _work(svc, uuid))


def _work(svc: Services, uuid: str) -> Callable[[], dict]:
    def work() -> dict:
        run_job(svc, uuid)
        return {}

    return work


# ---- APIs ---------------------------------------------------------------------------------------

def _check(ctx: ApiContext, msg: Msg) -> None:
    with ctx.db.ro() as s:
        get_or_404(s, GarbageCollector, msg.uuid)


@apis.handler("TriggerGCJob", check=_check, sync_key=key_of("uuid", "gc"))
def trigger_gc_job(ctx: ApiContext, msg: Msg) -> dict:
    """Run the job now, whatever its next run date; its failure is the API's error."""
    with ctx.db.ro() as s:
        job = get_or_404(s, GarbageCollector, msg.uuid)
        status, owner = job.status, job.managementNodeUuid
    if status == DONE:
        raise operr(f"garbage-collector job {msg.uuid} is Done; there is nothing to run")
    if run_job(ctx.svc, msg.uuid) is None:
        raise operr(f"garbage-collector job {msg.uuid} is being run by management node {owner}")
    with ctx.db.ro() as s:
        job = get_or_404(s, GarbageCollector, msg.uuid)
        if job.status != DONE:
            raise operr(f"garbage-collector job {msg.uuid} ({job.name}) failed again: {job.lastError}; "
                        f"it runs again at {job.nextRunDate:%Y-%m-%d %H:%M:%S} UTC")
    return {}


@apis.handler("DeleteGCJob", check=_check, sync_key=key_of("uuid", "gc"))
def delete_gc_job(ctx: ApiContext, msg: Msg) -> dict:
    """Forget a job (what it would have cleaned stays where it is); refused while it runs."""
    now = utcnow()
    with ctx.db.tx() as s:
        res = s.execute(delete(GarbageCollector).where(
            GarbageCollector.uuid == msg.uuid,
            or_(GarbageCollector.status != PROCESSING, GarbageCollector.leaseExpiry < now))
            .execution_options(synchronize_session=False))
        if res.rowcount != 1:
            raise operr(f"garbage-collector job {msg.uuid} is running; delete it once it has ended")
    return {}
