"""Global configuration: typed definitions declared in code, values stored in the database.

Definitions are declared once with define(); GlobalConfigStore creates the missing rows at start
and caches values (updates go through UpdateGlobalConfig, which refreshes the cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from mn.db.engine import Database
from mn.errors import invalid
from mn.models import GlobalConfig


@dataclass(frozen=True)
class ConfigDef:
    category: str
    name: str
    default: str
    description: str
    type: type = str
    check: Callable[[Any], bool] | None = None
    valid_values: tuple[str, ...] | None = None

    def parse(self, raw: str) -> Any:
        try:
            if self.type is bool:
                if raw.lower() not in ("true", "false"):
                    raise ValueError(raw)
                value: Any = raw.lower() == "true"
            else:
                value = self.type(raw)
        except ValueError:
            raise invalid(f"global config {self.category}.{self.name} takes a {self.type.__name__}, "
                          f"got {raw!r}") from None
        if self.valid_values is not None and raw not in self.valid_values:
            raise invalid(f"global config {self.category}.{self.name} must be one of "
                          f"{list(self.valid_values)}, got {raw!r}")
        if self.check is not None and not self.check(value):
            raise invalid(f"global config {self.category}.{self.name}: invalid value {raw!r}")
        return value


DEFS: dict[tuple[str, str], ConfigDef] = {}


def define(category: str, name: str, default: Any, description: str, type: type = str,
           check: Callable[[Any], bool] | None = None, valid_values: tuple[str, ...] | None = None,
           ) -> ConfigDef:
    d = ConfigDef(category, name, str(default).lower() if isinstance(default, bool) else str(default),
                  description, type, check, valid_values)
    DEFS[(category, name)] = d
    return d


_positive = lambda v: v > 0  # noqa: E731

CPU_OVER_PROVISIONING = define("host", "cpu.overProvisioning.ratio", 10,
                               "virtual CPUs a host offers per physical CPU", int, _positive)
MEMORY_OVER_PROVISIONING = define("mevoco", "overProvisioning.memory", 1.0,
                                  "memory a host offers per byte of physical memory", float, _positive)
PS_OVER_PROVISIONING = define("mevoco", "overProvisioning.primaryStorage", 1.0,
                              "primary storage capacity offered per physical byte", float, _positive)
HOST_PING_INTERVAL = define("host", "ping.interval", 60, "seconds between host pings", int, _positive)
HOST_PING_FAILURES = define("host", "ping.maxFailure", 1,
                            "missed pings after which a host is marked Disconnected", int, _positive)
VM_DELETION_POLICY = define("vm", "deletionPolicy", "Delay",
                            "Direct expunges a destroyed VM at once; Delay keeps it recoverable; Never keeps it",
                            valid_values=("Direct", "Delay", "Never"))
VM_EXPUNGE_PERIOD = define("vm", "expungePeriod", 86400,
                           "seconds a destroyed VM stays recoverable under the Delay policy", int, _positive)
VOLUME_DELETION_POLICY = define("volume", "deletionPolicy", "Delay",
                                "Direct expunges a deleted data volume at once; Delay keeps it recoverable",
                                valid_values=("Direct", "Delay", "Never"))
API_JOB_RETENTION = define("apiJob", "retention", 86400,
                           "seconds a finished API job and its result are kept for polling", int, _positive)
SESSION_TIMEOUT = define("identity", "session.timeout", 7200, "seconds a session lives", int, _positive)
HOST_ALLOCATOR_STRATEGY = define("hostAllocator", "defaultStrategy", "DefaultHostAllocatorStrategy",
                                 "host allocator strategy when an offering names none",
                                 valid_values=("DefaultHostAllocatorStrategy",
                                               "LeastVmPreferredHostAllocatorStrategy"))


class GlobalConfigStore:
    def __init__(self, db: Database):
        self.db = db
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def init(self) -> None:
        with self.db.tx() as s:
            existing = {(g.category, g.name): g for g in s.scalars(select(GlobalConfig))}
            for key, d in DEFS.items():
                row = existing.get(key)
                if row is None:
                    s.add(GlobalConfig(category=d.category, name=d.name, description=d.description,
                                       defaultValue=d.default, value=d.default))
                else:
                    row.defaultValue, row.description = d.default, d.description
        self.reload()

    def reload(self) -> None:
        with self.db.ro() as s:
            rows = s.scalars(select(GlobalConfig)).all()
        with self._lock:
            for g in rows:
                d = DEFS.get((g.category, g.name))
                if d is not None:
                    self._cache[(g.category, g.name)] = d.parse(g.value)

    def get(self, d: ConfigDef) -> Any:
        key = (d.category, d.name)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        return d.parse(d.default)

    def set_cached(self, d: ConfigDef, raw: str) -> None:
        with self._lock:
            self._cache[(d.category, d.name)] = d.parse(raw)
