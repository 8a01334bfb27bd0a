"""Extension points: named lists of plugin functions, so features hook in without core edits.

Declared here (the names are the contract); service modules append to them at import time.

- HOST_CONNECTED: fn(ctx, host_uuid) after a host's agent connected and reported its facts,
  inside the connect flow; raising fails the connect (e.g. an L2 bridge cannot be created).
- HOST_BEFORE_CONNECT: fn(ctx, host_uuid) in the connect flow before the agent is contacted
  (a KVM host's agent is deployed or redeployed there when it is not current).
- HOST_DELETED: fn(ctx, host_uuid, cluster_uuid) after a host's row was deleted.
- PRIMARY_STORAGE_ATTACHED / PRIMARY_STORAGE_DETACHED: fn(ctx, ps_uuid, cluster_uuid) after
  AttachPrimaryStorageToCluster / DetachPrimaryStorageFromCluster (per-host storage follows).
- HOST_MAINTENANCE: fn(ctx, host_uuid) when a host enters maintenance (VMs must leave it).
- HOST_DISCONNECTED: fn(ctx, host_uuid) when pings fail and a host is marked Disconnected.
- VM_BEFORE_START: fn(ctx, vm_uuid, host_uuid) before a VM starts on a host (network prepare),
  also on the destination host before a migration; raising fails the start (or migration).
- VM_RELEASE_NETWORK: fn(ctx, vm_uuid, host_uuid) undoes VM_BEFORE_START on that host: when the
  start or migration fails (the prepare-net step's rollback, journaled for crash recovery), after
  the VM stopped or was destroyed, and on the source host after a migration. Hooks must tolerate
  having nothing to undo; after a stop, destroy or migration they are called best effort (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Hook = Callable[..., Any]
log = logging.getLogger(__name__)

HOST_BEFORE_CONNECT: list[Hook] = []
HOST_CONNECTED: list[Hook] = []
HOST_DELETED: list[Hook] = []
PRIMARY_STORAGE_ATTACHED: list[Hook] = []
PRIMARY_STORAGE_DETACHED: list[Hook] = []
HOST_MAINTENANCE: list[Hook] = []
HOST_DISCONNECTED: list[Hook] = []
VM_BEFORE_START: list[Hook] = []
VM_RELEASE_NETWORK: list[Hook] = []


def call_all(hooks: list[Hook], *args: Any) -> None:
    for fn in hooks:
        fn(*args)


def call_all_logged(hooks: list[Hook], *args: Any) -> None:
    """Call every hook even if some fail; failures are logged, not raised (best-effort cleanup)."""
    for fn in hooks:
        try:
            fn(*args)
        except Exception:
            log.exception("extension %s%r failed", getattr(fn, "__qualname__", fn), args)
