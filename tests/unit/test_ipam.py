from __future__ import annotations

import os
import random
import re
import threading
import time

import pytest
from sqlalchemy import func, insert, select

from mn import ipam
from mn.db.base import new_uuid
from mn.db.engine import Database
from mn.errors import INVALID_ARGUMENT, IP_ALLOCATION_FAILURE, RESOURCE_NOT_FOUND, ApiError
from mn.iputil import int_to_ip, ip_to_int, validate_range
from mn.models import IpRange, L2Network, L3Network, UsedIp, Zone

Z, L2, L3 = "z".ljust(32, "0"), "l2".ljust(32, "0"), "l3".ljust(32, "0")


def add_range(s, start: str, end: str, netmask: str = "255.255.0.0", gateway: str | None = "10.0.0.1",
              range_type: str = "Normal", l3: str = L3) -> IpRange:
    spec = validate_range(start, end, netmask, gateway)
    r = IpRange(uuid=new_uuid(), l3NetworkUuid=l3, name="r", startIp=spec.start_ip, endIp=spec.end_ip,
                netmask=spec.netmask, gateway=spec.gateway, networkCidr=spec.cidr, prefixLen=spec.prefix,
                ipRangeType=range_type, startIpInLong=spec.start, endIpInLong=spec.end)
    s.add(r)
    s.flush()
    return r


def fill(s, r: IpRange, ints) -> None:
    """Mark addresses used in bulk (one executemany)."""
    s.execute(insert(UsedIp), [
        {"uuid": new_uuid(), "ipRangeUuid": r.uuid, "l3NetworkUuid": r.l3NetworkUuid, "ip": int_to_ip(n),
         "netmask": r.netmask, "gateway": r.gateway, "ipInLong": n, "usedFor": "Vip"} for n in ints])


def make_net(db: Database) -> None:
    with db.tx() as s:
        s.add(Zone(uuid=Z, name="z"))
        s.flush()
        s.add(L2Network(uuid=L2, name="l2", zoneUuid=Z, physicalInterface="eth0", type="L2NoVlanNetwork"))
        s.flush()
        s.add(L3Network(uuid=L3, name="l3", zoneUuid=Z, l2NetworkUuid=L2))


@pytest.fixture
def net(db):
    make_net(db)
    return db


def used(db: Database) -> list[str]:
    with db.ro() as s:
        return list(s.scalars(select(UsedIp.ip).where(UsedIp.l3NetworkUuid == L3).order_by(UsedIp.ipInLong)))


def _err(fn, *args, **kw) -> ApiError:
    with pytest.raises(ApiError) as ei:
        fn(*args, **kw)
    return ei.value


# ---- static IPs ---------------------------------------------------------------------------------

def test_static_ip_in_range(net):
    with net.tx() as s:
        r = add_range(s, "10.0.0.10", "10.0.0.20")
        row = ipam.allocate_ip(s, L3, ip="10.0.0.15", used_for="Vip")
        assert (row.ip, row.ipInLong, row.ipRangeUuid, row.netmask, row.gateway, row.ipVersion) == (
            "10.0.0.15", ip_to_int("10.0.0.15"), r.uuid, "255.255.0.0", "10.0.0.1", 4)
    assert used(net) == ["10.0.0.15"]


def test_static_ip_out_of_range_taken_and_malformed(net):
    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.0.20")
        ipam.allocate_ip(s, L3, ip="10.0.0.11")
        e = _err(ipam.allocate_ip, s, L3, ip="10.0.0.21")
        assert e.code == IP_ALLOCATION_FAILURE
        assert "10.0.0.21 is not in any IP range" in e.details and "10.0.0.10-10.0.0.20" in e.details
        e = _err(ipam.allocate_ip, s, L3, ip="10.0.0.1")  # the gateway
        assert e.code == IP_ALLOCATION_FAILURE
        e = _err(ipam.allocate_ip, s, L3, ip="10.0.0.11")
        assert e.code == IP_ALLOCATION_FAILURE and "already used" in e.details
        assert _err(ipam.allocate_ip, s, L3, ip="10.0.0.999").code == INVALID_ARGUMENT
    assert used(net) == ["10.0.0.11"]  # the caller's transaction survived the failures


def test_static_ip_in_excluded_or_address_pool_range_is_refused(net):
    with net.tx() as s:
        a = add_range(s, "10.0.0.10", "10.0.0.20")
        add_range(s, "10.0.1.10", "10.0.1.20", range_type="AddressPool")
        assert _err(ipam.allocate_ip, s, L3, ip="10.0.0.12", exclude_range=a.uuid).code == IP_ALLOCATION_FAILURE
        assert _err(ipam.allocate_ip, s, L3, ip="10.0.1.12").code == IP_ALLOCATION_FAILURE


def test_unknown_l3(net):
    with net.tx() as s:
        assert _err(ipam.allocate_ip, s, "f" * 32).code == RESOURCE_NOT_FOUND


# ---- dynamic allocation -----------------------------------------------------------------------

def test_fills_a_range_then_reports_full(net):
    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.0.29")
        got = {ipam.allocate_ip(s, L3, nic_uuid=None).ip for _ in range(20)}
        assert got == {f"10.0.0.{i}" for i in range(10, 30)}
        e = _err(ipam.allocate_ip, s, L3)
        assert e.code == IP_ALLOCATION_FAILURE
        assert e.details == f"no free IP in L3 network {L3} (ranges: 10.0.0.10-10.0.0.29)"


def test_prefetched_addresses_are_reserved_first_and_taken_ones_skipped(net):
    """probe() reads free addresses before the write; allocate_ip reserves the first that is
    still free and allocates afresh when all were taken meanwhile."""
    with net.tx() as s:
        r = add_range(s, "10.0.0.10", "10.0.0.29")
    with net.read() as conn:
        guesses = ipam.probe(conn, L3, keep=3)
    assert len(guesses) == 3 and len({g.ip for g in guesses}) == 3
    with net.tx() as s:
        fill(s, r, [guesses[0].ipInLong])  # taken by another transaction after the probe
        assert ipam.allocate_ip(s, L3, prefetched=guesses) == guesses[1]
        fill(s, r, [guesses[2].ipInLong])
        got = ipam.allocate_ip(s, L3, prefetched=guesses)
        assert got.ip not in {g.ip for g in guesses}
    assert len(used(net)) == 4


def test_a_prefetched_address_whose_range_is_gone_is_skipped(net):
    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.0.12")
    gone = ipam.Allocated(new_uuid(), "f" * 32, L3, "10.0.0.11", "255.255.0.0", "10.0.0.1", 4,
                          ip_to_int("10.0.0.11"))  # its range deleted since the probe
    with net.tx() as s:
        got = ipam.allocate_ip(s, L3, prefetched=[gone])
    assert got.uuid != gone.uuid and got.ipRangeUuid != gone.ipRangeUuid
    assert used(net) == [got.ip]


def test_no_range(net):
    with net.tx() as s:
        e = _err(ipam.allocate_ip, s, L3)
        assert e.code == IP_ALLOCATION_FAILURE and "has no IP range" in e.details


def test_several_ranges_exclude_range_and_address_pool(net):
    with net.tx() as s:
        a = add_range(s, "10.0.0.10", "10.0.0.14")
        b = add_range(s, "10.0.0.100", "10.0.0.104")
        add_range(s, "10.0.1.1", "10.0.1.200", range_type="AddressPool")
        got = [ipam.allocate_ip(s, L3, exclude_range=a.uuid) for _ in range(5)]
        assert {g.ipRangeUuid for g in got} == {b.uuid}
        assert _err(ipam.allocate_ip, s, L3, exclude_range=a.uuid).code == IP_ALLOCATION_FAILURE
        more = [ipam.allocate_ip(s, L3) for _ in range(5)]
        assert {g.ipRangeUuid for g in more} == {a.uuid}
        e = _err(ipam.allocate_ip, s, L3)
        assert "10.0.0.10-10.0.0.14, 10.0.0.100-10.0.0.104" in e.details


def test_allocation_is_spread_randomly(net):
    with net.tx() as s:
        add_range(s, "10.0.0.2", "10.0.255.254")
        ips = [ipam.allocate_ip(s, L3).ipInLong for _ in range(50)]
    assert len(set(ips)) == 50
    assert max(ips) - min(ips) > 1000  # not sequential


def test_the_last_free_ip_is_found_by_gap_search(net):
    with net.tx() as s:
        r = add_range(s, "10.0.0.2", "10.0.15.254")  # 4093 addresses
        hole = ip_to_int("10.0.7.77")
        fill(s, r, (n for n in range(r.startIpInLong, r.endIpInLong + 1) if n != hole))
        assert ipam.allocate_ip(s, L3).ip == "10.0.7.77"
        assert _err(ipam.allocate_ip, s, L3).code == IP_ALLOCATION_FAILURE


def test_gap_search_at_range_edges(net):
    with net.tx() as s:
        r = add_range(s, "10.0.0.10", "10.0.0.50")
        fill(s, r, range(r.startIpInLong + 1, r.endIpInLong + 1))
        assert ipam.first_free(s, L3, r.startIpInLong, r.endIpInLong) == r.startIpInLong
        assert ipam.allocate_ip(s, L3).ip == "10.0.0.10"
    with net.tx() as s:
        r2 = add_range(s, "10.0.1.10", "10.0.1.50")
        fill(s, r2, range(r2.startIpInLong, r2.endIpInLong))
        assert ipam.first_free(s, L3, r2.startIpInLong, r2.endIpInLong) == r2.endIpInLong
        assert ipam.first_free(s, L3, r2.startIpInLong, r2.endIpInLong - 1) is None


def _time_allocations(db: Database, n: int) -> float:
    with db.tx() as s:
        t0 = time.perf_counter()
        for _ in range(n):
            ipam.allocate_ip(s, L3)
        return (time.perf_counter() - t0) / n


@pytest.mark.parametrize("layout", ["random", "sequential"])
def test_dense_slash16_allocates_fast(net, layout):
    """A /16 with 60,000 used IPs: an allocation stays around a millisecond."""
    with net.tx() as s:
        r = add_range(s, "10.0.0.2", "10.0.255.254")
        addrs = list(range(r.startIpInLong, r.endIpInLong + 1))
        if layout == "random":
            addrs = random.Random(7).sample(addrs, 60000)
        fill(s, r, sorted(addrs[:60000]))
    _time_allocations(net, 5)  # warm up caches
    per = _time_allocations(net, 200)
    print(f"{layout}: {per * 1000:.2f} ms per allocation with 60k used")
    assert per < 0.006
    with net.ro() as s:
        assert s.scalar(select(func.count()).select_from(UsedIp)) == 60205


def test_dense_range_full_is_detected(net):
    with net.tx() as s:
        r = add_range(s, "10.0.0.2", "10.0.39.255")  # ~10k addresses, all used
        fill(s, r, range(r.startIpInLong, r.endIpInLong + 1))
        t0 = time.perf_counter()
        e = _err(ipam.allocate_ip, s, L3)
        assert e.code == IP_ALLOCATION_FAILURE
        assert time.perf_counter() - t0 < 0.5


def test_lost_race_retries_with_another_candidate(net, monkeypatch):
    """When an insert hits the unique constraint (a concurrent winner), the savepoint is rolled back
    and another candidate is tried; the caller's transaction keeps its earlier work."""
    with net.tx() as s:
        r = add_range(s, "10.0.0.10", "10.0.0.29")
        fill(s, r, range(r.startIpInLong, r.startIpInLong + 18))  # 18 of 20 used
        keep = ipam.allocate_ip(s, L3, ip=None)  # one of the 2 free
        monkeypatch.setattr(ipam, "_used_among", lambda *a: set())  # pretend every probe looks free
        row = ipam.allocate_ip(s, L3)
        assert row.ip != keep.ip
        assert _err(ipam.allocate_ip, s, L3).code == IP_ALLOCATION_FAILURE
    assert len(used(net)) == 20 and keep.ip in used(net)


def test_non_unique_integrity_errors_are_not_swallowed(net):
    from sqlalchemy.exc import IntegrityError

    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.0.29")
        with pytest.raises(IntegrityError):
            ipam.allocate_ip(s, L3, nic_uuid="n" * 32)  # no such NIC: a foreign key violation


def test_release_ip(net):
    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.0.10")
        row = ipam.allocate_ip(s, L3)
        assert _err(ipam.allocate_ip, s, L3).code == IP_ALLOCATION_FAILURE
        assert ipam.release_ip(s, row.uuid) is True
        assert ipam.release_ip(s, row.uuid) is False
        assert ipam.release_ip(s, None) is False
        assert ipam.allocate_ip(s, L3).ip == "10.0.0.10"
        assert ipam.is_ip_used(s, L3, "10.0.0.10")


# ---- concurrency ------------------------------------------------------------------------------

def _concurrent(db: Database, threads: int, per_thread: int) -> tuple[list[str], list[BaseException]]:
    got: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                with db.tx() as s:
                    ip = ipam.allocate_ip(s, L3).ip
                with lock:
                    got.append(ip)
            except BaseException as exc:  # noqa: BLE001
                with lock:
                    errors.append(exc)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return got, errors


def test_threads_get_distinct_ips(net):
    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.3.250")
    got, errors = _concurrent(net, 8, 25)
    assert not errors
    assert len(got) == 200 == len(set(got))
    assert sorted(got, key=ip_to_int) == used(net)


def test_threads_exhaust_a_tight_range_exactly(net):
    with net.tx() as s:
        add_range(s, "10.0.0.10", "10.0.0.69")  # 60 addresses
    got, errors = _concurrent(net, 6, 10)
    assert not errors and len(set(got)) == 60
    got, errors = _concurrent(net, 2, 1)
    assert not got and len(errors) == 2 and all(isinstance(e, ApiError) for e in errors)


@pytest.mark.postgresql
def test_threads_get_distinct_ips_on_postgresql(tmp_path):
    """On PostgreSQL transactions really overlap, so lost races (unique violations) happen."""
    from sqlalchemy import create_engine, text

    from mn.db.migrate import upgrade

    admin_url = os.environ.get("ZSTACK_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"zstack_ipam_{new_uuid()[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")  # the test machine runs PostgreSQL
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = re.sub(r"/[^/]*$", f"/{name}", admin_url)
    db = None
    try:
        upgrade(url)
        db = Database(url)
        make_net(db)
        with db.tx() as s:
            add_range(s, "10.0.0.10", "10.0.0.209")  # 200 addresses for 8 x 25 allocations
        got, errors = _concurrent(db, 8, 25)
        assert not errors
        assert len(got) == 200 == len(set(got))
    finally:
        if db is not None:
            db.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---- free IPs ---------------------------------------------------------------------------------

def test_free_ips_order_start_limit_and_ranges(net):
    with net.tx() as s:
        a = add_range(s, "10.0.0.10", "10.0.0.14")
        b = add_range(s, "10.0.0.100", "10.0.0.103")
        fill(s, a, [ip_to_int("10.0.0.11"), ip_to_int("10.0.0.13")])
    with net.ro() as s:
        got = ipam.free_ips(s, l3_uuid=L3)
        assert [g["ip"] for g in got] == ["10.0.0.10", "10.0.0.12", "10.0.0.14", "10.0.0.100", "10.0.0.101",
                                          "10.0.0.102", "10.0.0.103"]
        assert got[0] == {"ipRangeUuid": a.uuid, "ip": "10.0.0.10", "netmask": "255.255.0.0", "gateway": "10.0.0.1"}
        assert got[-1]["ipRangeUuid"] == b.uuid
        assert [g["ip"] for g in ipam.free_ips(s, l3_uuid=L3, limit=2)] == ["10.0.0.10", "10.0.0.12"]
        assert [g["ip"] for g in ipam.free_ips(s, l3_uuid=L3, start="10.0.0.13", limit=3)] == [
            "10.0.0.14", "10.0.0.100", "10.0.0.101"]
        assert [g["ip"] for g in ipam.free_ips(s, range_uuid=b.uuid, limit=2)] == ["10.0.0.100", "10.0.0.101"]
        assert ipam.free_ips(s, l3_uuid=L3, start="10.0.0.200") == []
        assert ipam.free_ips(s, l3_uuid=L3, limit=0) == []
        assert _err(ipam.free_ips, s).code == INVALID_ARGUMENT
        assert _err(ipam.free_ips, s, range_uuid="f" * 32).code == RESOURCE_NOT_FOUND
        assert _err(ipam.free_ips, s, l3_uuid="f" * 32).code == RESOURCE_NOT_FOUND


def test_free_ips_skip_long_used_runs(net):
    with net.tx() as s:
        r = add_range(s, "10.0.0.2", "10.0.15.254")
        holes = {r.startIpInLong + 700, r.startIpInLong + 1300, r.startIpInLong + 1301}
        fill(s, r, (n for n in range(r.startIpInLong, r.startIpInLong + 2000) if n not in holes))
    with net.ro() as s:
        got = [ip_to_int(g["ip"]) for g in ipam.free_ips(s, l3_uuid=L3, limit=5)]
    assert got == sorted(holes) + [r.startIpInLong + 2000, r.startIpInLong + 2001]


# ---- tags and MACs ----------------------------------------------------------------------------

def test_static_ips_from_tags():
    tags = [f"staticIp::{L3}::10.0.0.5", "hostname::vm1", f"staticIp::{'a' * 32}::192.168.0.9"]
    assert ipam.static_ips_from_tags(tags) == {L3: "10.0.0.5", "a" * 32: "192.168.0.9"}
    assert ipam.static_ips_from_tags(None) == {}
    assert ipam.static_ips_from_tags([f"staticIp::{L3}::10.0.0.5", f"staticIp::{L3}::10.0.0.5"]) == {
        L3: "10.0.0.5"}
    for bad in (f"staticIp::{L3}", f"staticIp::{L3}::", f"staticIp::{L3}::10.0.0.300", "staticIp::::10.0.0.1",
                f"staticIp::{L3}::10.0.0.1::x"):
        assert _err(ipam.static_ips_from_tags, [bad]).code == INVALID_ARGUMENT
    e = _err(ipam.static_ips_from_tags, [f"staticIp::{L3}::10.0.0.5", f"staticIp::{L3}::10.0.0.6"])
    assert "two static IPs" in e.details


def test_new_mac():
    macs = {ipam.new_mac() for _ in range(1000)}
    assert len(macs) == 1000
    for m in macs:
        assert re.fullmatch(r"fa(:[0-9a-f]{2}){5}", m)
    first = int("fa", 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
