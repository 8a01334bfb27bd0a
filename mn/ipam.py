"""IP address management: allocate and release IPs of L3 networks, list free IPs, MACs.

Invariants:
- A UsedIp row is the reservation: an IP is used at most once per L3 network (unique constraint
  on l3NetworkUuid+ipInLong). Allocation inserts the row inside a SAVEPOINT; when a concurrent
  transaction won the same address the savepoint is rolled back and another candidate is tried,
  so two sessions never get the same IP and the caller's transaction survives. (On SQLite a
  failed statement undoes only itself: no savepoint needed.)
- Only IPv4 and only ranges of type Normal are allocated from (AddressPool ranges are not).
- Allocation never loads the used IPs of an L3 into Python. Strategy (random, like ZStack's
  default RandomIpAllocatorStrategy):
    1. random probes: PROBES addresses drawn uniformly over all ranges, checked with one indexed
       `ipInLong IN (...)` query; the free ones are tried in random order. At 90 % occupancy
       64 probes all miss with probability 0.1 %.
    2. gap search (dense ranges): from a random point, SQL finds the first used address whose
       successor is free (`NOT EXISTS`), walking the unique index, then wraps to the range start;
       its cost is the distance to the nearest gap, not the size of the range.
  A range that is full costs one index walk over its used addresses, then the next range.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

from sqlalchemy import Row, and_, bindparam, exists, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from mn.db.base import new_uuid
from mn.db.engine import connection_of, error_codes
from mn.errors import IP_ALLOCATION_FAILURE, ApiError, invalid, not_found
from mn.iputil import int_to_ip, ip_to_int, parse_ipv4
from mn.models import IpRange, L3Network, UsedIp

PROBES = 64
MAX_CONFLICTS = 32  # concurrent winners tolerated before giving up (each retry is a new candidate)
STATIC_IP_TAG = "staticIp"
_rng = random.SystemRandom()


# ---- helpers ----------------------------------------------------------------------------------

def new_mac() -> str:
    """A random locally administered unicast MAC, "fa:xx:xx:xx:xx:xx" (ZStack's prefix)."""
    return "fa:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


def static_ips_from_tags(tags: Iterable[str] | None) -> dict[str, str]:
    """`staticIp::<l3NetworkUuid>::<ip>` system tags → {l3 uuid: ip}; bad tags raise ApiError."""
    out: dict[str, str] = {}
    prefix = STATIC_IP_TAG + "::"
    for t in tags or []:
        if not t.startswith(prefix):
            continue
        parts = t.split("::")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise invalid(f"system tag {t!r} is malformed; the format is staticIp::<l3NetworkUuid>::<ip>")
        l3, ip = parts[1], parts[2]
        ip = str(parse_ipv4(ip, f"the IP of system tag {t!r}"))
        if l3 in out and out[l3] != ip:
            raise invalid(f"system tags give two static IPs for L3 network {l3}: {out[l3]} and {ip}")
        out[l3] = ip
    return out


def _is_unique_violation(exc: IntegrityError) -> bool:
    """PostgreSQL 23505, MySQL/MariaDB 1062 (duplicate entry), or SQLite's message."""
    codes = error_codes(exc)
    if codes:
        return bool(codes & {"23505", 1062})
    return "UNIQUE constraint failed" in str(exc.orig)


# Statements built once (their compiled form is cached); run on the session's connection, which
# skips the ORM layer on the hot path (allocate_ip flushes the session first).
_NXT = aliased(UsedIp)
_Q_RANGES = (select(IpRange.uuid, IpRange.startIp, IpRange.endIp, IpRange.startIpInLong, IpRange.endIpInLong,
                    IpRange.netmask, IpRange.gateway)
             .where(IpRange.l3NetworkUuid == bindparam("l3"), IpRange.ipRangeType == "Normal")
             .order_by(IpRange.startIpInLong))
_Q_USED_AMONG = select(UsedIp.ipInLong).where(UsedIp.l3NetworkUuid == bindparam("l3"),
                                              UsedIp.ipInLong.in_(bindparam("ips", expanding=True)))
_Q_GAP = (select(UsedIp.ipInLong + 1)
          .where(UsedIp.l3NetworkUuid == bindparam("l3"), UsedIp.ipInLong >= bindparam("lo"),
                 UsedIp.ipInLong < bindparam("hi"),
                 ~exists().where(and_(_NXT.l3NetworkUuid == bindparam("l3"),
                                      _NXT.ipInLong == UsedIp.ipInLong + 1)))
          .order_by(UsedIp.ipInLong).limit(1))


def _ranges(s: Session | Connection, l3_uuid: str, exclude_range: str | None = None) -> list[Row]:
    rows = connection_of(s).execute(_Q_RANGES, {"l3": l3_uuid}).all()
    return [r for r in rows if r.uuid != exclude_range]


def describe_ranges(ranges: Sequence[Any]) -> str:
    return ", ".join(f"{r.startIp}-{r.endIp}" for r in ranges) or "none"


class Allocated(NamedTuple):
    """An address allocate_ip reserved: the UsedIp row as inserted."""

    uuid: str
    ipRangeUuid: str
    l3NetworkUuid: str
    ip: str
    netmask: str | None
    gateway: str | None
    ipVersion: int
    ipInLong: int


_INSERT_USED = insert(UsedIp)


def planned(l3_uuid: str, r: Row, n: int) -> Allocated:
    """The UsedIp row that would reserve address `n` of range `r` (a new uuid; nothing written)."""
    return Allocated(new_uuid(), r.uuid, l3_uuid, int_to_ip(n), r.netmask, r.gateway, 4, n)


def _insert(s: Session, l3_uuid: str, r: Row, n: int, nic_uuid: str | None, used_for: str,
            ) -> Allocated | None:
    return _insert_row(s, planned(l3_uuid, r, n), nic_uuid, used_for)


def _insert_row(s: Session, row: Allocated, nic_uuid: str | None, used_for: str) -> Allocated | None:
    """Insert the UsedIp; None when another transaction holds the address. The insert runs in a
    savepoint, so a lost race leaves the caller's transaction intact; on SQLite a failed
    statement undoes only itself, so it needs none."""
    values = {**row._asdict(), "usedFor": used_for, "vmNicUuid": nic_uuid}
    conn = s.connection()
    try:
        with nullcontext() if conn.dialect.name == "sqlite" else conn.begin_nested():
            conn.execute(_INSERT_USED, values)
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            return None
        raise
    return row


def _used_among(s: Session | Connection, l3_uuid: str, candidates: Iterable[int]) -> set[int]:
    return set(connection_of(s).execute(_Q_USED_AMONG, {"l3": l3_uuid, "ips": list(candidates)}).scalars())


def _random_free(s: Session | Connection, l3_uuid: str, ranges: list[Row], probes: int = PROBES,
                 ) -> list[tuple[Row, int]]:
    """Step 1 of the strategy: `probes` addresses drawn uniformly over all ranges, the free ones
    (range, address) in random order."""
    total = sum(r.endIpInLong - r.startIpInLong + 1 for r in ranges)
    picks: dict[int, Row] = {}
    for _ in range(min(probes, total)):
        k = _rng.randrange(total)
        for r in ranges:
            size = r.endIpInLong - r.startIpInLong + 1
            if k < size:
                picks[r.startIpInLong + k] = r
                break
            k -= size
    used = _used_among(s, l3_uuid, picks) if picks else set()
    free = [(r, n) for n, r in picks.items() if n not in used]
    _rng.shuffle(free)
    return free


def probe(conn: Connection, l3_uuid: str, keep: int = 4) -> list[Allocated]:
    """Up to `keep` addresses of the L3 that a read finds free now (of 2 * keep random probes),
    as planned rows: read before a write transaction, they let allocate_ip (`prefetched`)
    reserve without reading in it; when none is found, allocate_ip probes in full there."""
    ranges = _ranges(conn, l3_uuid)
    if not ranges:
        return []
    return [planned(l3_uuid, r, n) for r, n in _random_free(conn, l3_uuid, ranges, 2 * keep)[:keep]]


def first_free(s: Session, l3_uuid: str, lo: int, hi: int) -> int | None:
    """The lowest free address in [lo, hi], found by the database (index walk to the first gap)."""
    if lo > hi:
        return None
    if not _used_among(s, l3_uuid, [lo]):
        return lo
    found = s.connection().execute(_Q_GAP, {"l3": l3_uuid, "lo": lo, "hi": hi}).scalar()
    return int(found) if found is not None else None


# ---- allocation -------------------------------------------------------------------------------

def allocate_ip(s: Session, l3_uuid: str, *, ip: str | None = None, nic_uuid: str | None = None,
                used_for: str = "Vip", exclude_range: str | None = None,
                prefetched: Iterable[Allocated] = ()) -> Allocated:
    """Reserve an IP of the L3 network in the caller's transaction and return its UsedIp row.

    With `ip`, that exact (static) address, which must lie in a Normal range of the L3 and be
    free (L3.1001 otherwise, like ZStack's allocator; a malformed IP is SYS.1007). Without, a
    random free address: first the `prefetched` ones (probe() of this L3, without
    `exclude_range`), in order, then the strategy above. `exclude_range` skips one range.
    """
    s.flush()
    if ip is None:
        for guess in prefetched:
            try:
                row = _insert_row(s, guess, nic_uuid, used_for)
            except IntegrityError:  # e.g. its range was deleted since the probe: allocate afresh
                continue
            if row is not None:
                return row
    ranges = _ranges(s, l3_uuid, exclude_range)
    if not ranges and s.get(L3Network, l3_uuid) is None:
        raise not_found("L3NetworkVO", l3_uuid)
    if ip is not None:
        return _allocate_static(s, l3_uuid, ranges, ip, nic_uuid, used_for)
    if not ranges:
        raise ApiError(IP_ALLOCATION_FAILURE, f"no free IP in L3 network {l3_uuid}: it has no IP range")
    conflicts = 0
    # 1. random probes, uniform over all addresses of all ranges
    for r, n in _random_free(s, l3_uuid, ranges):
        row = _insert(s, l3_uuid, r, n, nic_uuid, used_for)
        if row is not None:
            return row
        conflicts += 1
    # 2. gap search from a random point of each range, ranges in random order
    for r in _rng.sample(ranges, len(ranges)):
        pivot = _rng.randint(r.startIpInLong, r.endIpInLong)
        for lo, hi in ((pivot, r.endIpInLong), (r.startIpInLong, pivot - 1)):
            while conflicts <= MAX_CONFLICTS:
                n = first_free(s, l3_uuid, lo, hi)
                if n is None:
                    break
                row = _insert(s, l3_uuid, r, n, nic_uuid, used_for)
                if row is not None:
                    return row
                conflicts += 1
                lo = n + 1
    if conflicts > MAX_CONFLICTS:
        raise ApiError(IP_ALLOCATION_FAILURE, f"could not allocate an IP in L3 network {l3_uuid}: lost "
                                              f"{conflicts} races to concurrent allocations; retry")
    raise ApiError(IP_ALLOCATION_FAILURE,
                   f"no free IP in L3 network {l3_uuid} (ranges: {describe_ranges(ranges)})")


def _allocate_static(s: Session, l3_uuid: str, ranges: list[Row], ip: str, nic_uuid: str | None,
                     used_for: str) -> Allocated:
    n = int(parse_ipv4(ip, "static IP"))
    r = next((r for r in ranges if r.startIpInLong <= n <= r.endIpInLong), None)
    if r is None:
        raise ApiError(IP_ALLOCATION_FAILURE, f"static IP {ip} is not in any IP range of L3 network {l3_uuid} "
                                              f"(ranges: {describe_ranges(ranges)})")
    taken = ApiError(IP_ALLOCATION_FAILURE, f"static IP {ip} is already used in L3 network {l3_uuid}")
    if _used_among(s, l3_uuid, [n]):
        raise taken
    row = _insert(s, l3_uuid, r, n, nic_uuid, used_for)
    if row is None:
        raise taken
    return row


def release_ip(s: Session, used_ip_uuid: str | None) -> bool:
    """Delete a UsedIp; True if it existed. Idempotent, so rollbacks may call it blindly."""
    if not used_ip_uuid:
        return False
    row = s.get(UsedIp, used_ip_uuid)
    if row is None:
        return False
    s.delete(row)
    s.flush()
    return True


def is_ip_used(s: Session, l3_uuid: str, ip: str) -> bool:
    return bool(_used_among(s, l3_uuid, [ip_to_int(ip)]))


# ---- free IPs (GetFreeIp) ---------------------------------------------------------------------

def free_ips(s: Session, l3_uuid: str | None = None, range_uuid: str | None = None,
             start: str | None = None, limit: int = 100, range_type: str | None = None) -> list[dict]:
    """Free addresses in ascending order, from `start` on, of one range or all ranges of an L3.

    Returns FreeIpInventory dicts {ipRangeUuid, ip, netmask, gateway}. Used addresses are read in
    bounded, index-ordered batches between the free ones, never all at once.
    """
    if range_uuid is not None:
        r = s.get(IpRange, range_uuid)
        if r is None:
            raise not_found("IpRangeVO", range_uuid)
        ranges = [r]
    elif l3_uuid is not None:
        if s.get(L3Network, l3_uuid) is None:
            raise not_found("L3NetworkVO", l3_uuid)
        q = select(IpRange).where(IpRange.l3NetworkUuid == l3_uuid)
        if range_type is not None:
            q = q.where(IpRange.ipRangeType == range_type)
        ranges = list(s.scalars(q.order_by(IpRange.startIpInLong)))
    else:
        raise invalid("GetFreeIp needs l3NetworkUuid or ipRangeUuid")
    begin = int(parse_ipv4(start, "start")) if start else 0
    out: list[dict] = []
    batch = 512
    for r in ranges:
        cur, hi = max(r.startIpInLong, begin), r.endIpInLong
        while cur <= hi and len(out) < limit:
            used = list(s.scalars(select(UsedIp.ipInLong).where(
                UsedIp.l3NetworkUuid == r.l3NetworkUuid, UsedIp.ipInLong >= cur, UsedIp.ipInLong <= hi)
                .order_by(UsedIp.ipInLong).limit(batch)))
            stop = used[-1] if len(used) == batch else hi
            for u in [*used, hi + 1]:
                while cur < u and cur <= stop and len(out) < limit:
                    out.append({"ipRangeUuid": r.uuid, "ip": int_to_ip(cur), "netmask": r.netmask,
                                "gateway": r.gateway})
                    cur += 1
                if u > stop or len(out) >= limit:
                    break
                cur = u + 1
            if len(used) < batch:
                break
        if len(out) >= limit:
            break
    return out
