"""The simulator's HTTP server: a plain WSGI app, served by simulator.http_server (cheroot).

Agent protocol: POST /hosts/{uuid}<path>, /primary-storage/{uuid}<path>,
/backup-storage/{uuid}<path> (see kvmagent/protocol.py and simulator.dispatch); admin API under
/simulator/ (simulator.admin). start_in_thread() is for tests and the embedded MN; main() is the
`zstack-simulator` console script.

Agent-protocol requests must be signed (kvmagent/auth.py) with the key of the agent URL they came
to (`http://<Host header>/<kind>/<uuid>`, as the MN stores it), derived from the MN's master key
file the simulator is started with (`key_file`, `--key-file`); an unsigned, badly signed, stale or
replayed one is answered 401 with a JSON error, before anything runs or is counted. Without a key
file every command is refused. The admin API is the test-control plane and is not signed: keep the
simulator on loopback (its default).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kvmagent import auth
from kvmagent.protocol import reply_within
from simulator import plugins
from simulator.admin import handle_admin
from simulator.dispatch import BACKUP, HOSTS, JSON_TYPE, NOT_FOUND, PRIMARY, serve_command
from simulator.http_server import WSGIApp, WSGIServer
from simulator.state import SimState
from simulator.tasks import ACCEPTED, AsyncTasks

log = logging.getLogger(__name__)

METHOD_NOT_ALLOWED = "405 Method Not Allowed"
_NOT_FOUND_BODY = b'{"success": false, "error": "no such simulator route"}'
_POST_ONLY_BODY = b'{"success": false, "error": "agent commands are POST only"}'
_TARGET_KINDS = frozenset((HOSTS, PRIMARY, BACKUP))


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


UNAUTHORIZED = "401 Unauthorized"


def _authenticate(state: SimState, verifier: auth.Verifier, environ: dict[str, Any], kind: str, uuid: str,
                  body: bytes) -> bytes | None:
    """None when the request is signed by the MN for this target (remembering the URL it came
    to, which its events and replies are signed for), else the refusal's body."""
    url = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}/{kind}/{uuid}"
    path = environ.get("PATH_INFO") or "/"
    if environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]

    def header(name: str) -> str | None:
        return environ.get("HTTP_" + name.upper().replace("-", "_"))

    try:
        if state.keys is None:
            raise auth.AuthError("the simulator was started without the MN's key file (--key-file)")
        verifier.verify(state.keys.key_for(url), environ["REQUEST_METHOD"], path, body, header)
    except auth.AuthError as exc:
        log.warning("refused %s %s: %s", environ["REQUEST_METHOD"], path, exc)
        return json.dumps(auth.refusal(f"{path}: {exc}")).encode()
    if state.agent_urls.get(uuid) != url:
        state.agent_urls[uuid] = url
    return None


def make_app(state: SimState, tasks: AsyncTasks | None = None) -> WSGIApp:
    """The simulator as a WSGI callable serving `state`; `tasks` runs async-form commands. The
    installed plugins' simulator modules are loaded first (simulator.plugins)."""
    plugins.load()
    tasks = tasks or AsyncTasks()
    verifier = auth.Verifier()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO") or "/"
        method: str = environ["REQUEST_METHOD"]
        body = _read_body(environ)
        kind, _, rest = path[1:].partition("/")
        if kind in _TARGET_KINDS:
            uuid, slash, cmd_path = rest.partition("/")
            if not uuid or not slash:
                status, payload, ctype = NOT_FOUND, _NOT_FOUND_BODY, JSON_TYPE
            elif method != "POST":
                status, payload, ctype = METHOD_NOT_ALLOWED, _POST_ONLY_BODY, JSON_TYPE
            elif (refused := _authenticate(state, verifier, environ, kind, uuid, body)) is not None:
                status, payload, ctype = UNAUTHORIZED, refused, JSON_TYPE
            elif environ.get("HTTP_TASKUUID") and environ.get("HTTP_CALLBACKURL"):
                def run(kind: str = kind, uuid: str = uuid, cmd: str = "/" + cmd_path, body: bytes = body) -> bytes:
                    return serve_command(state, kind, uuid, cmd, body)[1]

                inline = tasks.submit(run, environ["HTTP_TASKUUID"], environ["HTTP_CALLBACKURL"],
                                      reply_within(environ.get("HTTP_REPLYWITHIN")), state.signing_key(uuid))
                status, payload, ctype = "200 OK", inline or ACCEPTED, JSON_TYPE
            else:
                status, payload, ctype = serve_command(state, kind, uuid, "/" + cmd_path, body)
        elif kind == "simulator":
            status, payload, ctype = handle_admin(state, method, path, body)
        else:
            status, payload, ctype = NOT_FOUND, _NOT_FOUND_BODY, JSON_TYPE
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(payload)))])
        return [payload]

    return app


class SimulatorServer:
    """A simulator serving in a daemon thread. `url` is its base URL; `state` its world."""

    def __init__(self, state: SimState, host: str, port: int, threads: int, saver: Any = None) -> None:
        self.state = state
        self.tasks = AsyncTasks()
        """The async-form commands' runner (its counters: inline, delivered, lost)."""
        self._saver = saver
        self._server = WSGIServer(host, port, threads=threads, connection_limit=2000, idle_timeout=300,
                                  ident="zstack-simulator")
        self.url = f"http://{host}:{self._server.port}"
        self._server.start(make_app(state, self.tasks), "simulator-http")

    def host_url(self, uuid: str) -> str:
        """The agent base URL of simulated host `uuid`."""
        return f"{self.url}/hosts/{uuid}"

    def primary_storage_url(self, uuid: str) -> str:
        return f"{self.url}/primary-storage/{uuid}"

    def backup_storage_url(self, uuid: str) -> str:
        return f"{self.url}/backup-storage/{uuid}"

    def stop(self) -> None:
        """Stop serving: wake commands sleeping in a fault, stop the workers, close sockets."""
        self.state.stopping.set()
        self._server.stop(timeout=5)
        self.tasks.close()
        self.state.events.close()
        if self._saver is not None:
            self._saver.stop()


def start_in_thread(host: str = "127.0.0.1", port: int = 0, threads: int = 16,
                    state_file: str | Path | None = None, key_file: str | Path | None = None) -> SimulatorServer:
    """Start a simulator on host:port (0 = any free port). With `state_file`, the world is
    restored from it and saved to it every few seconds and on stop; else it starts empty.
    `key_file` is the MN's master key (made if missing, as the MN would): without it every agent
    command is refused."""
    state = SimState()
    if key_file is not None:
        state.keys = auth.DerivedKeys(auth.create_key_file(key_file))
        state.key_file = str(key_file)
    saver = None
    if state_file is not None:
        from simulator.persist import Saver, restore

        restore(state, Path(state_file))
        saver = Saver(state, Path(state_file))
    return SimulatorServer(state, host, port, threads, saver)


def main(argv: list[str] | None = None) -> None:
    """`zstack-simulator`: serve in the foreground until SIGINT/SIGTERM, logging to stderr."""
    parser = argparse.ArgumentParser(prog="zstack-simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    parser.add_argument("--threads", type=int, default=16, help="requests served at once (default 16)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--state-file", help="restore the simulated world from this file and keep saving it")
    parser.add_argument("--key-file", help="the MN's agent master key file (its agent_key_file, by default "
                                           "<MN home>/agent.key): commands are accepted only signed with it")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.key_file:
        log.warning("no --key-file: every agent command will be refused")
    sim = start_in_thread(args.host, args.port, args.threads, args.state_file, args.key_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("zstack-simulator listening on %s with %d threads", sim.url, args.threads)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        sim.stop()
        log.info("zstack-simulator stopped")


if __name__ == "__main__":
    main()
