"""`zstack-kvmagent`: the host agent's HTTP server (stdlib only, plus libvirt-python on hosts).

Every protocol command is `POST <path>` with a JSON body (kvmagent/protocol.py); the reply is a
JSON object with `success` and, on failure, `error`. The async form: a request carrying the
headers `taskuuid` and `callbackurl` is answered at once with `{"success": true, "async": true}`,
the command runs in its own thread, and its reply is POSTed to `callbackurl` with the header
`taskuuid`; with the header `replywithin: S` too, a command that ends within S seconds is answered
inline instead (no callback). A handler's AgentError becomes `success: false` with its message; any other exception
too, prefixed with its type, and logged with a traceback; the agent never leaves a caller hanging.

Every command must be signed by the MN with this agent's key (`key_file`; kvmagent/auth.py): an
unsigned, badly signed, stale or replayed one is answered 401 with a JSON error before anything
runs. Without a key every command is refused. The agent signs its events and async replies with
the same key, naming its host (`X-ZStack-Agent`). GET /health is open and reports the key's public
fingerprint (`keyId`), by which a deploy tells whether the agent holds the current key.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kvmagent import auth, plugins
from kvmagent import protocol as p
from kvmagent.config import AgentConfig, load
from kvmagent.registry import COMMANDS, AgentError
from kvmagent.wire import WireError, encode_reply, failure, validate

log = logging.getLogger(__name__)

# The core's modules of @command handlers (imported by Agent(), then the plugins' modules).
HANDLER_MODULES = ("kvmagent.host", "kvmagent.vm", "kvmagent.network")
TASK_HEADER, CALLBACK_HEADER, REPLY_WITHIN_HEADER = p.TASK_HEADER, p.CALLBACK_HEADER, p.REPLY_WITHIN_HEADER


def load_handlers(plugin_refs: str = "") -> None:
    """Import the core's handler modules, then the plugins' (kvmagent.plugins.load)."""
    for name in HANDLER_MODULES:
        importlib.import_module(name)
    plugins.load(plugin_refs)


class Agent:
    """One agent process: its config, its MN address and its libvirt connection.

    `mn_url` and `host_uuid` are learnt from /host/connect and kept in `<state_dir>/agent.json`,
    so a restarted agent can still report events to its MN.
    """

    def __init__(self, config: AgentConfig) -> None:
        from kvmagent.libvirt_conn import LibvirtConnection

        self.config = config
        self.libvirt = LibvirtConnection(config.libvirt_uri)
        self._lock = threading.Lock()
        self.host_uuid: str | None = None
        self.mn_url: str | None = None
        self.key = _load_key(config.key_file)
        self.verifier = auth.Verifier()
        self._load_identity()
        load_handlers(config.plugins)

    # ---- identity -----------------------------------------------------------------------------
    def _identity_file(self) -> Path:
        return self.config.state_path / "agent.json"

    def _load_identity(self) -> None:
        try:
            data = json.loads(self._identity_file().read_text())
        except (OSError, ValueError):
            return
        self.host_uuid, self.mn_url = data.get("hostUuid"), data.get("sendCommandUrl")

    def remember(self, host_uuid: str, mn_url: str | None) -> None:
        """Record who this agent serves (called by /host/connect)."""
        with self._lock:
            self.host_uuid, self.mn_url = host_uuid, mn_url
            f = self._identity_file()
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps({"hostUuid": host_uuid, "sendCommandUrl": mn_url}))
            tmp.replace(f)

    # ---- events to the MN -----------------------------------------------------------------------
    def report(self, event: p.HostEvent) -> bool:
        """POST an event to the MN; False (logged) when there is no MN or it is unreachable."""
        if not self.mn_url:
            log.info("no MN to report %s to", event)
            return False
        return self.post_signed(self.mn_url, p.to_wire(event)) is not None

    def post_signed(self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes | None:
        """POST to the MN, signed with this agent's key as its host."""
        data = json.dumps(body).encode()
        h = {**(headers or {}), auth.AGENT_HEADER: self.host_uuid or ""}
        if self.key is not None:
            h.update(auth.sign(self.key, "POST", urllib.parse.urlsplit(url).path, data, h))
        return post_json(url, body, h, data=data)

    def authenticate(self, method: str, path: str, body: bytes, headers: Any) -> str | None:
        """None when the request is signed with this agent's key, else why not."""
        try:
            if self.key is None:
                raise auth.AuthError(f"this agent has no key ({self.config.key_file}); redeploy it from the MN")
            self.verifier.verify(self.key, method, path, body, headers.get)
        except auth.AuthError as exc:
            return str(exc)
        return None

    # ---- commands -------------------------------------------------------------------------------
    def run(self, path: str, data: Any) -> dict[str, Any]:
        """Run one command; always a reply dict."""
        h = COMMANDS.get(path)
        if h is None:
            return failure(f"{path} is not a command this agent serves")
        try:
            validate(h.cmd_cls, data, f"invalid {h.cmd_cls.__name__} for {path}")
            reply = h.fn(self, p.from_wire(h.cmd_cls, data))
            return encode_reply(reply) if reply is not None else {"success": True, "error": None}
        except (AgentError, WireError) as exc:
            log.warning("%s failed: %s", path, exc)
            return failure(str(exc))
        except Exception as exc:  # an agent bug or an unexpected OS error: say what it was
            log.exception("%s failed", path)
            return failure(f"{path} failed on the agent: {type(exc).__name__}: {exc}")

    def run_async(self, path: str, data: Any, task_uuid: str, callback_url: str,
                  within: float = 0.0) -> dict[str, Any] | None:
        """Run a command in its own thread. Its reply if it ended within `within` seconds (the
        caller sends it inline); otherwise None, and the reply goes to `callback_url` when ready.
        Exactly one of the two happens."""
        lock = threading.Lock()
        ended = threading.Event()
        box: dict[str, Any] = {"detached": within <= 0}  # detached: the reply goes to the callback

        def work() -> None:
            reply = self.run(path, data)
            with lock:
                if not box["detached"]:
                    box["reply"] = reply
                    ended.set()
                    return
            if self.post_signed(callback_url, reply, {TASK_HEADER: task_uuid}) is None:
                log.error("could not deliver the reply of %s (task %s) to %s", path, task_uuid, callback_url)

        threading.Thread(target=work, name=f"task-{task_uuid[:8]}", daemon=True).start()
        if within > 0:
            ended.wait(within)
        with lock:
            if "reply" in box:
                return box["reply"]
            box["detached"] = True
        return None


def _load_key(path: str) -> bytes | None:
    try:
        return auth.read_key_file(path)
    except (OSError, ValueError) as exc:
        log.error("no agent key (%s): every command will be refused until the MN redeploys this agent", exc)
        return None


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None,
              timeout: float = 30, data: bytes | None = None) -> bytes | None:
    req = urllib.request.Request(url, data=data if data is not None else json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except OSError as exc:
        log.warning("POST %s failed: %s", url, exc)
        return None


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "zstack-kvmagent"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, reply: dict[str, Any]) -> None:
            body = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path == "/health":
                self._send(200, {"success": True, "hostUuid": agent.host_uuid,
                                 "keyId": auth.key_id(agent.key) if agent.key is not None else None})
            else:
                self._send(404, failure(f"GET {self.path}: agent commands are POST"))

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                data = json.loads(raw) if raw else {}
            except ValueError as exc:
                self._send(400, failure(f"{self.path}: body is not JSON: {exc}"))
                return
            refused = agent.authenticate("POST", self.path, raw, self.headers)
            if refused is not None:
                log.warning("refused POST %s from %s: %s", self.path, self.address_string(), refused)
                self._send(401, auth.refusal(f"{self.path}: {refused}"))
                return
            if self.path not in COMMANDS:
                self._send(404, failure(f"{self.path} is not a command this agent serves"))
                return
            task, callback = self.headers.get(TASK_HEADER), self.headers.get(CALLBACK_HEADER)
            if task and callback:
                inline = agent.run_async(self.path, data, task, callback,
                                         p.reply_within(self.headers.get(REPLY_WITHIN_HEADER)))
                self._send(200, inline if inline is not None else {"success": True, "async": True, "taskUuid": task})
            else:
                self._send(200, agent.run(self.path, data))

    return RequestHandler


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(config: AgentConfig) -> AgentServer:
    """Build the agent and its server (not yet serving; call serve_forever)."""
    agent = Agent(config)
    server = AgentServer((config.host, config.port), make_handler(agent))
    server.agent = agent  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="zstack-kvmagent", description="The ZStack KVM host agent.")
    parser.add_argument("--config", help="properties file (default /etc/zstack/kvmagent.properties)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; the deploy writes the "
                                       "host's management address)")
    parser.add_argument("--key-file", help="the agent's key (default /etc/zstack/kvmagent.key)")
    parser.add_argument("--port", type=int, help="port (default 7070)")
    parser.add_argument("--acceleration", choices=("kvm", "tcg"), help="guest acceleration")
    parser.add_argument("--state-dir", help="where the agent keeps its state")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    config = load(args.config, host=args.host, port=args.port, acceleration=args.acceleration,
                  state_dir=args.state_dir, key_file=args.key_file)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_file:
        Path(config.log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(config.log_file)]
    logging.basicConfig(level=args.log_level.upper(), handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = serve(config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("zstack-kvmagent listening on %s:%s (acceleration %s)", config.host, config.port,
             config.acceleration)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        log.info("zstack-kvmagent stopped")


if __name__ == "__main__":
    main()
