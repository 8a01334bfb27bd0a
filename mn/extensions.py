"""Extension points: named lists of plugin functions, so features hook in without core edits.

Declared here (the names are the contract); service modules append to them at import time.

- HOST_CONNECTED: fn(ctx, host_uuid) after a host's agent connected and reported its facts,
  inside the connect flow; raising fails the connect (e.g. an L2 bridge cannot be created).
- HOST_MAINTENANCE: fn(ctx, host_uuid) when a host enters maintenance (VMs must leave it).
- HOST_DISCONNECTED: fn(ctx, host_uuid) when pings fail and a host is marked Disconnected.
- VM_BEFORE_START: fn(ctx, vm_uuid, host_uuid) before a VM starts on a host (network prepare).
  The step that calls them has no rollback yet: a hook with side effects must add one (and the
  step then gets journaled for crash recovery).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hook = Callable[..., Any]

HOST_CONNECTED: list[Hook] = []
HOST_MAINTENANCE: list[Hook] = []
HOST_DISCONNECTED: list[Hook] = []
VM_BEFORE_START: list[Hook] = []


def call_all(hooks: list[Hook], *args: Any) -> None:
    for fn in hooks:
        fn(*args)
