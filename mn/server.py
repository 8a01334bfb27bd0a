"""Run one management node: the WSGI app on simulator.http_server (cheroot) plus background tasks.

start() is used by zstack-ctl (foreground daemon) and by tests (in a thread, on port 0). The app
and its libraries are imported when a process serves, not before: the supervisor of several MN
processes (mn/workers.py) imports none of them and stays small.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mn.config import MNConfig
from mn.workers import Supervisor, Worker, process_count, stop_with_supervisor

if TYPE_CHECKING:
    from flask import Flask

    from mn.background import Background
    from simulator.http_server import WSGIServer

log = logging.getLogger(__name__)

CALLBACK_THREADS = 16
"""Threads of a worker process's own (async-reply) port: a reply is recorded and its waiter woken."""


@dataclass
class RunningMN:
    app: Flask
    url: str
    servers: tuple[WSGIServer, ...]  # the API port's, then (several processes) this process's own
    background: Background
    simulator: object | None = None

    @property
    def services(self):  # noqa: ANN201
        return self.app.extensions["zstack.services"]

    def stop(self, drain: float = 15.0) -> None:
        """Stop: let running jobs finish for up to `drain` seconds while the API server still
        takes agents' async replies, then fail what still waits for one (recovery at the next
        start rolls those flows back), and shut down."""
        from simulator.http_server import stop_all

        self.background.stop()
        svc = self.services
        svc.job_runner().wait_idle(timeout=drain)
        stop_all(self.servers, timeout=10)
        svc.agents.abort_waiting("the management node is stopping")
        svc.job_runner().shutdown()
        svc.db.dispose()
        if self.simulator is not None:
            self.simulator.stop()  # type: ignore[attr-defined]


def start(config: MNConfig, worker: Worker = Worker()) -> RunningMN:
    """Start an MN serving in a daemon thread (or one worker process of one, see mn/workers.py);
    with config.embedded_simulator, a simulator is started in-process first (by worker 0)."""
    from mn.app import create_app
    from mn.background import Background
    from simulator.http_server import WSGIServer

    simulator = None
    if config.embedded_simulator and worker.index == 0:
        from simulator.server import start_in_thread

        # Simulated hosts and storages outlive MN restarts, as real ones would.
        simulator = start_in_thread(config.host, config.simulator_port,
                                    state_file=Path(config.home) / "simulator-state.json",
                                    key_file=config.agent_key_path)
        config.simulator_url = simulator.url
        log.info("embedded simulator listening on %s", simulator.url)
    elif config.embedded_simulator and not config.simulator_url:
        config.simulator_url = f"http://{config.host}:{config.simulator_port}"
    # Bound before the app is made (its MN row records the port, its recovery may give agents this
    # process's callback URL: their requests wait in the backlog until it serves). Several processes
    # share the API port (SO_REUSEPORT), each with a port of its own for async replies (mn/workers.py).
    # max_body=0: the app limits bodies itself (mn.app.mount_error_handlers), answering ZStack's
    # JSON error rather than the HTTP server's plain-text 413.
    servers = [WSGIServer(config.host, config.port, threads=config.api_threads(worker.count),
                          connection_limit=1000, idle_timeout=300, ident="zstack", reuse_port=worker.count > 1,
                          max_body=0)]
    if worker.count > 1:
        servers.append(WSGIServer(config.host, 0, threads=CALLBACK_THREADS, connection_limit=1000,
                                  idle_timeout=300, ident="zstack", max_body=0))
        config.callback_port = servers[1].port
    try:
        app = create_app(config, worker)
    except BaseException:
        for server in servers:
            server.stop(timeout=0)
        raise
    config.port = servers[0].port
    url = f"http://{config.host}:{config.port}"
    bg = Background(app.extensions["zstack.services"], primary=worker.index == 0)
    app.extensions["zstack.background"] = bg
    bg.start()
    running = RunningMN(app, url, tuple(servers), bg, simulator=simulator)
    for i, server in enumerate(servers):
        server.start(app, "mn-http" if i == 0 else "mn-http-callback")
    log.info("management node listening on %s", url)
    return running


def serve_forever(config: MNConfig, worker: Worker | None = None) -> None:
    """Run an MN in the foreground until SIGTERM or SIGINT, then stop cleanly. With
    config.processes > 1 this process supervises that many workers (`worker` given: be one)."""
    import signal

    if worker is None:
        if process_count(config) > 1:
            code = Supervisor(config).run()
            if code:
                raise RuntimeError(f"the management node's workers failed (exit code {code})")
            return
        worker = Worker()
    running = start(config, worker=worker)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        running.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m mn.server --key value ...`: each MNConfig field is a flag (e.g. --db-url)."""
    import argparse
    from dataclasses import fields

    parser = argparse.ArgumentParser(description="run one ZStack management node in the foreground")
    parser.add_argument("--config", help="a properties file (key=value lines)")
    for f in fields(MNConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name)
    # Set by the supervisor of several processes (mn/workers.py), not by users.
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-restarted", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    args = vars(parser.parse_args(argv))
    path = args.pop("config")
    index, count, restarted = args.pop("worker_index"), args.pop("worker_count"), args.pop("worker_restarted")
    supervisor = args.pop("worker_of")
    if supervisor is not None:
        stop_with_supervisor(supervisor)
    config = MNConfig.load(path, **{k: v for k, v in args.items() if v is not None})
    worker = Worker(index, count or 1, restarted) if index is not None else None
    tag = f" [worker {index}]" if worker is not None else ""
    logging.basicConfig(level=config.log_level, format=f"%(asctime)s %(levelname)s{tag} %(name)s: %(message)s")
    serve_forever(config, worker)


if __name__ == "__main__":
    main()
