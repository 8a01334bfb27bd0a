"""Connection status of hosts, primary storages and backup storages (ZStack's HostStatus,
PrimaryStorageStatus, BackupStorageStatus): one set of names and moves for all three.

`status` is connectivity, apart from the admin `state`. A connect (add, reconnect, the tracker's
reconnect) first claims the resource by compare-and-swap of its status to CONNECTING, so one connect
runs at a time; it ends CONNECTED, or DISCONNECTED when it failed (an add that fails leaves no row).
Missed pings move CONNECTED to DISCONNECTED. Nothing stays CONNECTING after an MN restart: the
reconcilers move what no live job owns to DISCONNECTED.
"""

from __future__ import annotations

CONNECTING, CONNECTED, DISCONNECTED = "Connecting", "Connected", "Disconnected"
STATUSES = (CONNECTING, CONNECTED, DISCONNECTED)

CLAIMABLE = (CONNECTED, DISCONNECTED)
"""The statuses a connect may claim from (a CONNECTING one is being connected already)."""

MOVES: dict[str, tuple[str, ...]] = {
    CONNECTING: (CONNECTED, DISCONNECTED),
    CONNECTED: (CONNECTING, DISCONNECTED),
    DISCONNECTED: (CONNECTING, CONNECTED),
}
"""status -> the statuses it may move to."""
