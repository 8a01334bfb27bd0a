"""Best-effort delivery of HostEvents to the MN's sendCommandUrl.

One daemon thread, started on first use, drains a bounded queue; post() never blocks and drops
the event (counting it) when the queue is full. Delivery failures are logged and counted, never
retried: a real agent's event can be lost too, and the MN's periodic VM sync must cope.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

import urllib3

from kvmagent.auth import AGENT_HEADER, sign

log = logging.getLogger(__name__)

_STOP = object()


class EventSender:
    def __init__(self, maxsize: int = 10000, timeout: float = 5.0) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def post(self, url: str, event: dict[str, Any], key: bytes | None = None, sender: str = "") -> bool:
        """Queue `event` for POSTing to `url`, signed with `key` as host `sender` when sent (None:
        unsigned, which the MN refuses); False when it had to be dropped."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((url, event, key, sender))
        except queue.Full:
            self.dropped += 1
            log.warning("event queue full, dropping %s for %s", event, url)
            return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put((_STOP, None, None, ""), timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "queued": self._queue.qsize()}

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="sim-events", daemon=True)
                t.start()
                self._thread = t

    def _run(self) -> None:
        http = urllib3.PoolManager(maxsize=4, retries=False,
                                   timeout=urllib3.Timeout(connect=self._timeout, read=self._timeout))
        while True:
            url, event, key, sender = self._queue.get()
            if url is _STOP:
                http.clear()
                return
            try:
                body = json.dumps(event).encode()
                headers = {"Content-Type": "application/json", AGENT_HEADER: sender}
                if key is not None:
                    headers.update(sign(key, "POST", urlsplit(url).path, body, headers))
                r = http.request("POST", url, body=body, headers=headers)
                if r.status >= 400:
                    raise urllib3.exceptions.HTTPError(f"HTTP {r.status}")
                self.sent += 1
            except Exception as exc:  # best effort: never let the sender thread die
                self.failed += 1
                log.warning("unable to deliver host event %s to %s: %s", event, url, exc)
