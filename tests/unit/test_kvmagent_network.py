"""Pure helpers of kvmagent.network: interface names and parsing `ip -j` output (real samples)."""

from __future__ import annotations

import pytest

from kvmagent import protocol as p
from kvmagent.network import (
    Link,
    check_ifname,
    check_vlan,
    parse_addresses,
    parse_gateway_routes,
    parse_links,
    vlan_device,
)
from kvmagent.registry import AgentError

# `ip -j -d link show` on Debian 12 (trimmed): a veth enslaved to a bridge, the bridge, a VLAN device, a NIC.
LINKS = """[
 {"ifindex":34,"link":"zstsp","ifname":"zsts","flags":["BROADCAST"],"master":"zstsbr",
  "linkinfo":{"info_kind":"veth","info_slave_kind":"bridge","info_slave_data":{"state":"disabled","id":"0x8001"}}},
 {"ifindex":35,"ifname":"zstsbr","flags":["BROADCAST"],
  "linkinfo":{"info_kind":"bridge","info_data":{"forward_delay":1500,"stp_state":0}}},
 {"ifindex":36,"link":"eth1","ifname":"eth1.100","master":"br_ab12cd_100",
  "linkinfo":{"info_kind":"vlan","info_data":{"protocol":"802.1Q","id":100,"flags":["REORDER_HDR"]}}},
 {"ifindex":4,"ifname":"eth0","flags":["UP"],"mtu":1400}
]"""

ADDRS = """[{"ifindex":4,"ifname":"eth0","addr_info":[
 {"family":"inet","local":"192.0.2.2","prefixlen":24,"broadcast":"192.0.2.255","scope":"global","label":"eth0"},
 {"family":"inet6","local":"fd00::2","prefixlen":64,"scope":"global","nodad":true},
 {"family":"inet6","local":"fe80::fc:ff:fe00:1","prefixlen":64,"scope":"link"}]}]"""

ROUTES = """[{"dst":"default","gateway":"192.0.2.1","flags":[]},
 {"dst":"192.0.2.0/24","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},
 {"dst":"10.9.0.0/16","gateway":"192.0.2.254","flags":[]}]"""


def test_parse_links_reads_kind_master_and_vlan() -> None:
    links = parse_links(LINKS)
    assert links["zsts"] == Link("zsts", "veth", "zstsbr", None, "zstsp")
    assert links["zstsbr"] == Link("zstsbr", "bridge", None, None, None)
    assert links["eth1.100"] == Link("eth1.100", "vlan", "br_ab12cd_100", 100, "eth1")
    assert links["eth0"] == Link("eth0", None, None, None, None)
    assert parse_links("") == {}


def test_parse_addresses_keeps_global_ones_only() -> None:
    assert parse_addresses(ADDRS) == ["192.0.2.2/24", "fd00::2/64"]
    assert parse_addresses('[{"ifname":"x","addr_info":[]}]') == []


def test_parse_gateway_routes() -> None:
    assert parse_gateway_routes(ROUTES) == [("default", "192.0.2.1"), ("10.9.0.0/16", "192.0.2.254")]


@pytest.mark.parametrize("name", ["eth0", "br_0123456789ab", "a", "enp0s31f6.4094"])
def test_valid_interface_names(name: str) -> None:
    assert check_ifname(name, "x") == name


@pytest.mark.parametrize("name", ["", "a" * 16, "eth/0", "eth:0", "eth 0", ".", "..", None, 5])
def test_invalid_interface_names(name: object) -> None:
    with pytest.raises(AgentError, match="1 to 15 characters"):
        check_ifname(name, "bridge name")


def test_bridge_names_from_the_protocol_fit() -> None:
    l2 = "0123456789abcdef0123456789abcdef"
    assert check_ifname(p.bridge_name(l2), "b") == "br_0123456789ab"
    assert check_ifname(p.bridge_name(l2, 4094), "b") == "br_012345_4094"


def test_vlan_device_names() -> None:
    assert vlan_device("eth0", 100) == "eth0.100"
    with pytest.raises(AgentError, match="longer than 15"):
        vlan_device("enp0s31f6abc", 4094)


@pytest.mark.parametrize("vlan", [0, 4095, -1, True, "100", None, 1.5])
def test_invalid_vlans(vlan: object) -> None:
    with pytest.raises(AgentError, match="1 to 4094"):
        check_vlan(vlan, "br")


def test_vlan_range_ends_are_valid() -> None:
    assert check_vlan(1, "br") == 1 and check_vlan(4094, "br") == 4094
