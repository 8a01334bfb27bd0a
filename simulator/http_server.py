"""HTTP/1.1 serving of the simulator's and the management node's WSGI apps, on cheroot.

cheroot is CherryPy's production WSGI server: a maintained HTTP/1.1 implementation rather than one
of ours, with a public way to stop a server (`prepare()`, `serve()`, `stop()`), which waitress,
used before, lacks. The KVM agent does not import this module: it keeps the standard library's http.server (kvmagent/server.py), so it runs
on hosts that have only Debian's Python.

Invariants:
- The listening socket is bound when a WSGIServer is made (`port` is then known, and clients
  that connect wait in the backlog), before any request is served: start() hands it the app.
- `threads` requests run the app at once; the others wait for a thread. Idle keep-alive
  connections wait in one selector, not in threads: up to `connection_limit` are kept open, an
  idle one is closed after `idle_timeout` seconds.
- A request body over `max_body` bytes is refused (413), headers over 1 MiB too (414/413).
- stop() may be called from any thread, any number of times: the listening socket and idle
  connections close within half a second (cheroot's connection loop wakes twice a second), a
  request in the app finishes and its reply is sent (with Connection: close); one still in the
  app after `timeout` seconds is left to its thread. No thread of the server outlives the
  process (they are all daemon threads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MAX_HEADERS = 1 << 20


class _Cheroot(wsgi.Server):
    """cheroot's WSGI server, logging through `logging` (its documented override point)."""

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        log.log(level, "%s", msg, exc_info=traceback)


class WSGIServer:
    """A WSGI server on `host`:`port` (0: any free port; `reuse_port`: SO_REUSEPORT, so that
    several processes share the port). See the module's invariants."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, threads: int = 16,
                 connection_limit: int = 1000, idle_timeout: float = 300.0, max_body: int = 64 << 20,
                 ident: str = "zstack", reuse_port: bool = False) -> None:
        if threads < 1 or connection_limit < 1:
            raise ValueError(f"threads and connection_limit must be positive, got {threads}, {connection_limit}")
        server = _Cheroot((host, port), None, numthreads=threads, max=threads, server_name=ident,
                          request_queue_size=1024, timeout=idle_timeout, accepted_queue_size=connection_limit,
                          reuse_port=reuse_port)
        server.keep_alive_conn_limit = connection_limit
        server.max_request_body_size = max_body
        server.max_request_header_size = MAX_HEADERS
        self._server = server
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None
        _in_daemon_thread(server.prepare)  # binds; its worker threads are born daemons
        self.host: str = host
        self.port: int = server.bind_addr[1]

    def start(self, app: WSGIApp, name: str = "wsgi-server") -> threading.Thread:
        """Serve `app` in a daemon thread (returned) until stop()."""
        with self._lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("a WSGIServer is started once, before it is stopped")
            self._server.wsgi_app = app  # nothing is served before: cheroot's loop starts below
            self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
            self._thread.start()
        return self._thread

    def _serve(self) -> None:
        try:
            self._server.serve()
        except BaseException:  # noqa: BLE001 - an interrupt raised in a worker ends serving, logged
            log.exception("%s on port %d stopped serving", self._server.server_name, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (see the module's invariants); later calls return at once."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._server.shutdown_timeout = timeout
        stopper = threading.Thread(target=self._server.stop, name=f"{self._server.server_name}-stop", daemon=True)
        stopper.start()
        stopper.join(timeout + 1.0)  # cheroot waits without a bound for a request still in the app
        if stopper.is_alive():
            log.warning("%s on port %d: a request is still in the app %.1f s after the stop",
                        self._server.server_name, self.port, timeout)
        elif self._thread is not None:
            self._thread.join(1.0)


def stop_all(servers: Iterable[WSGIServer], timeout: float = 5.0) -> None:
    """Stop `servers` at once (each stop waits up to half a second for its connection loop)."""
    stoppers = [threading.Thread(target=s.stop, args=(timeout,), daemon=True) for s in servers]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()


def _in_daemon_thread(fn: Callable[[], None]) -> None:
    """Run `fn` in a daemon thread and wait for it; its exception is raised here. Threads that
    `fn` starts are daemon threads too (a thread is born with its creator's daemon flag)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            failure.append(exc)

    t = threading.Thread(target=run, name="wsgi-server-prepare", daemon=True)
    t.start()
    t.join()
    if failure:
        raise failure[0]
