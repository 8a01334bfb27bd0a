"""The one path every API call takes, whichever transport it came by.

call(): look up the catalogue spec → authenticate → validate parameters → authorize (mn.access:
the API, the resources it names, a user's policies) → run the handler's check → sync/query APIs run at once; async APIs become a durable job queued on their sync key.
Query APIs need no handler: they are derived from the catalogue and the models (mn/query.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from mn import access
from mn.api.registry import Msg, Registered, apis
from mn.catalogue.catalog import ApiSpec, load_catalog
from mn.catalogue.params import validate
from mn.context import ApiContext, Services
from mn.db.base import new_uuid, utcnow
from mn.errors import UNIMPLEMENTED, UNKNOWN_MESSAGE, ApiError, wrap
from mn.jobs import JobRunner
from mn.models import ApiJob
from mn.query import TARGETS, run_query

MAX_RESULT_WAIT = 30.0
"""The longest a result request is held (`wait` seconds); clients' read timeouts must exceed it."""
SIBLING_RECHECK = 0.05
"""Seconds between reads of a job that another process of this MN runs (long polling)."""

log = logging.getLogger(__name__)


@dataclass
class CallResult:
    uuid: str
    spec: ApiSpec | None
    done: bool
    # {"success": True, **fields} or {"success": False, "error": {...}}, or its JSON text (a job's
    # result as stored): parsed only when a transport needs the fields, else sent as it is.
    body: dict[str, Any] | str | None
    created: dt.datetime
    finished: dt.datetime | None = None
    http_status: int | None = None  # for errors raised before a job existed

    @property
    def reply(self) -> dict[str, Any] | None:
        if isinstance(self.body, str):
            self.body = json.loads(self.body)
        return self.body

    def reply_json(self) -> str | None:
        """The reply as JSON text (without parsing and dumping a stored result again)."""
        return self.body if self.body is None or isinstance(self.body, str) else json.dumps(self.body)

    @property
    def success(self) -> bool:
        return bool(self.reply and self.reply.get("success"))


def _query_handler(spec: ApiSpec) -> Registered:
    def run(ctx: ApiContext, msg: Msg) -> dict:
        with ctx.db.ro() as s:
            return run_query(s, spec, msg, ctx.caller)

    return Registered(spec.name, run)


class Dispatcher:
    def __init__(self, svc: Services, runner: JobRunner):
        self.svc = svc
        self.runner = runner
        self.catalog = load_catalog()

    def handler_for(self, spec: ApiSpec) -> Registered | None:
        reg = apis.get(spec.name)
        if reg is None and spec.kind == "query" and spec.inventory in TARGETS:
            reg = _query_handler(spec)
        return reg

    def implemented(self) -> list[ApiSpec]:
        return [s for s in self.catalog.apis.values() if self.handler_for(s) is not None]

    def _fail(self, spec: ApiSpec | None, err: ApiError, created: dt.datetime) -> CallResult:
        return CallResult(new_uuid(), spec, True, {"success": False, "error": err.to_dict()}, created,
                          utcnow(), err.http_status or 503)

    def call(self, api_name: str, params: dict[str, Any], session_uuid: str | None,
             lenient: bool = False) -> CallResult:
        created = utcnow()
        spec = self.catalog.api(api_name)
        if spec is None:
            return self._fail(None, ApiError(UNKNOWN_MESSAGE, f"no API named {api_name}", http_status=404),
                              created)
        reg = self.handler_for(spec)
        if reg is None:
            return self._fail(spec, ApiError(UNIMPLEMENTED, f"{spec.name} is not implemented by this management node: neither its "
                                             "core nor an installed, enabled plugin serves it",
                                             http_status=501), created)
        try:
            ctx = ApiContext(self.svc, session_uuid=session_uuid)
            self.svc.gconf.sync()  # global-config changes made through any process, before anything reads one
            if not spec.noSession:
                ctx.caller = self.svc.session_store().validate(self.svc, session_uuid)
            if spec.kind == "query" and params.get("conditions") is None:
                params = {**params, "conditions": []}
            msg = Msg(validate(spec, params, lenient))
            access.authorize(ctx, spec, msg)
            if reg.check is not None:
                reg.check(ctx, msg)
        except Exception as exc:  # noqa: BLE001
            return self._fail(spec, wrap(exc), created)
        if spec.kind != "async":
            try:
                reply = {"success": True, **reg.run(ctx, msg)}
                return CallResult(new_uuid(), spec, True, reply, created, utcnow())
            except Exception as exc:  # noqa: BLE001
                return self._fail(spec, wrap(exc), created)  # wrap() logs an unexpected exception
        job_uuid = new_uuid()
        ctx.job_uuid = job_uuid
        key = reg.sync_key(msg) if reg.sync_key else None
        safe = {k: ("*****" if spec.param_map.get(k) and spec.param_map[k].sensitive else v)
                for k, v in msg.items()}
        self.runner.create(job_uuid, spec.name, safe, key)
        self.runner.submit(job_uuid, key, lambda: reg.run(ctx, msg))
        return CallResult(job_uuid, spec, False, None, created)

    def result(self, job_uuid: str, wait: float = 0.0) -> CallResult | None:
        """The job's result; with `wait` > 0, held up to that many seconds while it is still
        Processing (long polling): a job this MN runs wakes the request the moment it ends; a job
        of another process of this MN is re-read every SIBLING_RECHECK seconds, of another MN
        every second."""
        res, owner = self._result(job_uuid)
        if res is None or res.done or wait <= 0:
            return res
        deadline = time.monotonic() + min(wait, MAX_RESULT_WAIT)
        recheck = (None if owner == self.svc.mn_uuid
                   else SIBLING_RECHECK if owner in self.svc.siblings else 1.0)
        event = self.runner.watch(job_uuid)
        try:
            while True:
                res, _ = self._result(job_uuid)
                left = deadline - time.monotonic()
                if res is None or res.done or left <= 0:
                    return res
                event.wait(min(left, recheck or left))
        finally:
            self.runner.unwatch(job_uuid)

    def _result(self, job_uuid: str) -> tuple[CallResult | None, str | None]:
        """(the job's result, the MN running it): from this MN's job runner when it knows the job,
        else from the database."""
        view = self.runner.peek(job_uuid)
        if view is not None:
            return CallResult(job_uuid, self.catalog.api(view.api_name), view.state != "Processing", view.reply,
                              view.created, view.finished), self.svc.mn_uuid
        with self.svc.db.ro() as s:
            job = s.get(ApiJob, job_uuid)
            if job is None:
                return None, None
            spec = self.catalog.api(job.apiName)
            return CallResult(job.uuid, spec, job.state != "Processing", job.result or None, job.createDate,
                              job.finishedDate), job.managementNodeUuid
