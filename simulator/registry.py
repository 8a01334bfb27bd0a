"""What plugins add to the simulator: command handlers per kind of target, and per-host state.

A plugin's simulator module declares, at import,

    @registry.handles(registry.HOSTS, ApplyEipCmd)
    def apply(state: SimState, host: SimHost, cmd: ApplyEipCmd) -> Reply: ...

and, for state it keeps on simulated hosts, `registry.host_state("eips")`: the key is in every
host's admin view (empty until set) and in the saved state (simulator.persist). A plugin keeps
that state in `SimHost.extras[key]` as JSON values, under the host's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HOSTS, PRIMARY, BACKUP = "hosts", "primary-storage", "backup-storage"
KINDS = (HOSTS, PRIMARY, BACKUP)

Handler = Callable[[Any, Any, Any], Any]  # (SimState, target, typed command) -> Reply

HANDLERS: dict[str, dict[str, Handler]] = {k: {} for k in KINDS}
HOST_STATE: list[str] = []
_version = [0]  # bumped by every registration: simulator.dispatch rebuilds its routes


def handles(kind: str, cmd_cls: type) -> Callable[[Handler], Handler]:
    """Register the decorated function as the simulator's handler of `cmd_cls.PATH` for `kind`."""
    if kind not in KINDS:
        raise ValueError(f"unknown simulator target kind {kind!r}; one of {KINDS}")

    def deco(fn: Handler) -> Handler:
        path = cmd_cls.PATH  # type: ignore[attr-defined]
        old = HANDLERS[kind].get(path)
        if old is not None and old is not fn:
            raise RuntimeError(f"two simulator handlers for {path}: {old.__module__} and {fn.__module__}")
        HANDLERS[kind][path] = fn
        _version[0] += 1
        return fn

    return deco


def host_state(key: str) -> None:
    """Declare a key of per-host plugin state (SimHost.extras)."""
    if key not in HOST_STATE:
        HOST_STATE.append(key)


def version() -> int:
    return _version[0]
