"""The agent's libvirt connection: opened lazily, reopened when it dies.

`call(fn)` runs fn(conn) and turns a libvirtError into an AgentError carrying libvirt's own
message; when the connection was lost it reconnects once and retries. libvirt-python is imported
here only, so the rest of the agent (and its unit tests) import without it; other modules get
libvirt's constants through `lv()`.

libvirt's default event loop runs in a daemon thread from the first connection on (events and
keepalive need it); `on_connect(fn)` hooks run on every new connection (first and after a loss),
which is how event callbacks are re-registered after a reconnect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kvmagent.registry import AgentError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError as exc:
        raise AgentError(f"libvirt-python is not installed on this host: {exc}") from None
    return libvirt


def lv() -> Any:
    """The libvirt module (for its constants and libvirtError); AgentError if it is not installed."""
    return _libvirt()


_loop_lock = threading.Lock()
_loop_started = False


def _start_event_loop(libvirt: Any) -> None:
    """Register libvirt's default event implementation and run it in a daemon thread (once)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors become AgentErrors, not stderr
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # never let the loop die: events would stop silently
                    log.exception("libvirt event loop iteration failed")

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def is_error(exc: BaseException, *codes: int) -> bool:
    """Whether `exc` is a libvirtError with one of `codes` (e.g. VIR_ERR_NO_DOMAIN)."""
    libvirt = _libvirt()
    return isinstance(exc, libvirt.libvirtError) and exc.get_error_code() in codes


class LibvirtConnection:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._conn: Any = None
        self._lock = threading.Lock()
        self._hooks: list[Callable[[Any], None]] = []

    def on_connect(self, fn: Callable[[Any], None]) -> None:
        """Run fn(conn) on every new connection from now on (and now, if connected)."""
        with self._lock:
            self._hooks.append(fn)
            conn = self._conn
        if conn is not None:
            fn(conn)

    def get(self) -> Any:
        """A live connection (opened or reopened as needed)."""
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except Exception:  # a dead connection may raise instead of answering False
                    pass
                log.warning("libvirt connection to %s lost: reconnecting", self.uri)
                self._conn = None
            libvirt = _libvirt()
            _start_event_loop(libvirt)
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise AgentError(f"cannot connect to libvirt at {self.uri}: {exc}") from None
            try:
                conn.setKeepAlive(5, 3)
            except libvirt.libvirtError as exc:  # a local (non-remote) driver may not support it
                log.debug("libvirt keepalive not set: %s", exc)
            self._conn = conn
            hooks = list(self._hooks)
        for fn in hooks:
            try:
                fn(conn)
            except Exception:
                log.exception("libvirt on-connect hook %s failed", getattr(fn, "__qualname__", fn))
        return conn

    def call(self, fn: Callable[[Any], T], what: str = "libvirt call", retry: bool = True) -> T:
        """fn(conn) -> its result; retry=False for calls that must not run twice (a migration)."""
        libvirt = _libvirt()
        for attempt in (1, 2):
            conn = self.get()
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                lost = exc.get_error_domain() == libvirt.VIR_FROM_RPC or not _alive(conn)
                if lost and attempt == 1 and retry:
                    with self._lock:
                        if self._conn is conn:
                            self._conn = None
                    continue
                raise AgentError(f"{what} failed: {exc}") from None
        raise AssertionError("unreachable")


def _alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False
