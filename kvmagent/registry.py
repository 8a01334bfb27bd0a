"""The agent's command table: protocol path -> (command dataclass, handler).

Handler modules (host, vm, network, local storage, backup storage, ...) declare their commands
with `@command(CmdClass)`; a handler takes the Agent and the typed command and returns a Reply
dataclass, or raises AgentError (the message goes back to the MN as the reply's `error`).
Registration happens at import: `kvmagent.server.HANDLER_MODULES` lists the core's modules, the
plugins' kvmagent modules come from kvmagent.plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class AgentError(Exception):
    """A command failed; str(exc) is what the MN reports (include the libvirt/OS message)."""


class Handler(NamedTuple):
    cmd_cls: type
    fn: Callable[[Any, Any], Any]


COMMANDS: dict[str, Handler] = {}


def command(cmd_cls: type) -> Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]:
    """Register the decorated function as the handler of `cmd_cls.PATH` (once per path)."""

    def register(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        path = cmd_cls.PATH  # type: ignore[attr-defined]
        if path in COMMANDS:
            raise RuntimeError(f"two handlers for {path}: {COMMANDS[path].fn.__module__} and {fn.__module__}")
        COMMANDS[path] = Handler(cmd_cls, fn)
        return fn

    return register
