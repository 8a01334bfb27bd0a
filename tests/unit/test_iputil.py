from __future__ import annotations

import pytest

from mn import iputil as u
from mn.errors import INVALID_ARGUMENT, ApiError


def _err(fn, *args) -> str:
    with pytest.raises(ApiError) as ei:
        fn(*args)
    assert ei.value.code == INVALID_ARGUMENT
    return ei.value.details


def test_ip_int_roundtrip():
    for ip in ("0.0.0.0", "10.0.0.1", "192.168.255.254", "255.255.255.255"):
        assert u.int_to_ip(u.ip_to_int(ip)) == ip
    assert u.ip_to_int("10.0.1.2") == (10 << 24) + 258


@pytest.mark.parametrize("bad", ["", "10.0.0", "10.0.0.256", "010.0.0.1", "a.b.c.d", "::1", "10.0.0.1/24", None, 7])
def test_parse_ipv4_rejects_garbage(bad):
    assert "not a valid IPv4 address" in _err(u.parse_ipv4, bad)
    assert not u.is_ipv4(bad)


def test_netmasks():
    assert u.netmask_to_prefix("255.255.255.0") == 24
    assert u.netmask_to_prefix("255.255.0.0") == 16
    assert u.netmask_to_prefix("255.255.255.252") == 30
    assert u.prefix_to_netmask(20) == "255.255.240.0"
    assert "not contiguous" in _err(u.netmask_to_prefix, "255.0.255.0")
    assert "prefix length" in _err(u.netmask_to_prefix, "255.255.255.255")
    assert "prefix length" in _err(u.netmask_to_prefix, "255.255.255.254")
    assert "prefix length" in _err(u.netmask_to_prefix, "0.0.0.0")
    assert "not a valid IPv4" in _err(u.netmask_to_prefix, "255.255.255")


def test_validate_range_ok():
    r = u.validate_range("192.168.1.10", "192.168.1.20", "255.255.255.0", "192.168.1.1")
    assert (r.start_ip, r.end_ip, r.cidr, r.prefix, r.gateway, r.size) == (
        "192.168.1.10", "192.168.1.20", "192.168.1.0/24", 24, "192.168.1.1", 11)
    single = u.validate_range("10.0.0.5", "10.0.0.5", "255.255.255.0", "10.0.0.1")
    assert single.size == 1
    assert u.validate_range("10.0.0.5", "10.0.0.9", "255.255.255.0", None).gateway is None


@pytest.mark.parametrize("args, words", [
    (("10.0.0.20", "10.0.0.10", "255.255.255.0", "10.0.0.1"), "greater than endIp"),
    (("10.0.0.10", "10.0.1.10", "255.255.255.0", "10.0.0.1"), "endIp 10.0.1.10 is not a host address"),
    (("10.0.0.0", "10.0.0.10", "255.255.255.0", "10.0.0.254"), "startIp 10.0.0.0 is not a host address"),
    (("10.0.0.10", "10.0.0.255", "255.255.255.0", "10.0.0.1"), "endIp 10.0.0.255 is not a host address"),
    (("10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.1.1"), "gateway 10.0.1.1 is not a host address"),
    (("10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.0.15"), "cannot be inside the IP range"),
    (("10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.0.10"), "cannot be inside the IP range"),
    (("10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.0.255"), "not a host address"),
    (("10.0.0.10", "10.0.0.20", "255.0.255.0", "10.0.0.1"), "not contiguous"),
    (("10.0.0.x", "10.0.0.20", "255.255.255.0", "10.0.0.1"), "startIp"),
])
def test_validate_range_rules(args, words):
    assert words in _err(u.validate_range, *args)


def test_ranges_from_cidr_default_gateway_is_first_host():
    (r,) = u.ranges_from_cidr("192.168.10.0/24")
    assert (r.start_ip, r.end_ip, r.gateway, r.netmask, r.cidr) == (
        "192.168.10.2", "192.168.10.254", "192.168.10.1", "255.255.255.0", "192.168.10.0/24")


def test_ranges_from_cidr_gateway_last_or_middle():
    (r,) = u.ranges_from_cidr("10.1.0.0/24", "10.1.0.254")
    assert (r.start_ip, r.end_ip) == ("10.1.0.1", "10.1.0.253")
    a, b = u.ranges_from_cidr("10.1.0.0/24", "10.1.0.100")
    assert (a.start_ip, a.end_ip, b.start_ip, b.end_ip) == ("10.1.0.1", "10.1.0.99", "10.1.0.101", "10.1.0.254")
    assert a.gateway == b.gateway == "10.1.0.100"


def test_ranges_from_cidr_small_and_bad():
    (r,) = u.ranges_from_cidr("10.0.0.0/30")
    assert (r.start_ip, r.end_ip, r.gateway) == ("10.0.0.2", "10.0.0.2", "10.0.0.1")
    assert "prefix length" in _err(u.ranges_from_cidr, "10.0.0.0/31")
    assert "host bits" in _err(u.ranges_from_cidr, "10.0.0.1/24")
    assert "valid IPv4 CIDR" in _err(u.ranges_from_cidr, "10.0.0.0")
    assert "not a host address" in _err(u.ranges_from_cidr, "10.0.0.0/24", "10.0.0.255")
    assert "not a host address" in _err(u.ranges_from_cidr, "10.0.0.0/24", "10.0.1.1")


def test_overlaps():
    assert u.overlaps(1, 5, 5, 9)
    assert u.overlaps(1, 9, 3, 4)
    assert not u.overlaps(1, 4, 5, 9)
    assert not u.overlaps(6, 9, 1, 5)
