"""The async form of agent commands (kvmagent.server documents it): run later, reply by callback.

A request with the headers `taskuuid` and `callbackurl` is answered at once with
`{"success": true, "async": true}`; the command then runs on a worker thread and its reply is POSTed
to `callbackurl` with the header `taskuuid`. With the header `replywithin: S`, a command that ends within S seconds is answered
inline instead, with no callback. Delivery is tried a few times, then logged as lost:
the MN's call then times out, as it would with a real agent whose reply was lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

import urllib3

from kvmagent.auth import sign

log = logging.getLogger(__name__)

ACCEPTED = b'{"success": true, "async": true}'


class AsyncTasks:
    def __init__(self, workers: int = 64, timeout: float = 30.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-task")
        self._http = urllib3.PoolManager(maxsize=workers, block=False, retries=False,
                                         timeout=urllib3.Timeout(connect=5, read=timeout))
        self.inline = 0  # replies sent inline (replywithin)
        self.delivered = 0  # replies delivered by callback
        self.lost = 0

    def submit(self, run: Callable[[], bytes], task_uuid: str, callback_url: str,
               within: float = 0.0, key: bytes | None = None) -> bytes | None:
        """Run `run` (which returns the reply body) on a worker. Its reply if it ended within
        `within` seconds (sent inline by the caller); otherwise None, and the reply is delivered to
        `callback_url` when ready, signed with `key` (the target's). Exactly one of the two happens."""
        future = self._pool.submit(self._guarded, run, task_uuid)
        if within > 0:
            try:
                body = future.result(timeout=within)
                self.inline += 1
                return body
            except FutureTimeout:
                pass
        future.add_done_callback(lambda f: self._deliver(f.result(), task_uuid, callback_url, key))
        return None

    @staticmethod
    def _guarded(run: Callable[[], bytes], task_uuid: str) -> bytes:
        try:
            return run()
        except Exception as exc:  # a simulator bug still gets an answer to the MN
            log.exception("async task %s failed", task_uuid)
            return json.dumps({"success": False, "error": f"internal simulator error: {exc}"}).encode()

    def _deliver(self, body: bytes, task_uuid: str, callback_url: str, key: bytes | None = None) -> None:
        for attempt in range(3):
            headers = {"Content-Type": "application/json", "taskuuid": task_uuid}
            if key is not None:  # signed afresh at each attempt: a retry is not a replay
                headers.update(sign(key, "POST", urlsplit(callback_url).path, body, headers))
            try:
                r = self._http.request("POST", callback_url, body=body, headers=headers)
                if r.status < 500:
                    self.delivered += 1
                    return
            except urllib3.exceptions.HTTPError as exc:
                log.warning("delivering task %s to %s failed: %s", task_uuid, callback_url, exc)
            time.sleep(0.2 * (attempt + 1))
        self.lost += 1
        log.error("gave up delivering the reply of task %s to %s", task_uuid, callback_url)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
