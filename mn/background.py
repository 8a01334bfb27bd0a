"""Periodic background tasks of an MN (host pings, expunging destroyed VMs, heartbeats).

Service modules declare tasks with @periodic; the server starts them after crash recovery.
A task gets the Services and returns; exceptions are logged and the task runs again next time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mn.context import Services

log = logging.getLogger(__name__)

Interval = Callable[[Services], float]


@dataclass(frozen=True)
class Task:
    name: str
    fn: Callable[[Services], None]
    interval: Interval


TASKS: dict[str, Task] = {}


def periodic(name: str, interval: Interval) -> Callable[[Callable[[Services], None]], Callable[[Services], None]]:
    """Declare a background task; `interval(svc)` gives the seconds until its next run."""
    def deco(fn: Callable[[Services], None]) -> Callable[[Services], None]:
        TASKS[name] = Task(name, fn, interval)
        return fn

    return deco


class Background:
    def __init__(self, svc: Services):
        self.svc = svc
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def _loop(self, task: Task) -> None:
        while not self.stop_event.wait(max(0.05, task.interval(self.svc))):
            try:
                task.fn(self.svc)
            except Exception:
                log.exception("background task %s failed", task.name)

    def start(self) -> None:
        for task in TASKS.values():
            t = threading.Thread(target=self._loop, args=(task,), name=f"bg-{task.name}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=5)
