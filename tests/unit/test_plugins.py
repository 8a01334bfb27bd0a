"""The plugin machinery without a server: declarations, their order, the typed registries plugins
register into, and what each kind of process loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from kvmagent import plugins as agent_plugins
from kvmagent import protocol as p
from mn import extensions, plugins
from mn.resource_types import PrimaryStorageType, TypeRegistry
from simulator import registry as sim_registry
from zstack_plugins import Plugin, PluginError, discover, ordered, references

IN_TREE = {"eip", "kvm", "local_storage", "sftp", "simulator"}


def _p(name: str, *requires: str) -> Plugin:
    return Plugin(name=name, requires=requires)


def test_the_in_tree_plugins_are_installed_entry_points() -> None:
    found = discover()
    assert set(found) >= IN_TREE
    refs = references()
    assert refs["eip"] == "zstack_plugins.eip:PLUGIN"
    assert found["eip"].modules("kvmagent") == ("zstack_plugins.eip.protocol", "zstack_plugins.eip.agent")
    assert found["kvm"].modules("kvmagent") == ()  # the KVM agent itself is the core's
    assert set(plugins.names()) >= IN_TREE


def test_plugins_load_after_what_they_require_and_are_left_out_with_a_reason() -> None:
    got, left = ordered({p.name: p for p in (_p("b", "a"), _p("a"), _p("c", "missing"), _p("d", "c"),
                                               _p("x", "y"), _p("y", "x"), _p("e"))},
                        disabled=frozenset({"e"}))
    assert [p.name for p in got] == ["a", "b"]
    assert left["c"] == "requires plugin missing, which is not installed"
    assert left["d"].startswith("requires plugin c, which is not loaded")
    assert "cycle" in left["x"] or "cycle" in left["y"]
    assert left["e"] == "disabled"


def test_a_plugin_name_must_be_usable_as_a_version_table_suffix() -> None:
    with pytest.raises(PluginError):
        Plugin(name="My-Plugin")
    with pytest.raises(ValueError):
        Plugin(name="ok").modules("browser")


def test_a_process_keeps_the_plugins_it_loaded(monkeypatch) -> None:
    monkeypatch.setattr(plugins, "_state", plugins._State())
    assert "eip" not in [p.name for p in plugins.enabled(frozenset({"eip"}))]
    assert plugins.left_out()["eip"] == "disabled"
    assert plugins.enabled() == plugins.enabled(frozenset({"eip"}))  # None keeps the choice
    with pytest.raises(PluginError):
        plugins.enabled(frozenset())  # what was registered at import cannot be taken back


def test_hook_points_run_in_order_and_the_logged_run_goes_on_after_a_failure() -> None:
    point: extensions.HookPoint[[str]] = extensions.HookPoint("TEST")
    seen: list[str] = []

    def first(x: str) -> None:
        seen.append(f"first {x}")
        raise RuntimeError("boom")

    @point.register
    def second(x: str) -> None:
        seen.append(f"second {x}")

    point.register(first)
    point.register(first)  # once only
    assert point.hooks() == (second, first)
    point.run_logged("a")
    assert seen == ["second a", "first a"]
    with pytest.raises(RuntimeError):
        point.run("b")
    point.unregister(first)
    point.run("c")
    assert seen[-1] == "second c"


def test_type_registries_refuse_two_types_of_one_name_and_count_registrations() -> None:
    reg: TypeRegistry[PrimaryStorageType] = TypeRegistry("primary storage type")
    t = reg.register(PrimaryStorageType("A"))
    assert reg.register(PrimaryStorageType("A")) is t and reg.version == 1  # the same again: no-op
    with pytest.raises(ValueError):
        reg.register(PrimaryStorageType("A", host_filters=lambda ps, vm: []))
    reg.register(PrimaryStorageType("B"))
    assert reg.names() == ["A", "B"] and reg.version == 2


@dataclass
class _ToyCmd:
    PATH: ClassVar[str] = "/test/plugins/toy"
    hostUuid: str


def test_protocol_registration_refuses_a_second_class_for_a_path() -> None:
    p.register(_ToyCmd)
    try:
        p.register(_ToyCmd)  # the same class again is fine

        @dataclass
        class Other:
            PATH: ClassVar[str] = "/test/plugins/toy"

        with pytest.raises(ValueError):
            p.register(Other)
        with pytest.raises(RuntimeError):
            sim_registry.handles(sim_registry.HOSTS, _ToyCmd)(lambda s, h, c: p.Reply())
            sim_registry.handles(sim_registry.HOSTS, _ToyCmd)(lambda s, h, c: p.Reply())
    finally:
        p.COMMANDS.pop(_ToyCmd.PATH, None)
        sim_registry.HANDLERS[sim_registry.HOSTS].pop(_ToyCmd.PATH, None)


def test_an_agent_loads_the_plugins_it_is_told_and_refuses_what_is_not_one() -> None:
    loaded = agent_plugins.load("zstack_plugins.eip:PLUGIN, zstack_plugins.sftp:PLUGIN")
    assert [p.name for p in loaded] == ["eip", "sftp"]
    from kvmagent.registry import COMMANDS

    assert "/flatnetworkprovider/eip/apply" in COMMANDS and "/backupstorage/connect" in COMMANDS
    with pytest.raises(PluginError):
        agent_plugins.resolve("kvmagent.protocol:COMMANDS")
