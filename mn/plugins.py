"""The management node's plugins (zstack_plugins.Plugin): found once per process, then imported.

`enabled()` discovers the installed plugins (entry points) and orders them; `load("models")`
imports their protocol and model modules (what migrations need), `load("mn")` everything the MN
runs. Both are idempotent. A process has one set of plugins: the first call fixes which are
disabled (MNConfig.disabled_plugins); a later call asking for another set is refused, because
what a plugin registered at import cannot be taken back.

Invariants: nothing here imports a plugin by name (the core never does); a plugin whose module
fails to import stops the process with that error (it is installed and enabled, so the operator
must see it), while one left out by `ordered()` is only logged.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field

from zstack_plugins import Plugin, PluginError, discover, ordered
from zstack_plugins import references as _references

log = logging.getLogger(__name__)

PARTS = ("models", "mn")


@dataclass
class _State:
    disabled: frozenset[str] | None = None
    plugins: list[Plugin] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)  # name -> entry point `module:attribute`
    imported: set[str] = field(default_factory=set)  # parts imported: "models", "mn"


_state = _State()
_lock = threading.RLock()


def enabled(disabled: frozenset[str] | None = None) -> list[Plugin]:
    """The plugins this process loads, in dependency order. `disabled` (None: keep what an earlier
    call chose, else none) is fixed by the first call."""
    with _lock:
        if _state.disabled is None:
            _state.disabled = disabled or frozenset()
            _state.plugins, _state.left_out = ordered(discover(), _state.disabled)
            _state.references = _references()
            for name, why in sorted(_state.left_out.items()):
                log.warning("plugin %s is not loaded: %s", name, why)
        elif disabled is not None and disabled != _state.disabled:
            raise PluginError(f"this process loaded its plugins with {sorted(_state.disabled) or 'none'} "
                              f"disabled; it cannot now disable {sorted(disabled) or 'none'}")
        return list(_state.plugins)


def left_out() -> dict[str, str]:
    """Installed plugins not loaded, with the reason."""
    with _lock:
        return dict(_state.left_out)


def load(part: str = "mn", disabled: frozenset[str] | None = None) -> list[Plugin]:
    """Import the enabled plugins' modules up to `part`: "models" (protocol and models) or "mn"
    (also the API handlers, hooks and the rest)."""
    if part not in PARTS:
        raise ValueError(f"unknown plugin part {part!r}; one of {PARTS}")
    with _lock:
        plugins = enabled(disabled)
        for p in PARTS[:PARTS.index(part) + 1]:
            if p in _state.imported:
                continue
            for plugin in plugins:
                names = (*plugin.protocol, *plugin.models) if p == "models" else plugin.mn
                for name in names:
                    _import(plugin, name)
            _state.imported.add(p)
        return plugins


def _import(plugin: Plugin, module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise PluginError(f"plugin {plugin.name}: module {module} does not import: "
                          f"{type(exc).__name__}: {exc}") from exc


def references() -> dict[str, str]:
    """Enabled plugin name -> `module:attribute` of its Plugin (entry point), as found at discovery."""
    plugins = enabled()
    with _lock:
        return {p.name: _state.references[p.name] for p in plugins}


def names() -> list[str]:
    """The enabled plugins' names (discovering them if nothing did yet)."""
    return [p.name for p in enabled()]
