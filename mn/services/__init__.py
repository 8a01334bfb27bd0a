"""API handlers, one module per resource family of the core; plugins bring the others.

Importing a module registers its handlers, flows, hooks and cascade relations. MODULES is the
core's own list, in the order their hooks and cascade relations run (zone's dependents: clusters
before storages and networks; HOST_CONNECTED: bridges before anything that needs them); plugins
register after the core (mn.plugins), so their hooks run after the core's.
"""

from __future__ import annotations

import importlib

MODULES = [
    "identity", "management", "tag", "globalconfig_api", "zone", "cluster", "host", "host_tracker",
    "primary_storage", "backup_storage", "image", "offering", "l2", "l3", "vm", "volume", "capacity", "gc",
    "accounts", "users", "policies", "sharing", "quotas",
]


def load_all(disabled: frozenset[str] | None = None) -> None:
    """Import the core's service modules, then the enabled plugins' (mn.plugins.load), then
    refresh what is derived from the models (query targets, taggable resource types)."""
    from mn import plugins, query
    from mn.services import tag

    for name in MODULES:
        importlib.import_module(f"mn.services.{name}")
    plugins.load("mn", disabled)
    query.refresh_targets()
    tag.resource_types.cache_clear()
