"""Extension points: typed lists of hooks, so features (plugins above all) join core flows without
core edits. Each point fixes the signature of its hooks (a ParamSpec), so a hook registered with
the wrong arguments is a type error, and `run`/`run_logged` take exactly those arguments.

Declared here (the names are the contract); modules register at import:

    @extensions.VM_BEFORE_START.register
    def prepare(ctx: ApiContext, vm_uuid: str, host_uuid: str) -> None: ...

- HOST_BEFORE_CONNECT (ctx, host_uuid): in the connect flow before the agent is contacted (a KVM
  host's agent is deployed or redeployed there when it is not current).
- HOST_CONNECTED (ctx, host_uuid): after a host's agent connected and reported its facts, inside
  the connect flow; raising fails the connect (e.g. an L2 bridge cannot be created).
- HOST_DELETED (ctx, DeletedHost): after a host's row was deleted (per-host records, simulated hosts).
- HOST_MAINTENANCE (ctx, host_uuid): a host enters maintenance (its VMs must leave it).
- HOST_DISCONNECTED (ctx, host_uuid): pings failed and the host was marked Disconnected.
- PRIMARY_STORAGE_ATTACHED / PRIMARY_STORAGE_DETACHED (ctx, ps_uuid, cluster_uuid): after
  AttachPrimaryStorageToCluster / DetachPrimaryStorageFromCluster (per-host storage follows).
- PRIMARY_STORAGE_DELETED / BACKUP_STORAGE_DELETED (ctx, DeletedStorage): after the row was deleted.
- VM_BEFORE_START (ctx, vm_uuid, host_uuid): before a VM starts on a host (network prepare), also
  on the destination host before a migration; raising fails the start (or migration).
- VM_RELEASE_NETWORK (ctx, vm_uuid, host_uuid): undoes VM_BEFORE_START on that host: when the
  start or migration fails (the prepare-net step's rollback, journaled for crash recovery), after
  the VM stopped or was destroyed, and on the source host after a migration. Hooks must tolerate
  having nothing to undo; after a stop, destroy or migration they run best effort (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

if TYPE_CHECKING:
    from mn.context import ApiContext, Services

P = ParamSpec("P")
log = logging.getLogger(__name__)


class HookPoint(Generic[P]):
    """A named, ordered list of hooks of one signature; hooks run in registration order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._hooks: list[Callable[P, None]] = []

    def register(self, fn: Callable[P, None]) -> Callable[P, None]:
        """Add a hook (usable as a decorator); adding the same function twice is a no-op."""
        if fn not in self._hooks:
            self._hooks.append(fn)
        return fn

    def unregister(self, fn: Callable[P, None]) -> None:
        """Remove a hook (tests that add one for a while); absent is fine."""
        if fn in self._hooks:
            self._hooks.remove(fn)

    def hooks(self) -> tuple[Callable[P, None], ...]:
        return tuple(self._hooks)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every hook; the first that raises stops the others and fails the caller."""
        for fn in self._hooks:
            fn(*args, **kwargs)

    def run_logged(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every hook even if some fail; failures are logged, not raised (best-effort cleanup)."""
        for fn in self._hooks:
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("%s hook %s%r failed", self.name, getattr(fn, "__qualname__", fn), args)

    def __repr__(self) -> str:
        return f"HookPoint({self.name}, {len(self._hooks)} hooks)"


@dataclass(frozen=True)
class DeletedHost:
    """A host whose row was just deleted, as it was."""

    uuid: str
    cluster_uuid: str
    hypervisor_type: str
    agent_url: str | None


@dataclass(frozen=True)
class DeletedStorage:
    """A primary or backup storage whose row was just deleted, as it was."""

    uuid: str
    type: str
    agent_url: str | None


HOST_BEFORE_CONNECT: HookPoint[[ApiContext, str]] = HookPoint("HOST_BEFORE_CONNECT")
HOST_CONNECTED: HookPoint[[ApiContext, str]] = HookPoint("HOST_CONNECTED")
HOST_DELETED: HookPoint[[ApiContext, DeletedHost]] = HookPoint("HOST_DELETED")
HOST_MAINTENANCE: HookPoint[[ApiContext, str]] = HookPoint("HOST_MAINTENANCE")
HOST_DISCONNECTED: HookPoint[[ApiContext, str]] = HookPoint("HOST_DISCONNECTED")
PRIMARY_STORAGE_ATTACHED: HookPoint[[ApiContext, str, str]] = HookPoint("PRIMARY_STORAGE_ATTACHED")
PRIMARY_STORAGE_DETACHED: HookPoint[[ApiContext, str, str]] = HookPoint("PRIMARY_STORAGE_DETACHED")
PRIMARY_STORAGE_DELETED: HookPoint[[ApiContext, DeletedStorage]] = HookPoint("PRIMARY_STORAGE_DELETED")
BACKUP_STORAGE_DELETED: HookPoint[[ApiContext, DeletedStorage]] = HookPoint("BACKUP_STORAGE_DELETED")
VM_BEFORE_START: HookPoint[[ApiContext, str, str]] = HookPoint("VM_BEFORE_START")
VM_RELEASE_NETWORK: HookPoint[[ApiContext, str, str]] = HookPoint("VM_RELEASE_NETWORK")

AgentEventHandler = Callable[["Services", dict[str, Any]], None]
AGENT_EVENTS: dict[str, AgentEventHandler] = {}
"""Event type (HostEvent.type, e.g. "VmStateChanged") -> its handler, for POST /agent/events."""
