"""Fault injection: rules that break agent commands on purpose.

A rule matches a protocol path exactly, or every path under a prefix written with a trailing "*"
("/vm/*", or "*" for all), on one target uuid or on every target (target None). Rules are tried
in the order they were added; the first match is taken and its count decremented under the
table's lock, so a rule with count N breaks exactly N commands however many run at once. A rule
whose count reaches 0 is removed; count -1 means until removed.

The hot path costs one attribute read when no rule exists (the list is replaced, never mutated,
so reading it without the lock is safe).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

from kvmagent.protocol import COMMANDS

MODES = ("fail", "error", "timeout", "slow")
DEFAULT_DELAY = {"fail": 0.0, "error": 0.0, "timeout": 30.0, "slow": 1.0}


@dataclass(slots=True, eq=False)
class Fault:
    """One rule. mode: fail (success=false reply), error (HTTP 500, body not JSON), timeout (wait
    `delay` then a failure reply), slow (wait `delay` then process normally)."""

    id: str
    path: str
    target: str | None
    mode: str
    count: int
    delay: float
    message: str | None
    hits: int = 0

    def matches(self, path: str, target: str | None) -> bool:
        if self.target is not None and self.target != target:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "target": self.target, "mode": self.mode,
                "count": self.count, "delay": self.delay, "message": self.message, "hits": self.hits}


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError("fault path must be a protocol path such as /vm/start, or a prefix ending in *")
    if path.endswith("*"):
        prefix = path[:-1]
        if not any(p.startswith(prefix) for p in COMMANDS):
            raise ValueError(f"fault path {path} matches no protocol command")
    elif path not in COMMANDS:
        raise ValueError(f"fault path {path} is not a protocol command path (known: {sorted(COMMANDS)})")
    return path


class FaultTable:
    """The simulator's fault rules; thread-safe."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, path: str, target: str | None = None, mode: str = "fail", count: int = 1,
            delay: float | None = None, message: str | None = None) -> Fault:
        """Validate and append a rule; raise ValueError with a clear message when invalid."""
        _check_path(path)
        if mode not in MODES:
            raise ValueError(f"fault mode must be one of {', '.join(MODES)}, not {mode!r}")
        if target is not None and not isinstance(target, str):
            raise ValueError("fault target must be a uuid string or null")
        if isinstance(count, bool) or not isinstance(count, int) or (count < 1 and count != -1):
            raise ValueError(f"fault count must be a positive integer or -1, not {count!r}")
        if delay is None:
            delay = DEFAULT_DELAY[mode]
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError(f"fault delay must be a non-negative number of seconds, not {delay!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError("fault message must be a string")
        with self._lock:
            fault = Fault(str(next(self._ids)), path, target, mode, count, float(delay), message)
            self._faults = [*self._faults, fault]
        return fault

    def take(self, path: str, target: str | None) -> Fault | None:
        """The first rule matching this command, its count consumed; None when nothing matches."""
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, target):
                    fault.hits += 1
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            self._faults = [f for f in self._faults if f is not fault]
                    return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.view() for f in self._faults]

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            kept = [f for f in self._faults if f.id != fault_id]
            found = len(kept) != len(self._faults)
            self._faults = kept
        return found

    def clear(self) -> int:
        with self._lock:
            n, self._faults = len(self._faults), []
        return n

    def __len__(self) -> int:
        return len(self._faults)
