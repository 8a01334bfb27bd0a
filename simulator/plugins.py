"""The simulator's plugins: the simulator modules of every installed plugin, imported once.

The simulator serves what the plugins installed beside it add to the agent protocol; it loads
every installed plugin (the MN decides which features it uses).
"""

from __future__ import annotations

import importlib
import logging
import threading

from zstack_plugins import Plugin, discover, ordered

log = logging.getLogger(__name__)
_loaded: list[Plugin] | None = None
_lock = threading.Lock()


def load() -> list[Plugin]:
    """Import the installed plugins' protocol and simulator modules (idempotent)."""
    global _loaded
    with _lock:
        if _loaded is None:
            plugins, left_out = ordered(discover())
            for name, why in sorted(left_out.items()):
                log.warning("plugin %s is not loaded: %s", name, why)
            for plugin in plugins:
                for module in plugin.modules("simulator"):
                    importlib.import_module(module)
            _loaded = plugins
        return list(_loaded)
