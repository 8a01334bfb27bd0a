"""The Flask application factory: one MN process = one app + its services.

create_app() loads the core's services and the enabled plugins (mn.services.load_all), migrates
the database (the core's chain, then each plugin's), registers this MN, recovers what a previous
run left half-done (before any request is accepted), and mounts both transports.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from flask import Flask, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from kvmagent import auth
from mn import __version__, plugins, secretbox
from mn.agent import CALLBACK_PATH, AgentClient
from mn.api import agent_events, rest, rpc, wire
from mn.api.dispatch import Dispatcher
from mn.api.openapi import build_openapi
from mn.background import periodic
from mn.config import MNConfig
from mn.context import Services
from mn.db.base import new_uuid, utcnow
from mn.db.engine import Database
from mn.db.migrate import upgrade
from mn.globalconfig import GlobalConfigStore
from mn.jobs import JobRunner
from mn.models import ManagementNode
from mn.services import identity, load_all
from mn.workers import Worker, all_worker_uuids, worker_uuid

log = logging.getLogger(__name__)


def _mn_uuid(config: MNConfig) -> str:
    """A stable identity per MN home, so a restarted MN recovers its own jobs."""
    path = Path(config.home) / "mn.uuid"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    uuid = new_uuid()
    path.write_text(uuid)
    return uuid


def _register_mn(svc: Services) -> None:
    with svc.db.tx() as s:
        row = s.get(ManagementNode, svc.mn_uuid)
        if row is None:
            s.add(ManagementNode(uuid=svc.mn_uuid, hostName=svc.config.host or socket.gethostname(),
                                 port=svc.config.port, joinDate=utcnow(), heartBeat=utcnow()))
        else:
            row.heartBeat, row.port, row.hostName = utcnow(), svc.config.port, svc.config.host


def _forget_workers(svc: Services, uuids: list[str]) -> None:
    """Drop the ManagementNode rows of worker processes this MN no longer runs (fewer processes
    than before); their jobs were recovered just before."""
    from sqlalchemy import delete

    with svc.db.tx() as s:
        s.execute(delete(ManagementNode).where(ManagementNode.uuid.in_(uuids)))


def _callback_url(config: MNConfig) -> str | None:
    """Where agents send async replies to this process; None until the API server's port is known."""
    return config.callback_url_base + CALLBACK_PATH if config.port else None


def build_services(config: MNConfig, worker: Worker = Worker()) -> Services:
    Path(config.home).mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the keys and the database
    box = secretbox.load(config.home)  # made at the first start; migrations seal with it
    if worker.index == 0:  # the other workers start once worker 0 has migrated the database
        upgrade(config.db_url, secret_key=box.path)
    db = Database(config.db_url)
    base = _mn_uuid(config)
    gconf = GlobalConfigStore(db)
    gconf.init()
    keys = auth.DerivedKeys(auth.create_key_file(config.agent_key_path))
    svc = Services(config=config, db=db, agents=AgentClient(timeout=config.agent_timeout,
                                                               callback_url=lambda: _callback_url(config),
                                                               reply_within=config.agent_reply_within,
                                                               keys=keys),
                   gconf=gconf, mn_uuid=worker_uuid(base, worker.index), sessions=identity.SessionStore(), secrets=box,
                   # This machine's other MN processes: a result request for one of their jobs re-reads it often.
                   siblings=frozenset(worker_uuid(base, i) for i in range(worker.count)))
    _register_mn(svc)
    identity.ensure_admin(svc)
    return svc


def create_app(config: MNConfig | None = None, worker: Worker = Worker()) -> Flask:
    config = config or MNConfig.load()
    load_all(config.disabled)
    svc = build_services(config, worker)
    runner = JobRunner(svc.db, svc.mn_uuid, workers=config.job_threads(worker.count))
    svc.jobs = runner
    from mn import recovery

    if worker.index == 0 and not worker.restarted:  # the whole MN starts: nothing of it runs yet
        every = all_worker_uuids(_mn_uuid(config))
        recovery.recover(svc, owners=every, reconcile=True)
        _forget_workers(svc, every[worker.count:])
    else:  # the other workers run: recover only this one's jobs, reconcile nothing under them
        recovery.recover(svc, owners=[svc.mn_uuid], reconcile=False)
    dispatcher = Dispatcher(svc, runner)
    app = Flask("zstack-mn")
    app.json.sort_keys = False
    app.extensions["zstack.services"] = svc
    app.extensions["zstack.dispatcher"] = dispatcher
    app.extensions["zstack.routes"] = rest.build_routes(dispatcher)
    app.register_blueprint(rpc.bp)
    app.register_blueprint(rest.bp)
    app.register_blueprint(agent_events.bp)
    mount_error_handlers(app, config.api_max_body)

    @app.get(f"{rest.PREFIX}/openapi.json")
    @app.get(f"{rest.PREFIX}/openapi.json/")
    def openapi_json():
        """The OpenAPI document (no session needed), built on first use and kept for the app's life."""
        if "zstack.openapi" not in app.extensions:
            app.extensions["zstack.openapi"] = build_openapi(dispatcher)
        return jsonify(app.extensions["zstack.openapi"])

    @app.get("/health")
    def health():
        with svc.db.ro() as s:
            s.execute(select(1))
        bg = app.extensions.get("zstack.background")  # set by mn.server once its tasks run
        return jsonify({"status": "ok", "version": __version__, "managementNodeUuid": svc.mn_uuid,
                        "process": worker.index, "processes": worker.count, "pid": os.getpid(),
                        "plugins": plugins.names(),
                        "backgroundRounds": dict(bg.rounds) if bg is not None else {}})

    return app


AGENT_MAX_BODY = 64 << 20
"""The largest body an agent may post (events, async replies): the HTTP server's own limit."""


def mount_error_handlers(app: Flask, api_max_body: int) -> None:
    """Bodies under /zstack/ are limited to `api_max_body` bytes (413), agents' to AGENT_MAX_BODY;
    every failure of the HTTP layer (werkzeug's 404, 405, 413, an exception escaping a view) is
    answered as JSON in ZStack's error shape: the RPC reply's under /zstack/api, REST's elsewhere.
    An unexpected exception is logged and answered 500 SYS.1000 without its text."""
    app.config["MAX_CONTENT_LENGTH"] = AGENT_MAX_BODY

    @app.before_request
    def _limit_api_body() -> None:
        if request.path.startswith("/zstack/"):
            request.max_content_length = api_max_body

    @app.errorhandler(HTTPException)
    @app.errorhandler(Exception)
    def _error(exc: Exception):
        if not isinstance(exc, HTTPException) or (exc.code or 500) >= 500:
            log.error("%s %s failed", request.method, request.path, exc_info=exc)
        err = wire.http_error(exc, request.max_content_length)
        status = err.http_status or 500
        if request.path.startswith("/zstack/api"):
            return rpc.error_reply(err, status)
        return jsonify({"success": False, "error": err.to_dict()}), status


def _heartbeat_interval(svc: Services) -> float:
    return 10.0


def _heartbeat(svc: Services) -> None:
    """Tell the other MNs (and operators) this MN is alive."""
    from sqlalchemy import update

    with svc.db.tx() as s:
        s.execute(update(ManagementNode).where(ManagementNode.uuid == svc.mn_uuid).values(heartBeat=utcnow()))


periodic("mn-heartbeat", _heartbeat_interval, per_process=True)(_heartbeat)


def _sync_global_config(svc: Services) -> None:
    """Background's loop syncs before each run: this task takes global-config changes into the
    process's cache within a second for code that runs outside API calls and tasks (the host
    tracker's loop)."""


periodic("global-config-sync", lambda svc: 1.0, per_process=True)(_sync_global_config)


def _purge_jobs(svc: Services) -> None:
    """Finished API jobs are kept for polling for apiJob.retention seconds, then deleted."""
    from mn.globalconfig import API_JOB_RETENTION
    from mn.jobs import purge_finished

    purge_finished(svc.db, svc.gconf.get(API_JOB_RETENTION))


periodic("purge-api-jobs", lambda svc: 600.0)(_purge_jobs)
