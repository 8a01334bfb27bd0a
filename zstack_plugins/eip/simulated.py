"""Simulated hosts' side of the EIP commands: applied EIPs kept per host (`eips`: VIP -> EipTO wire
dict, in the host's admin view and saved state), with the checks a real host's iptables would fail."""

from __future__ import annotations

import ipaddress
from typing import Any

from kvmagent import protocol as p
from simulator import registry
from simulator.hosts import MAC, need_bridge
from simulator.model import SimError, SimHost
from simulator.state import SimState
from zstack_plugins.eip.protocol import ApplyEipCmd, DeleteEipCmd, EipTO

KEY = "eips"
registry.host_state(KEY)


def applied(host: SimHost) -> dict[str, dict[str, Any]]:
    """The host's applied EIPs by VIP (hold the host's lock)."""
    return host.extras.setdefault(KEY, {})


def _check_eip(host: SimHost, e: EipTO) -> None:
    for name in ("vip", "guestIp"):
        value = getattr(e, name)
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise SimError(f"EIP {e.eipUuid}: {name} {value!r} is not an IPv4 address") from None
    if e.vip == e.guestIp:
        raise SimError(f"EIP {e.eipUuid}: the VIP and the guest IP are both {e.vip}")
    if not MAC.match(e.nicMac or ""):
        raise SimError(f"EIP {e.eipUuid}: nicMac {e.nicMac!r} is not a MAC address")
    need_bridge(host, e.guestBridgeName, f"EIP {e.eipUuid}")
    if e.vipBridgeName is not None:
        need_bridge(host, e.vipBridgeName, f"EIP {e.eipUuid}")


@registry.handles(registry.HOSTS, ApplyEipCmd)
def apply_eips(state: SimState, host: SimHost, cmd: ApplyEipCmd) -> p.Reply:
    """All or nothing: every EIP is checked before any is recorded. A VIP applied for another
    EIP (or another guest IP) on this host is refused; the same EIP again is a no-op."""
    vips = [e.vip for e in cmd.eips]
    if len(set(vips)) != len(vips):
        raise SimError(f"two EIPs of one command use the same VIP: {vips}")
    with host.lock:
        eips = applied(host)
        for e in cmd.eips:
            _check_eip(host, e)
            old = eips.get(e.vip)
            if old is not None and (old["eipUuid"] != e.eipUuid or old["guestIp"] != e.guestIp):
                raise SimError(f"VIP {e.vip} is already applied on simulated host {host.uuid} for EIP "
                               f"{old['eipUuid']} (guest {old['guestIp']})")
        for e in cmd.eips:
            eips[e.vip] = p.to_wire(e)
    return p.Reply()


@registry.handles(registry.HOSTS, DeleteEipCmd)
def delete_eips(state: SimState, host: SimHost, cmd: DeleteEipCmd) -> p.Reply:
    """Deleting an EIP the host does not have succeeds; a VIP applied for another EIP is refused."""
    with host.lock:
        eips = applied(host)
        for e in cmd.eips:
            old = eips.get(e.vip)
            if old is not None and old["eipUuid"] != e.eipUuid:
                raise SimError(f"VIP {e.vip} on simulated host {host.uuid} is applied for EIP {old['eipUuid']}, "
                               f"not {e.eipUuid}")
        for e in cmd.eips:
            eips.pop(e.vip, None)
    return p.Reply()
