"""Global configuration: typed definitions declared in code, values stored in the database.

Definitions are declared once with define(); GlobalConfigStore creates the missing rows at start
and caches values. Invariant: a change of a value increments the one global_config_generation row
in the same transaction (bump); every process reads that row before an API call and a background
task run (sync, a primary-key read) and reloads its cache when it moved, so a change made through
any process of any MN is seen by the next call on every process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mn.db.engine import Database
from mn.errors import invalid
from mn.models import GlobalConfig, GlobalConfigGeneration

_GENERATION = select(GlobalConfigGeneration.generation).where(GlobalConfigGeneration.id == 1)
_BUMP = (update(GlobalConfigGeneration).where(GlobalConfigGeneration.id == 1)
         .values(generation=GlobalConfigGeneration.generation + 1))


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
        self._generation: int | None = None  # of the values in _cache

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
        """Every value from the database. The generation is read first, so the values are at
        least as new as the generation recorded with them (a change in between reloads again)."""
        with self.db.ro() as s:
            generation = s.scalar(_GENERATION)
            rows = s.scalars(select(GlobalConfig)).all()
        with self._lock:
            for g in rows:
                d = DEFS.get((g.category, g.name))
                if d is not None:
                    self._cache[(g.category, g.name)] = d.parse(g.value)
            self._generation = generation

    def sync(self) -> None:
        """Reload when a change was committed since the last load (one primary-key read)."""
        with self.db.read() as conn:
            generation = conn.execute(_GENERATION).scalar()
        if generation != self._generation:
            self.reload()

    @staticmethod
    def bump(s: Session) -> None:
        """Record, in the caller's transaction, that values changed (every process reloads)."""
        s.execute(_BUMP)

    def get(self, d: ConfigDef) -> Any:
        key = (d.category, d.name)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        return d.parse(d.default)

    def set_cached(self, d: ConfigDef, raw: str) -> None:
        with self._lock:
            self._cache[(d.category, d.name)] = d.parse(raw)
