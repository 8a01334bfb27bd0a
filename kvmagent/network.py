"""L2 networks on a real host: Linux bridges made with iproute2 (`ip`).

NoVlan: bridge `bridgeName` with the physical interface as its port. Like ZStack's agent, the
interface's global addresses and its gateway routes move to the bridge (the host stays reachable
when the interface is its management one) and move back when the bridge is deleted.
Vlan: the 802.1Q device `<physicalInterfaceName>.<vlan>` on the interface is the bridge's port.

Invariants: create is idempotent (an existing bridge that already matches is left as it is; one
that conflicts — another VLAN id, the interface in another bridge — is an error naming it);
delete of an absent bridge succeeds; a bridge with ports other than its own interface (VM taps) is
in use and is not deleted; check fails with "does not exist" unless the bridge and its port match.
Bridge operations are serialised in this process (one lock).
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, NamedTuple

from kvmagent import protocol as p
from kvmagent.registry import AgentError, command
from kvmagent.shell import run

MAX_IFNAME = 15  # IFNAMSIZ - 1
_lock = threading.Lock()


class Link(NamedTuple):
    name: str
    kind: str | None  # linkinfo kind: bridge, vlan, veth, dummy, tun...; None for plain NICs
    master: str | None
    vlan_id: int | None
    parent: str | None  # the lower device of a vlan


# ---- pure helpers (unit-tested) ------------------------------------------------------------------

def check_ifname(name: Any, what: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_IFNAME or any(
            c in name for c in "/: \t\n") or name in (".", ".."):
        raise AgentError(f"invalid {what} {name!r}: Linux interface names are 1 to {MAX_IFNAME} characters "
                         f"without '/', ':' or spaces")
    return name


def vlan_device(iface: str, vlan: int) -> str:
    """The VLAN device of `iface` for `vlan` (e.g. eth0.100); error if the name does not fit."""
    name = f"{iface}.{vlan}"
    if len(name) > MAX_IFNAME:
        raise AgentError(f"VLAN device name {name} is longer than {MAX_IFNAME} characters: "
                         f"interface {iface} has too long a name for vlan {vlan}")
    return name


def check_vlan(vlan: Any, bridge: str) -> int:
    if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094:
        raise AgentError(f"bridge {bridge}: vlan must be an integer from 1 to 4094, not {vlan!r}")
    return vlan


def parse_links(text: str) -> dict[str, Link]:
    """`ip -j -d link show` output -> Link by name."""
    out = {}
    for d in json.loads(text or "[]"):
        info = d.get("linkinfo") or {}
        data = info.get("info_data") or {}
        kind = info.get("info_kind")
        out[d["ifname"]] = Link(d["ifname"], kind, d.get("master"), data.get("id") if kind == "vlan" else None,
                                d.get("link"))
    return out


def parse_addresses(text: str) -> list[str]:
    """`ip -j addr show dev X` output -> the global addresses as `addr/prefix` (IPv4 and IPv6)."""
    out = []
    for d in json.loads(text or "[]"):
        for a in d.get("addr_info", []):
            if a.get("scope") == "global" and a.get("family") in ("inet", "inet6"):
                out.append(f"{a['local']}/{a['prefixlen']}")
    return out


def parse_gateway_routes(text: str) -> list[tuple[str, str]]:
    """`ip -j route show dev X` output -> (destination, gateway) of the routes through a gateway."""
    return [(d["dst"], d["gateway"]) for d in json.loads(text or "[]") if d.get("gateway") and d.get("dst")]


# ---- the host's links ------------------------------------------------------------------------------

def links() -> dict[str, Link]:
    return parse_links(run(["ip", "-j", "-d", "link", "show"], "listing network interfaces"))


def _hostname() -> str:
    return socket.gethostname()


def _move_addresses(src: str, dst: str) -> None:
    """Move the global addresses and gateway routes of `src` to `dst` (add first, then remove)."""
    addrs = parse_addresses(run(["ip", "-j", "addr", "show", "dev", src], f"reading the addresses of {src}"))
    if not addrs:
        return
    routes = []
    for family in ("-4", "-6"):
        routes += parse_gateway_routes(run(["ip", "-j", family, "route", "show", "dev", src],
                                           f"reading the routes of {src}"))
    for a in addrs:
        run(["ip", "addr", "replace", a, "dev", dst], f"moving address {a} from {src} to {dst}")
        run(["ip", "addr", "del", a, "dev", src], f"moving address {a} from {src} to {dst}")
    for dst_net, gw in routes:
        run(["ip", "route", "replace", dst_net, "via", gw, "dev", dst], f"moving route {dst_net} via {gw} to {dst}")


def _check_port(port: Link, bridge: str) -> None:
    if port.master not in (None, bridge):
        raise AgentError(f"cannot add {port.name} to bridge {bridge} on host {_hostname()}: it is already a "
                         f"port of {port.master}")
    if port.kind == "bridge":
        raise AgentError(f"cannot add {port.name} to bridge {bridge} on host {_hostname()}: it is itself a bridge")


def _up(*names: str) -> None:
    for n in names:
        run(["ip", "link", "set", "dev", n, "up"], f"bringing {n} up")


def _physical(cmd: p.BridgeCmd, current: dict[str, Link]) -> str:
    iface = check_ifname(cmd.physicalInterfaceName, "physicalInterfaceName")
    if iface not in current:
        raise AgentError(f"no such interface {iface} on host {_hostname()}: cannot serve bridge {cmd.bridgeName}")
    return iface


def _add_vlan_device(iface: str, name: str, vlan: Any) -> None:
    try:
        run(["ip", "link", "add", "link", iface, "name", name, "type", "vlan", "id", str(vlan)],
            f"creating VLAN device {name}")
    except AgentError as exc:
        if "Unknown device type" in str(exc):
            raise AgentError(f"{exc} (the kernel of host {_hostname()} has no 802.1Q VLAN support: "
                             f"load the 8021q module)") from None
        raise


def create_bridge(cmd: p.BridgeCmd, vlan: int | None) -> p.Reply:
    """Everything is checked before anything is made; what this call made is removed if a later step fails."""
    bridge = check_ifname(cmd.bridgeName, "bridge name")
    with _lock:
        current = links()
        iface = _physical(cmd, current)
        port = iface if vlan is None else vlan_device(iface, vlan)
        existing = current.get(bridge)
        if existing is not None and existing.kind != "bridge":
            raise AgentError(f"cannot create bridge {bridge} on host {_hostname()}: an interface of that name "
                             f"exists and is a {existing.kind or 'physical'} interface, not a bridge")
        dev = current.get(port)
        if dev is not None:
            _check_port(dev, bridge)
            if vlan is not None and (dev.kind != "vlan" or dev.vlan_id != vlan or dev.parent != iface):
                raise AgentError(f"cannot create bridge {bridge} on host {_hostname()}: {port} exists and is "
                                 f"not VLAN {vlan} of {iface}")
        undo: list[list[str]] = []  # how to take back each step done so far
        try:
            if dev is None:
                _add_vlan_device(iface, port, vlan)
                undo.append(["ip", "link", "del", "dev", port])
            if existing is None:
                run(["ip", "link", "add", "name", bridge, "type", "bridge"], f"creating bridge {bridge}")
                undo.append(["ip", "link", "del", "dev", bridge])
            fresh_port = dev is None or dev.master != bridge
            if fresh_port:
                run(["ip", "link", "set", "dev", port, "master", bridge], f"adding {port} to bridge {bridge}")
                undo.append(["ip", "link", "set", "dev", port, "nomaster"])
            _up(iface, port, bridge)
            if vlan is None and fresh_port:
                _move_addresses(iface, bridge)
        except AgentError:
            for args in reversed(undo):
                try:
                    run(args, f"undoing a failed creation of bridge {bridge}")
                except AgentError:
                    pass  # the original error is the one to report
            raise
    return p.Reply()


def check_bridge(cmd: p.CheckBridgeCmd) -> p.Reply:
    bridge = check_ifname(cmd.bridgeName, "bridge name")
    current = links()
    link = current.get(bridge)
    if link is None or link.kind != "bridge":
        raise AgentError(f"bridge {bridge} does not exist on host {_hostname()}")
    iface = _physical(cmd, current)
    port = iface if cmd.vlan is None else vlan_device(iface, check_vlan(cmd.vlan, bridge))
    dev = current.get(port)
    if dev is None or dev.master != bridge:
        raise AgentError(f"bridge {bridge} exists on host {_hostname()} but {port} is not its port "
                         f"(the bridge for {'no VLAN' if cmd.vlan is None else f'VLAN {cmd.vlan}'} does not exist)")
    if cmd.vlan is not None and (dev.kind != "vlan" or dev.vlan_id != cmd.vlan):
        raise AgentError(f"bridge {bridge} on host {_hostname()}: {port} is not VLAN {cmd.vlan}")
    return p.Reply()


def delete_bridge(cmd: p.DeleteBridgeCmd) -> p.Reply:
    bridge = check_ifname(cmd.bridgeName, "bridge name")
    iface = check_ifname(cmd.physicalInterfaceName, "physicalInterfaceName")
    vdev = vlan_device(iface, check_vlan(cmd.vlan, bridge)) if cmd.vlan is not None else None
    with _lock:
        current = links()
        link = current.get(bridge)
        if link is not None:
            if link.kind != "bridge":
                raise AgentError(f"cannot delete bridge {bridge} on host {_hostname()}: it is a "
                                 f"{link.kind or 'physical'} interface, not a bridge")
            ports = sorted(n for n, x in current.items() if x.master == bridge)
            others = [n for n in ports if n not in (iface, vdev)]
            if others:
                raise AgentError(f"bridge {bridge} on host {_hostname()} is in use by interfaces {others}")
            if vdev is None and iface in ports:
                _move_addresses(bridge, iface)
            run(["ip", "link", "del", "dev", bridge], f"deleting bridge {bridge}")
        dev = current.get(vdev) if vdev else None
        if dev is not None and dev.kind == "vlan" and dev.master in (None, bridge):
            run(["ip", "link", "del", "dev", dev.name], f"deleting VLAN device {dev.name}")
    return p.Reply()


def bridge_exists(name: str) -> bool:
    """A cheap check for other modules (a VM's NIC needs its bridge)."""
    return Path(f"/sys/class/net/{name}/bridge").is_dir()


# ---- commands -----------------------------------------------------------------------------------

@command(p.CreateBridgeCmd)
def _create_bridge(agent: Any, cmd: p.CreateBridgeCmd) -> p.Reply:
    if cmd.vlan is not None:
        raise AgentError(f"bridge {cmd.bridgeName}: a no-VLAN bridge takes no vlan (got {cmd.vlan})")
    return create_bridge(cmd, None)


@command(p.CreateVlanBridgeCmd)
def _create_vlan_bridge(agent: Any, cmd: p.CreateVlanBridgeCmd) -> p.Reply:
    return create_bridge(cmd, check_vlan(cmd.vlan, cmd.bridgeName))


@command(p.CheckBridgeCmd)
def _check_bridge(agent: Any, cmd: p.CheckBridgeCmd) -> p.Reply:
    return check_bridge(cmd)


@command(p.DeleteBridgeCmd)
def _delete_bridge(agent: Any, cmd: p.DeleteBridgeCmd) -> p.Reply:
    return delete_bridge(cmd)
