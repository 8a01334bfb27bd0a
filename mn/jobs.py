"""Durable API jobs and their executor.

An async API call becomes an ApiJob row (state Processing) before it is queued, and the row gets
its final state and result when it ends. Jobs with the same sync key run one at a time in
submission order (operations on one VM in order, on different VMs in parallel); a key's queue
lives in this MN process, which owns the jobs it accepted.

The runner also remembers, in memory, the jobs it accepted and has not finished and, for
RESULT_TTL seconds (at most RESULT_CACHE of them), the outcome of those it finished: `peek()`
answers result requests for this MN's jobs without reading the database. The row stays the
truth (another MN, or this one after a restart, reads it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, update

from mn.db.base import utcnow
from mn.db.engine import Database
from mn.errors import wrap
from mn.models import ApiJob

log = logging.getLogger(__name__)

Work = Callable[[], dict[str, Any]]
# Built once: these run for every API job (Core statements on the connection, no ORM bookkeeping).
_INSERT_JOB = insert(ApiJob)
_FINISH_JOB = (update(ApiJob).where(ApiJob.uuid == bindparam("job"))
               .values(state=bindparam("end_state"), result=bindparam("end_result"),
                       finishedDate=bindparam("end_date"), flowState=None))
RESULT_TTL = 60.0
RESULT_CACHE = 5000


class JobView(NamedTuple):
    """A job as its runner knows it."""

    api_name: str
    state: str
    reply: str | None  # the result's JSON text, as the job row holds it
    created: dt.datetime
    finished: dt.datetime | None


class JobRunner:
    def __init__(self, db: Database, mn_uuid: str, workers: int = 32):
        self.db = db
        self.mn_uuid = mn_uuid
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[str, Work]]] = {}
        self._done = threading.Condition(self._lock)
        self._inflight = 0
        self._finished: dict[str, tuple[threading.Event, int]] = {}  # job -> (event, waiter count)
        self._accepted: dict[str, tuple[str, dt.datetime]] = {}  # unfinished job -> (apiName, createDate)
        self._outcomes: OrderedDict[str, tuple[float, JobView]] = OrderedDict()  # job -> (expiry, view)
        self.on_finish: Callable[[str, str, dict], None] | None = None

    def create(self, job_uuid: str, api_name: str, request: dict, sync_key: str | None) -> None:
        row = {"uuid": job_uuid, "apiName": api_name, "request": json.dumps(request), "syncKey": sync_key,
               "managementNodeUuid": self.mn_uuid, "state": "Processing", "createDate": utcnow()}
        self.db.grouped_conn(lambda c: c.execute(_INSERT_JOB, row), one_statement=True)
        with self._lock:
            self._accepted[job_uuid] = (api_name, row["createDate"])

    def peek(self, job_uuid: str) -> JobView | None:
        """The job as this runner knows it without the database: running, or finished less than
        RESULT_TTL seconds ago; None when it does not know (ask the database)."""
        with self._lock:
            acc = self._accepted.get(job_uuid)
            if acc is not None:
                return JobView(acc[0], "Processing", None, acc[1], None)
            hit = self._outcomes.get(job_uuid)
            return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _remember(self, job_uuid: str, state: str, result: str, finished: dt.datetime) -> None:
        now = time.monotonic()
        with self._lock:
            acc = self._accepted.pop(job_uuid, None)
            if acc is None:
                return
            self._outcomes[job_uuid] = (now + RESULT_TTL, JobView(acc[0], state, result, acc[1], finished))
            while self._outcomes and (len(self._outcomes) > RESULT_CACHE
                                      or next(iter(self._outcomes.values()))[0] <= now):
                self._outcomes.popitem(last=False)

    def submit(self, job_uuid: str, sync_key: str | None, work: Work) -> None:
        with self._lock:
            self._inflight += 1
            if sync_key is None:
                self._pool.submit(self._run, job_uuid, None, work)
                return
            q = self._queues.get(sync_key)
            if q is not None:
                q.append((job_uuid, work))
                return
            self._queues[sync_key] = deque()
        self._pool.submit(self._run, job_uuid, sync_key, work)

    def submit_internal(self, sync_key: str | None, work: Work) -> None:
        """Queue MN-internal work on a sync key; no job row is written."""
        from mn.db.base import new_uuid

        self.submit(f"internal-{new_uuid()}", sync_key, work)

    def _run(self, job_uuid: str, sync_key: str | None, work: Work) -> None:
        internal = job_uuid.startswith("internal-")
        try:
            if internal:
                try:
                    work()
                except Exception:
                    log.exception("internal work on %s failed", sync_key)
                return
            try:
                reply = work()
                self.finish(job_uuid, "Succeeded", {"success": True, **reply})
            except BaseException as exc:  # noqa: BLE001 - every failure ends the job
                err = wrap(exc)  # logs an unexpected exception
                self.finish(job_uuid, "Failed", {"success": False, "error": err.to_dict()})
        finally:
            nxt = None
            with self._lock:
                self._inflight -= 1
                if sync_key is not None:
                    q = self._queues[sync_key]
                    if q:
                        nxt = q.popleft()
                    else:
                        del self._queues[sync_key]
                self._done.notify_all()
            if nxt is not None:
                self._pool.submit(self._run, nxt[0], sync_key, nxt[1])

    def finish(self, job_uuid: str, state: str, result: dict) -> None:
        values = {"job": job_uuid, "end_state": state, "end_result": json.dumps(result), "end_date": utcnow()}
        for attempt in range(5):
            try:
                self.db.grouped_conn(lambda c: c.execute(_FINISH_JOB, values), one_statement=True)
                break
            except Exception:
                log.exception("recording the end of job %s failed (attempt %d)", job_uuid, attempt + 1)
        self._remember(job_uuid, state, values["end_result"], values["end_date"])  # text: small, no 2nd dumps
        self._wake(job_uuid)
        if self.on_finish is not None:
            self.on_finish(job_uuid, state, result)

    def watch(self, job_uuid: str) -> threading.Event:
        """An event set when this MN finishes `job_uuid`; pair every watch() with unwatch()."""
        with self._lock:
            ev, n = self._finished.get(job_uuid) or (threading.Event(), 0)
            self._finished[job_uuid] = (ev, n + 1)
            return ev

    def unwatch(self, job_uuid: str) -> None:
        with self._lock:
            entry = self._finished.get(job_uuid)
            if entry is not None:
                if entry[1] <= 1:
                    del self._finished[job_uuid]
                else:
                    self._finished[job_uuid] = (entry[0], entry[1] - 1)

    def _wake(self, job_uuid: str) -> None:
        with self._lock:
            entry = self._finished.get(job_uuid)
        if entry is not None:
            entry[0].set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._done.wait_for(lambda: self._inflight == 0, timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def purge_finished(db: Database, older_than_seconds: int, batch: int = 5000) -> int:
    """Delete jobs that ended more than `older_than_seconds` ago; returns how many went."""
    import datetime as dt

    from sqlalchemy import delete, select

    cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
    total = 0
    while True:
        with db.tx() as s:
            uuids = list(s.scalars(select(ApiJob.uuid).where(ApiJob.state != "Processing",
                                                              ApiJob.finishedDate < cutoff).limit(batch)))
            if not uuids:
                return total
            s.execute(delete(ApiJob).where(ApiJob.uuid.in_(uuids)))
        total += len(uuids)
