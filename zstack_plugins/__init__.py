"""Plugins: a feature family (its resources, APIs, agent commands) added by a package, declared once.

A plugin package exposes one `Plugin` under the entry-point group `zstack.plugins`:

    [project.entry-points."zstack.plugins"]
    eip = "zstack_plugins.eip:PLUGIN"

and its parts name the modules each process imports: the management node imports `protocol`,
`models` and `mn`; a KVM agent `protocol` and `kvmagent`; the simulator `protocol` and
`simulator`. Importing a module registers what it declares (API handlers, flows, hooks, cascade
relations, inventory collections, global configs, agent and simulator command handlers), so the
core never imports a plugin and removing a plugin's entry point removes the feature: its APIs
answer SYS.1014 (not implemented), its tables stay in the database untouched.

Invariants:
- This module imports only the standard library: it is shipped to hosts with the agent.
- A plugin's `protocol` and `kvmagent` modules import only `kvmagent`, this package and the
  standard library: they run on hosts, where the management node's code is not installed.
- A plugin is loaded only after every plugin it `requires`; one whose requirement is absent is
  not loaded (the reason is logged), so a process always starts.

The in-tree plugins (eip, local_storage, sftp, kvm, simulator) are subpackages of this package;
they never import each other's internals, only the core (docs/plugins.md).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import metadata

GROUP = "zstack.plugins"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plugin:
    """A feature family: what each kind of process imports to have it."""

    name: str
    summary: str = ""
    requires: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()   # agent-protocol commands (kvmagent.protocol.register)
    models: tuple[str, ...] = ()     # SQLAlchemy models (MN)
    migrations: str | None = None    # package holding the Alembic revisions of those models (MN)
    mn: tuple[str, ...] = ()         # API handlers, flows, hooks, cascades, collections, configs (MN)
    kvmagent: tuple[str, ...] = ()   # @command handlers a KVM agent serves (shipped to hosts)
    simulator: tuple[str, ...] = ()  # handlers the simulator serves

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise PluginError(f"plugin name {self.name!r} must be lowercase letters, digits and _ (it names "
                              "the plugin's version table and its entry point)")

    def modules(self, side: str) -> tuple[str, ...]:
        """The modules a process of `side` ("mn", "kvmagent", "simulator") imports, in order."""
        if side == "mn":
            return (*self.protocol, *self.models, *self.mn)
        if side == "kvmagent":
            return (*self.protocol, *self.kvmagent)
        if side == "simulator":
            return (*self.protocol, *self.simulator)
        raise ValueError(f"unknown side {side!r} (mn, kvmagent, simulator)")


class PluginError(Exception):
    """A plugin that cannot be declared or loaded; the message names it."""


def discover(group: str = GROUP) -> dict[str, Plugin]:
    """The plugins installed in this environment, by name. An entry point that does not load or
    is not a Plugin is logged and skipped; two plugins of one name are an error."""
    found: dict[str, Plugin] = {}
    for ep in metadata.entry_points(group=group):
        try:
            obj = ep.load()
        except Exception:  # a broken plugin must not stop the process
            log.exception("plugin entry point %s = %s does not load; skipped", ep.name, ep.value)
            continue
        if not isinstance(obj, Plugin):
            log.error("plugin entry point %s = %s is a %s, not a zstack_plugins.Plugin; skipped",
                      ep.name, ep.value, type(obj).__name__)
            continue
        if obj.name != ep.name:
            log.error("plugin entry point %s names a plugin called %s; skipped", ep.name, obj.name)
            continue
        if obj.name in found:
            raise PluginError(f"two plugins are called {obj.name}: {found[obj.name]} and {obj}")
        found[obj.name] = obj
    return found


def references(group: str = GROUP) -> dict[str, str]:
    """Plugin name -> its entry point's `module:attribute` (what an agent without entry points,
    on a host, imports to find the Plugin)."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=group)}


def ordered(plugins: dict[str, Plugin], disabled: frozenset[str] = frozenset(),
            ) -> tuple[list[Plugin], dict[str, str]]:
    """The plugins to load, each after those it requires, and the ones left out with the reason
    (disabled, a requirement missing or left out, or a cycle)."""
    out: list[Plugin] = []
    left_out: dict[str, str] = {n: "disabled" for n in disabled if n in plugins}
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> bool:
        if name in left_out:
            return False
        if state.get(name) == "done":
            return True
        if name in path:
            left_out[name] = f"requirement cycle {' -> '.join((*path, name))}"
            return False
        plugin = plugins.get(name)
        if plugin is None:
            return False
        for req in plugin.requires:
            if req not in plugins:
                left_out[name] = f"requires plugin {req}, which is not installed"
                return False
            if not visit(req, (*path, name)):
                left_out.setdefault(name, f"requires plugin {req}, which is not loaded ({left_out.get(req)})")
                return False
        state[name] = "done"
        out.append(plugin)
        return True

    for name in sorted(plugins):
        visit(name, ())
    return out, left_out
