"""The API handler registry: behaviour for the catalogue's APIs.

A handler module declares, once per API:

    @apis.handler("CreateZone")
    def create_zone(ctx: ApiContext, msg: Msg) -> dict: ...

`check` (optional) runs synchronously before an async job is queued and must have no side
effects: it turns bad input into an immediate error. `sync_key` names the resource whose
operations run one at a time (ZStack's sync signature). The handler returns the reply fields
(e.g. {"inventory": {...}}); raising ApiError fails the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mn.context import ApiContext


class Msg(dict):
    """A validated API message: a dict whose keys are also attributes (msg.uuid)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def system_tags(self) -> list[str]:
        return self.get("systemTags") or []


Handler = Callable[["ApiContext", Msg], dict[str, Any]]
Check = Callable[["ApiContext", Msg], None]
SyncKey = Callable[[Msg], str | None]


@dataclass(frozen=True)
class Registered:
    name: str
    run: Handler
    check: Check | None = None
    sync_key: SyncKey | None = None


class ApiRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Registered] = {}

    def handler(self, name: str, *, check: Check | None = None, sync_key: SyncKey | None = None,
                ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            if name in self._handlers:
                raise ValueError(f"API {name} is registered twice")
            self._handlers[name] = Registered(name, fn, check, sync_key)
            return fn

        return deco

    def get(self, name: str) -> Registered | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)


apis = ApiRegistry()


def key_of(field: str, prefix: str) -> SyncKey:
    """sync_key helper: serialise on `prefix-<msg[field]>`."""
    return lambda msg: f"{prefix}-{msg.get(field)}"
