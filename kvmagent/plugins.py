"""The agent's plugins: the kvmagent modules (and protocol commands) of zstack_plugins.Plugin specs.

Which plugins: `AgentConfig.plugins`, comma-separated references `module:attribute` to Plugin
objects (what a deploy writes: the plugins the MN runs, shipped with the agent's code), or, when
empty, every plugin installed beside the agent (entry points, as in a development venv).
"""

from __future__ import annotations

import importlib
import logging

from zstack_plugins import Plugin, PluginError, discover, ordered

log = logging.getLogger(__name__)


def resolve(refs: str) -> dict[str, Plugin]:
    """The Plugin objects named by `module:attribute` references."""
    out: dict[str, Plugin] = {}
    for ref in (r.strip() for r in refs.split(",")):
        if not ref:
            continue
        module, _, attr = ref.partition(":")
        obj = getattr(importlib.import_module(module), attr or "PLUGIN", None)
        if not isinstance(obj, Plugin):
            raise PluginError(f"agent plugin reference {ref!r} does not name a zstack_plugins.Plugin")
        out[obj.name] = obj
    return out


def load(refs: str = "") -> list[Plugin]:
    """Import the plugins' protocol and kvmagent modules, each after those it requires."""
    plugins, left_out = ordered(resolve(refs) if refs.strip() else discover())
    for name, why in sorted(left_out.items()):
        log.warning("plugin %s is not loaded: %s", name, why)
    for plugin in plugins:
        for module in plugin.modules("kvmagent"):
            importlib.import_module(module)
    log.info("agent plugins: %s", ", ".join(p.name for p in plugins) or "none")
    return plugins
