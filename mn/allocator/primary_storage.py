"""The primary storage allocator and its capacity reservation.

Invariants:
- A primary storage's `availableCapacity` is its logical free space: physical space scaled by the
  over-provisioning ratio (global config mevoco/overProvisioning.primaryStorage). A volume of
  `size` bytes consumes needed(size, ratio) = ceil(size / ratio) of it.
- reserve() is one compare-and-swap UPDATE (`available -= needed WHERE available >= needed`), so
  concurrent reservations, from threads or from several MNs, never drive it below zero.
- release() gives back exactly what reserve() took for the same size and ratio, never raising
  `availableCapacity` above `totalCapacity`.
- Every function works inside the caller's session (its transaction) and reads no globals: the
  caller passes the ratio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from sqlalchemy import Row, bindparam, case, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mn.connection import CONNECTED
from mn.db.engine import connection_of
from mn.errors import NO_AVAILABLE_PRIMARY_STORAGE, ApiError, invalid
from mn.models import PrimaryStorage, PrimaryStorageClusterRef

USABLE_STATE = "Enabled"
USABLE_STATUS = CONNECTED


def needed(size: int, ratio: float = 1.0) -> int:
    """Logical capacity a volume of `size` bytes consumes under over-provisioning `ratio`."""
    if size < 0:
        raise invalid(f"a volume size cannot be negative: {size}")
    if ratio <= 0:
        raise invalid(f"the primary storage over-provisioning ratio must be positive, got {ratio}")
    return math.ceil(Fraction(size) / Fraction(ratio))


def _cas_statement(usable_only: bool) -> Any:
    conds = [PrimaryStorage.uuid == bindparam("ps"), PrimaryStorage.availableCapacity >= bindparam("amount")]
    if usable_only:
        conds += [PrimaryStorage.state == USABLE_STATE, PrimaryStorage.status == USABLE_STATUS]
    return update(PrimaryStorage).where(*conds).values(
        availableCapacity=PrimaryStorage.availableCapacity - bindparam("amount"))


_CAS = {True: _cas_statement(True), False: _cas_statement(False)}  # built once: every volume reserves


def _cas(s: Session, ps_uuid: str, amount: int, usable_only: bool) -> bool:
    """The compare-and-swap, in Core on the session's connection (no ORM copy is refreshed)."""
    return s.connection().execute(_CAS[usable_only], {"ps": ps_uuid, "amount": amount}).rowcount == 1


def reserve(s: Session, ps_uuid: str, size: int, ratio: float = 1.0) -> bool:
    """Take needed(size, ratio) from the storage's available capacity; False if it has not enough."""
    return _cas(s, ps_uuid, needed(size, ratio), usable_only=False)


def release(s: Session, ps_uuid: str, size: int, ratio: float = 1.0) -> None:
    """Give back what reserve(size, ratio) took, capped at the total capacity."""
    amount = needed(size, ratio)
    col = PrimaryStorage.availableCapacity
    s.execute(update(PrimaryStorage).where(PrimaryStorage.uuid == ps_uuid)
              .values(availableCapacity=case((col + amount > PrimaryStorage.totalCapacity,
                                              PrimaryStorage.totalCapacity), else_=col + amount))
              .execution_options(synchronize_session=False))


def _label(ps: Row) -> str:
    return f"PrimaryStorageVO[uuid:{ps.uuid}, name:{ps.name}]"


def _scope(cluster_uuid: str | None, zone_uuid: str | None, ps_uuid: str | None) -> str:
    parts = []
    if ps_uuid:
        parts.append(f"primary storage {ps_uuid}")
    if cluster_uuid:
        parts.append(f"cluster {cluster_uuid}")
    if zone_uuid:
        parts.append(f"zone {zone_uuid}")
    return " in ".join(parts) if parts else "the whole cloud"


_CANDIDATE_QUERIES: dict[tuple[bool, bool, bool], Any] = {}  # filters given -> prebuilt statement


def candidate_rows(s: Session | Connection, *, cluster_uuid: str | None = None, zone_uuid: str | None = None,
                   ps_uuid: str | None = None) -> list[Row]:
    """The primary storages attached to `cluster_uuid`, in `zone_uuid` and/or equal to `ps_uuid`
    (each given filter applies), most available capacity first: rows of the table's columns."""
    shape = (cluster_uuid is not None, zone_uuid is not None, ps_uuid is not None)
    q = _CANDIDATE_QUERIES.get(shape)
    if q is None:
        table = PrimaryStorage.__table__
        q = select(table)
        if shape[0]:
            q = q.where(table.c.uuid.in_(select(PrimaryStorageClusterRef.primaryStorageUuid)
                                         .where(PrimaryStorageClusterRef.clusterUuid == bindparam("cluster"))))
        if shape[1]:
            q = q.where(table.c.zoneUuid == bindparam("zone"))
        if shape[2]:
            q = q.where(table.c.uuid == bindparam("ps"))
        q = _CANDIDATE_QUERIES.setdefault(shape, q.order_by(table.c.availableCapacity.desc(), table.c.uuid))
    return list(connection_of(s).execute(q, {"cluster": cluster_uuid, "zone": zone_uuid, "ps": ps_uuid}))


def _usable(ps: Row, amount: int, skip: set[str]) -> str | None:
    """Why the storage cannot take `amount` now, or None when it can (as far as this row shows)."""
    if ps.uuid in skip:
        return f"{_label(ps)} is excluded"
    if ps.state != USABLE_STATE:
        return f"{_label(ps)} is {ps.state}, not {USABLE_STATE}"
    if ps.status != USABLE_STATUS:
        return f"{_label(ps)} is {ps.status}, not {USABLE_STATUS}"
    if ps.availableCapacity < amount:
        return f"{_label(ps)} has {ps.availableCapacity} bytes available, needs {amount}"
    return None


def allocate(s: Session, *, size: int, ratio: float = 1.0, cluster_uuid: str | None = None,
             zone_uuid: str | None = None, ps_uuid: str | None = None, exclude: Iterable[str] = (),
             prefetched: list[Row] | None = None) -> Row:
    """Choose an Enabled, Connected primary storage with room for `size` and reserve it.

    Candidates are candidate_rows() minus `exclude`; the one with the most available capacity
    is tried first, and a candidate whose compare-and-swap loses a race is skipped for the next.
    `prefetched`: candidate_rows() of the same filters read before the caller's write
    transaction began (so the write holds its lock for the reservation only), tried first.
    Returns the chosen storage's row (its capacity as read before the reservation); raises
    NO_AVAILABLE_PRIMARY_STORAGE saying why each candidate was rejected.
    """
    amount = needed(size, ratio)
    skip = set(exclude)
    for ps in prefetched or ():
        if _usable(ps, amount, skip) is None and _cas(s, ps.uuid, amount, usable_only=True):
            return ps
    rows = candidate_rows(s, cluster_uuid=cluster_uuid, zone_uuid=zone_uuid, ps_uuid=ps_uuid)
    want = f"{size} bytes" + (f" ({amount} after over-provisioning ratio {ratio})" if amount != size else "")
    if not rows:
        where = _scope(cluster_uuid, zone_uuid, ps_uuid)
        reason = ("it does not exist or is not attached there" if ps_uuid
                  else "no primary storage is attached" if cluster_uuid else "there is no primary storage")
        raise ApiError(NO_AVAILABLE_PRIMARY_STORAGE, f"no primary storage can provide {want} in {where}: {reason}")
    rejected: list[str] = []
    for ps in rows:
        why = _usable(ps, amount, skip)
        if why is not None:
            rejected.append(why)
        elif _cas(s, ps.uuid, amount, usable_only=True):
            return ps
        else:
            rejected.append(f"{_label(ps)} lost its capacity or availability to a concurrent operation")
    raise ApiError(NO_AVAILABLE_PRIMARY_STORAGE,
                   f"no primary storage can provide {want} in {_scope(cluster_uuid, zone_uuid, ps_uuid)}: "
                   + "; ".join(rejected))
