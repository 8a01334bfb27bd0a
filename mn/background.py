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
    first: float | None = None  # seconds before the first run; None: one interval
    per_process: bool = False  # runs in every process of an MN (mn/workers.py), not only the first


TASKS: dict[str, Task] = {}


def periodic(name: str, interval: Interval, first: float | None = None, per_process: bool = False,
             ) -> Callable[[Callable[[Services], None]], Callable[[Services], None]]:
    """Declare a background task; `interval(svc)` gives the seconds until its next run, `first`
    the seconds until its first run (default: one interval). An MN of several processes runs a
    task in its first process only, unless `per_process`."""
    def deco(fn: Callable[[Services], None]) -> Callable[[Services], None]:
        TASKS[name] = Task(name, fn, interval, first, per_process)
        return fn

    return deco


class Background:
    def __init__(self, svc: Services, primary: bool = True):
        self.svc = svc
        self.primary = primary
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.rounds: dict[str, int] = {}  # completed runs per task (ok or failed), shown by /health

    def _loop(self, task: Task) -> None:
        delay = task.first if task.first is not None else task.interval(self.svc)
        while not self.stop_event.wait(max(0.05, delay)):
            try:
                gconf = getattr(self.svc, "gconf", None)
                if gconf is not None:  # the run sees global-config changes made anywhere
                    gconf.sync()
                task.fn(self.svc)
            except Exception:
                log.exception("background task %s failed", task.name)
            self.rounds[task.name] = self.rounds.get(task.name, 0) + 1
            delay = task.interval(self.svc)

    def start(self) -> None:
        for task in TASKS.values():
            if not (self.primary or task.per_process):
                continue
            t = threading.Thread(target=self._loop, args=(task,), name=f"bg-{task.name}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=5)


STATISTICS_INTERVAL = 3600.0
ANALYSIS_LIMIT = 1000  # rows sampled per index: about 2 s on 1,000,000 VMs


@periodic("sqlite-statistics", lambda svc: STATISTICS_INTERVAL, first=5.0)
def refresh_sqlite_statistics(svc: Services) -> None:
    """SQLite: refresh the planner's statistics (sampled ANALYZE) soon after start, then hourly.

    Without them SQLite guesses every index equally selective: on 1,000,000 VMs it sorts a whole
    state's rows where walking another index would do, 10-30x slower. PostgreSQL and MariaDB
    keep their statistics themselves.
    """
    if svc.db.dialect != "sqlite":
        return
    from sqlalchemy import text

    with svc.db.tx() as s:
        s.execute(text(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}"))
        s.execute(text("ANALYZE"))

