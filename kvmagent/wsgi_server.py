"""A threaded HTTP/1.1 WSGI server on the standard library that can be stopped from any thread.

The simulator and the management node serve their WSGI apps with it (kvmagent is the stdlib-only
package both may import). It exists because waitress, used before, has no public way to stop a
server: stopping it meant closing its asyncore channels through its internals.

Invariants:
- One thread per connection, kept alive between requests; at most `connection_limit` connections
  at once (beyond that the listening sockets are not accepted from: new clients wait in the
  backlog). An idle connection is closed after `idle_timeout` seconds.
- At most `threads` requests run the app at once; the others wait for a turn.
- A request body is read whole before the app runs (Content-Length or chunked, at most
  `max_body` bytes, else 413); the reply is buffered whole and always carries its length, so
  every connection can be kept alive.
- stop() returns promptly: the listening sockets close, idle connections are closed at once, a
  request being served finishes and its reply is sent (for up to `timeout` seconds), no new
  request is read. It may be called from any thread, more than once.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote_to_bytes

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_NO_BODY_STATUSES = frozenset((204, 304))
_OWN_HEADERS = frozenset(("content-length", "connection", "transfer-encoding", "date", "server"))


class _BadRequest(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    """A chunked request body (RFC 9112 section 7.1), trailers skipped."""
    out = bytearray()
    while True:
        line = rfile.readline(1024)
        size_field = line.split(b";", 1)[0].strip()
        if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_field):
            raise _BadRequest(400, "malformed chunked body")
        size = int(size_field, 16)
        if size == 0:
            while (trailer := rfile.readline(65537)) not in (b"\r\n", b"\n"):
                if not trailer.endswith(b"\n"):
                    raise _BadRequest(400, "malformed chunked body trailer")
            return bytes(out)
        if len(out) + size > limit:
            raise _BadRequest(413, f"request body over {limit} bytes")
        data = rfile.read(size)
        if len(data) < size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise _BadRequest(400, "chunked body cut short")
        out += data


class _Handler(BaseHTTPRequestHandler):
    """Parses requests (http.server) and hands each to its WSGIServer."""

    protocol_version = "HTTP/1.1"
    server: WSGIServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.client_address[0], format % args)

    def _serve(self) -> None:
        self.server.serve_request(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve


class WSGIServer:
    """Serves `app` on `host`:`port` (0: any free port), or on already bound `sockets`.

    `port` is the port of the first listening socket. serve_forever() runs the accept loop in the
    calling thread, start() in a daemon thread; stop() ends both (see the module's invariants).
    """

    def __init__(self, app: WSGIApp, host: str = "127.0.0.1", port: int = 0, *,
                 sockets: Sequence[socket.socket] = (), threads: int = 16, connection_limit: int = 1000,
                 idle_timeout: float = 300.0, max_body: int = 64 << 20, ident: str = "zstack") -> None:
        if threads < 1 or connection_limit < 1:
            raise ValueError(f"threads and connection_limit must be positive, got {threads}, {connection_limit}")
        self.app = app
        self.ident = ident
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self._listeners = list(sockets) or [self._listen(host, port)]
        for s in self._listeners:
            s.setblocking(False)
        name = self._listeners[0].getsockname()
        self.host: str = host or name[0]
        self.port: int = name[1]
        self._turns = threading.BoundedSemaphore(threads)
        self._slots = threading.BoundedSemaphore(connection_limit)
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._loop_done = threading.Event()
        self._loop_started = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread: threading.Thread | None = None
        self._date: tuple[int, str] = (0, "")

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        family, _, _, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
        return socket.create_server(addr[:2], family=family, backlog=1024)

    # ---- the accept loop ------------------------------------------------------------------------

    def start(self, name: str = "wsgi-server") -> threading.Thread:
        """Serve in a daemon thread (returned); stop() ends it."""
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._thread.start()
        return self._thread

    def serve_forever(self) -> None:
        """Accept connections until stop(); each is served by a thread of its own."""
        import selectors

        self._loop_started = True
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._wake_r, selectors.EVENT_READ)
            for s in self._listeners:
                sel.register(s, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not self._slots.acquire(timeout=0.5):  # at the connection limit
                    continue
                accepted = False
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._stopping.is_set():
                        break
                    accepted = self._accept(key.fileobj)  # type: ignore[arg-type]
                    if accepted:
                        break
                if not accepted:
                    self._slots.release()
        finally:
            sel.close()
            for s in self._listeners:
                s.close()
            self._loop_done.set()

    def _accept(self, listener: socket.socket) -> bool:
        try:
            conn, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:  # out of file descriptors, say: do not spin
            log.warning("accept on %s failed: %s", listener.getsockname(), exc)
            time.sleep(0.1)
            return False
        thread = threading.Thread(target=self._serve_connection, args=(conn, addr),
                                  name=f"{self.ident}-conn", daemon=True)
        with self._lock:
            self._conns[conn] = thread
        thread.start()
        return True

    def _serve_connection(self, conn: socket.socket, addr: Any) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(self.idle_timeout)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._stopping.is_set():
                _Handler(conn, addr, self)  # type: ignore[arg-type] - serves until the connection ends
        except OSError as exc:
            log.debug("connection from %s ended: %s", addr, exc)
        except Exception:  # noqa: BLE001 - one connection's failure must not end the server
            log.exception("serving a connection from %s failed", addr)
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            conn.close()
            self._slots.release()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close idle connections, let requests being served finish (up to
        `timeout` seconds, then leave their daemon threads behind), and return."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping.set()
            conns = list(self._conns.items())
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        for conn, _ in conns:  # a thread waiting for the next request reads end-of-file
            try:
                conn.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        if self._loop_started:
            self._loop_done.wait(max(0.0, deadline - time.monotonic()))
        else:
            for s in self._listeners:
                s.close()
        for _, thread in conns:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        busy = sum(t.is_alive() for _, t in conns)
        if busy:
            log.warning("%s: %d connection(s) still busy %.1f s after the stop", self.ident, busy, timeout)
        for s in (self._wake_r, self._wake_w):
            s.close()

    # ---- one request ------------------------------------------------------------------------------

    def serve_request(self, h: BaseHTTPRequestHandler) -> None:
        """Run the app on the request `h` has parsed and send its reply."""
        try:
            body = self._read_body(h)
        except _BadRequest as exc:
            h.send_error(exc.code, str(exc))
            return
        if not self._turns.acquire(timeout=self.idle_timeout):
            h.send_error(503, "the server is too busy")
            return
        try:
            if self._stopping.is_set():
                h.send_error(503, "the server is stopping")
                return
            status, headers, payload = self._call_app(self._environ(h, body))
        finally:
            self._turns.release()
        self._reply(h, status, headers, payload)

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        encoding = h.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _BadRequest(501, f"transfer encoding {encoding!r} is not supported")
            h.close_connection = h.close_connection or "Content-Length" in h.headers
            return _read_chunked(h.rfile, self.max_body)
        lengths = h.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        if len(set(lengths)) > 1 or not lengths[0].strip().isdigit():
            raise _BadRequest(400, "invalid Content-Length")
        n = int(lengths[0])
        if n > self.max_body:
            raise _BadRequest(413, f"request body over {self.max_body} bytes")
        body = h.rfile.read(n) if n else b""
        if len(body) < n:
            raise _BadRequest(400, "request body cut short")
        return body

    def _environ(self, h: BaseHTTPRequestHandler, body: bytes) -> dict[str, Any]:
        target = h.path
        if not target.startswith("/"):  # absolute form: http://host/path
            target = "/" + target.split("://", 1)[-1].partition("/")[2]
        path, _, query = target.partition("?")
        if "%" in path:
            path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
        local = h.connection.getsockname()
        env: dict[str, Any] = {
            "REQUEST_METHOD": h.command, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": self.host, "SERVER_PORT": str(local[1]), "SERVER_PROTOCOL": h.request_version,
            "REMOTE_ADDR": h.client_address[0], "REMOTE_PORT": str(h.client_address[1]),
            "SERVER_SOFTWARE": self.ident, "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        if body or "Content-Length" in h.headers or "Transfer-Encoding" in h.headers:
            env["CONTENT_LENGTH"] = str(len(body))
        for name, value in h.headers.items():
            key = name.upper().replace("-", "_")
            if "_" in name or key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue  # underscores: a header that could pass for another (as waitress drops them)
            if key != "CONTENT_TYPE":
                key = "HTTP_" + key
            env[key] = f"{env[key]},{value}" if key in env else value
        return env

    def _call_app(self, env: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        chunks: list[bytes] = []
        response: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            if response and exc_info is None:
                raise AssertionError("start_response called twice without exc_info")
            response[:] = [status, headers]  # nothing is sent before the app returns: replace freely
            return chunks.append

        try:
            result = self.app(env, start_response)
            try:
                chunks.extend(c for c in result if c)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not response:
                raise RuntimeError("the app returned without calling start_response")
        except Exception:
            log.exception("%s %s failed in the app", env["REQUEST_METHOD"], env["PATH_INFO"])
            return "500 Internal Server Error", [("Content-Type", "text/plain"), ("Connection", "close")], \
                b"internal server error"
        return response[0], response[1], b"".join(chunks)

    def _http_date(self) -> str:
        """The Date header's value, formatted at most once a second."""
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]

    def _reply(self, h: BaseHTTPRequestHandler, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status}", f"Date: {self._http_date()}", f"Server: {self.ident}"]
        for name, value in headers:
            lower = name.lower()
            if lower == "connection" and value.strip().lower() == "close":
                h.close_connection = True
            if lower not in _OWN_HEADERS:
                lines.append(f"{name}: {value}")
        code = int(status[:3])
        if code in _NO_BODY_STATUSES or code < 200:
            body = b""
        else:
            lines.append(f"Content-Length: {len(body)}")
        if self._stopping.is_set():
            h.close_connection = True
        if h.close_connection:
            lines.append("Connection: close")
        elif h.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        h.wfile.write(head if h.command == "HEAD" else head + body)
