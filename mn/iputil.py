"""Pure IPv4 helpers: conversions, netmasks, CIDRs and ZStack's IP range rules.

Every validator raises ApiError(SYS.1007) with a message naming the bad value. Only IPv4 is
handled; IPv6 ranges are rejected by the callers before they get here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mn.errors import invalid

MAX_PREFIX = 30  # a /31 or /32 has no usable host address besides network/broadcast (ZStack's rule)


def parse_ipv4(value: object, what: str = "IP address") -> ipaddress.IPv4Address:
    """The IPv4 address `value` (dotted quad, no leading zeros); ApiError otherwise."""
    if not isinstance(value, str):
        raise invalid(f"{what} {value!r} is not a valid IPv4 address")
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise invalid(f"{what} {value!r} is not a valid IPv4 address") from None


def is_ipv4(value: object) -> bool:
    try:
        parse_ipv4(value)
        return True
    except Exception:  # noqa: BLE001
        return False


def ip_to_int(ip: str) -> int:
    return int(parse_ipv4(ip))


def int_to_ip(n: int) -> str:
    return str(ipaddress.IPv4Address(n))


def netmask_to_prefix(netmask: str) -> int:
    """Prefix length of a dotted netmask with contiguous ones, 1..30 (e.g. 255.255.255.0 → 24)."""
    n = int(parse_ipv4(netmask, "netmask"))
    prefix = bin(n).count("1")
    if n != ((1 << 32) - 1) ^ ((1 << (32 - prefix)) - 1):
        raise invalid(f"netmask {netmask} is not a valid netmask: its one bits are not contiguous")
    if not 1 <= prefix <= MAX_PREFIX:
        raise invalid(f"netmask {netmask} (/{prefix}) is not usable: the prefix length must be "
                      f"between 1 and {MAX_PREFIX}")
    return prefix


def prefix_to_netmask(prefix: int) -> str:
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)


def parse_cidr(cidr: str) -> ipaddress.IPv4Network:
    """A network CIDR such as 10.0.0.0/24 (host bits must be zero, prefix 1..30)."""
    if not isinstance(cidr, str) or "/" not in cidr:
        raise invalid(f"networkCidr {cidr!r} is not a valid IPv4 CIDR such as 192.168.1.0/24")
    try:
        net = ipaddress.IPv4Network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise invalid(f"networkCidr {cidr!r} is not a valid IPv4 network CIDR: {exc}") from None
    if not 1 <= net.prefixlen <= MAX_PREFIX:
        raise invalid(f"networkCidr {cidr} is not usable: the prefix length must be between 1 and "
                      f"{MAX_PREFIX}")
    return net


def network_of(ip: str, netmask: str) -> ipaddress.IPv4Network:
    prefix = netmask_to_prefix(netmask)
    return ipaddress.IPv4Network(f"{parse_ipv4(ip)}/{prefix}", strict=False)


def host_bounds(net: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last host address (network and broadcast excluded) as integers."""
    return int(net.network_address) + 1, int(net.broadcast_address) - 1


def in_hosts(net: ipaddress.IPv4Network, ip_int: int) -> bool:
    lo, hi = host_bounds(net)
    return lo <= ip_int <= hi


@dataclass(frozen=True)
class RangeSpec:
    """A validated IPv4 range: start..end inclusive, within one subnet, gateway outside it."""

    start: int
    end: int
    netmask: str
    gateway: str | None
    cidr: str
    prefix: int

    @property
    def start_ip(self) -> str:
        return int_to_ip(self.start)

    @property
    def end_ip(self) -> str:
        return int_to_ip(self.end)

    @property
    def size(self) -> int:
        return self.end - self.start + 1


def validate_range(start_ip: str, end_ip: str, netmask: str, gateway: str | None) -> RangeSpec:
    """ZStack's rules for an IP range.

    start, end and gateway are host addresses (not the network or broadcast address) of the one
    subnet given by start/netmask; start <= end; the gateway is not inside [start, end].
    """
    start = int(parse_ipv4(start_ip, "startIp"))
    end = int(parse_ipv4(end_ip, "endIp"))
    net = network_of(start_ip, netmask)
    cidr = str(net)
    if start > end:
        raise invalid(f"startIp {start_ip} is greater than endIp {end_ip}")
    for name, value in (("startIp", start), ("endIp", end)):
        if not in_hosts(net, value):
            raise invalid(f"{name} {int_to_ip(value)} is not a host address of the subnet {cidr} "
                          f"(given by startIp {start_ip} and netmask {netmask})")
    gw = None
    if gateway is not None:
        g = int(parse_ipv4(gateway, "gateway"))
        if not in_hosts(net, g):
            raise invalid(f"gateway {gateway} is not a host address of the subnet {cidr} of the range "
                          f"[{start_ip}, {end_ip}]")
        if start <= g <= end:
            raise invalid(f"gateway {gateway} cannot be inside the IP range [{start_ip}, {end_ip}]")
        gw = int_to_ip(g)
    return RangeSpec(start, end, str(net.netmask), gw, cidr, net.prefixlen)


def ranges_from_cidr(cidr: str, gateway: str | None = None) -> list[RangeSpec]:
    """AddIpRangeByNetworkCidr: the CIDR's host addresses minus the gateway (default: the first
    host). A gateway in the middle splits the hosts into two ranges, as ZStack does."""
    net = parse_cidr(cidr)
    lo, hi = host_bounds(net)
    g = lo if gateway is None else int(parse_ipv4(gateway, "gateway"))
    if not lo <= g <= hi:
        raise invalid(f"gateway {int_to_ip(g)} is not a host address of the network {cidr}")
    pieces = [(a, b) for a, b in ((lo, g - 1), (g + 1, hi)) if a <= b]
    if not pieces:
        raise invalid(f"network {cidr} has no host address left besides the gateway {int_to_ip(g)}")
    mask = str(net.netmask)
    return [RangeSpec(a, b, mask, int_to_ip(g), str(net), net.prefixlen) for a, b in pieces]


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start <= b_end and b_start <= a_end
