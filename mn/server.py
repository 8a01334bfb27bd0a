"""Run one management node: the WSGI app on waitress plus background tasks.

start() is used by zstack-ctl (foreground daemon) and by tests (in a thread, on port 0).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from waitress.server import create_server

from mn.app import create_app
from mn.background import Background
from mn.config import MNConfig

log = logging.getLogger(__name__)


@dataclass
class RunningMN:
    app: Flask
    url: str
    server: object
    background: Background
    thread: threading.Thread | None = None
    simulator: object | None = None

    @property
    def services(self):  # noqa: ANN201
        return self.app.extensions["zstack.services"]

    def stop(self, drain: float = 15.0) -> None:
        """Stop: let running jobs finish for up to `drain` seconds while the API server still
        takes agents' async replies, then fail what still waits for one (recovery at the next
        start rolls those flows back), and shut down."""
        self.background.stop()
        svc = self.services
        svc.extras["jobs"].wait_idle(timeout=drain)
        self.server.close()  # type: ignore[attr-defined]
        if self.thread is not None:
            self.thread.join(timeout=10)
        svc.agents.abort_waiting("the management node is stopping")
        svc.extras["jobs"].shutdown()
        svc.db.dispose()
        if self.simulator is not None:
            self.simulator.stop()  # type: ignore[attr-defined]


def start(config: MNConfig, in_thread: bool = True) -> RunningMN:
    """Start an MN; with config.embedded_simulator, a simulator is started in-process first."""
    simulator = None
    if config.embedded_simulator:
        from simulator.server import start_in_thread

        # Simulated hosts and storages outlive MN restarts, as real ones would.
        simulator = start_in_thread(config.host, config.simulator_port,
                                    state_file=Path(config.home) / "simulator-state.json")
        config.simulator_url = simulator.url
        log.info("embedded simulator listening on %s", simulator.url)
    app = create_app(config)
    server = create_server(app, host=config.host, port=config.port, threads=config.http_threads,
                           connection_limit=1000, channel_timeout=300, ident="zstack", asyncore_use_poll=True)
    port = server.effective_port  # type: ignore[attr-defined]
    url = f"http://{config.host}:{port}"
    config.port = port
    bg = Background(app.extensions["zstack.services"])
    app.extensions["zstack.background"] = bg
    bg.start()
    running = RunningMN(app, url, server, bg, simulator=simulator)
    if in_thread:
        running.thread = threading.Thread(target=server.run, name="mn-http", daemon=True)
        running.thread.start()
    log.info("management node listening on %s", url)
    return running


def serve_forever(config: MNConfig) -> None:
    """Run an MN in the foreground until SIGTERM or SIGINT, then stop cleanly."""
    import signal

    running = start(config, in_thread=False)
    stop = threading.Event()

    def _close() -> None:
        """Stop listening and drop idle keep-alive connections, or the loop serves them until they
        time out (channel_timeout) and a SIGTERM looks like a hang."""
        from waitress import wasyncore

        running.server.close()  # type: ignore[attr-defined]
        channels = getattr(running.server, "_map", None)
        if channels is not None:
            wasyncore.close_all(channels, ignore_all=True)

    def _stop(*_: object) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=_close, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        running.server.run()  # type: ignore[attr-defined]
    except OSError:
        if not stop.is_set():
            raise
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
    args = vars(parser.parse_args(argv))
    path = args.pop("config")
    config = MNConfig.load(path, **{k: v for k, v in args.items() if v is not None})
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_forever(config)


if __name__ == "__main__":
    main()
