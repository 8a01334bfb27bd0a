"""The primary storage allocator: needed(), reserve/release CAS, allocate's choices and errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from mn.allocator import primary_storage as alloc
from mn.db.base import Base
from mn.errors import INVALID_ARGUMENT, NO_AVAILABLE_PRIMARY_STORAGE, ApiError
from mn.models import Cluster, PrimaryStorage, PrimaryStorageClusterRef, Zone

GB = 1 << 30


def _uuid(prefix: str, i: int = 0) -> str:
    return f"{prefix}{i}".ljust(32, "0")


def _populate(s: Session) -> None:
    """Zones z0, z1; cluster c0 (z0) with ps0 (100 GB) and ps1 (50 GB); c1 (z0) with ps1; ps2 in z1."""
    for z in range(2):
        s.add(Zone(uuid=_uuid("z", z), name=f"z{z}"))
    s.flush()
    for c in range(2):
        s.add(Cluster(uuid=_uuid("c", c), name=f"c{c}", zoneUuid=_uuid("z"), hypervisorType="Simulator"))
    for i, (zone, cap) in enumerate([(0, 100 * GB), (0, 50 * GB), (1, 10 * GB)]):
        s.add(PrimaryStorage(uuid=_uuid("ps", i), name=f"ps{i}", zoneUuid=_uuid("z", zone), url="/",
                             type="SimulatorPrimaryStorage", state="Enabled", status="Connected",
                             totalCapacity=cap, availableCapacity=cap))
    s.flush()
    for c, p in [(0, 0), (0, 1), (1, 1)]:
        s.add(PrimaryStorageClusterRef(clusterUuid=_uuid("c", c), primaryStorageUuid=_uuid("ps", p)))


@pytest.fixture
def s() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with sessionmaker(bind=engine)() as session:
        _populate(session)
        session.commit()
        yield session
    engine.dispose()


def _available(s: Session, i: int) -> int:
    s.expire_all()
    return s.get(PrimaryStorage, _uuid("ps", i)).availableCapacity


# ---- needed / reserve / release -----------------------------------------------------------------

def test_needed_scales_by_the_ratio_and_rounds_up():
    assert alloc.needed(10 * GB, 1.0) == 10 * GB
    assert alloc.needed(10 * GB, 2.0) == 5 * GB
    assert alloc.needed(10, 3.0) == 4
    assert alloc.needed(0, 2.5) == 0
    assert alloc.needed((1 << 62) + 1, 1.0) == (1 << 62) + 1  # exact, no float rounding


@pytest.mark.parametrize(("size", "ratio"), [(-1, 1.0), (1, 0.0), (1, -2.0)])
def test_needed_rejects_nonsense(size, ratio):
    with pytest.raises(ApiError) as e:
        alloc.needed(size, ratio)
    assert e.value.code == INVALID_ARGUMENT


def test_reserve_takes_capacity_and_refuses_beyond_it(s):
    assert alloc.reserve(s, _uuid("ps", 1), 30 * GB)
    assert _available(s, 1) == 20 * GB
    assert not alloc.reserve(s, _uuid("ps", 1), 21 * GB)
    assert _available(s, 1) == 20 * GB
    assert alloc.reserve(s, _uuid("ps", 1), 20 * GB)
    assert _available(s, 1) == 0


def test_reserve_with_ratio_takes_less(s):
    assert alloc.reserve(s, _uuid("ps", 2), 20 * GB, 2.0)  # 10 GB storage, 2x over-provisioned
    assert _available(s, 2) == 0


def test_reserve_of_unknown_storage_is_false(s):
    assert not alloc.reserve(s, _uuid("nope"), 1)


def test_release_gives_back_what_reserve_took_capped_at_total(s):
    assert alloc.reserve(s, _uuid("ps", 0), 10 * GB, 4.0)
    assert _available(s, 0) == 100 * GB - int(2.5 * GB)
    alloc.release(s, _uuid("ps", 0), 10 * GB, 4.0)
    assert _available(s, 0) == 100 * GB
    alloc.release(s, _uuid("ps", 0), 10 * GB)
    assert _available(s, 0) == 100 * GB


# ---- allocate -----------------------------------------------------------------------------------

def test_allocate_prefers_the_most_available_storage_of_the_cluster(s):
    assert alloc.allocate(s, size=GB, ratio=1.0, cluster_uuid=_uuid("c", 0)).uuid == _uuid("ps", 0)
    assert _available(s, 0) == 99 * GB


def test_allocate_honours_exclude_and_pins(s):
    assert alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 0), exclude=[_uuid("ps", 0)]).uuid == _uuid("ps", 1)
    assert alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 0), ps_uuid=_uuid("ps", 1)).uuid == _uuid("ps", 1)
    assert alloc.allocate(s, size=GB, zone_uuid=_uuid("z", 1)).uuid == _uuid("ps", 2)
    assert alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 1)).uuid == _uuid("ps", 1)


def test_prefetched_candidates_are_tried_first_and_stale_ones_fall_back(s):
    """Candidates read before the write: a usable one is reserved without reading again; one
    whose capacity went meanwhile fails its compare-and-swap and the fresh candidates are used."""
    rows = alloc.candidate_rows(s, cluster_uuid=_uuid("c", 0))
    assert [r.uuid for r in rows] == [_uuid("ps", 0), _uuid("ps", 1)]  # most available first
    assert alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 0), prefetched=rows[1:]).uuid == _uuid("ps", 1)
    assert alloc.reserve(s, _uuid("ps", 0), 99 * GB)  # taken by "another MN" after the read
    assert alloc.allocate(s, size=10 * GB, cluster_uuid=_uuid("c", 0), prefetched=rows).uuid == _uuid("ps", 1)
    assert _available(s, 0) == GB


def test_allocate_falls_over_to_a_storage_with_room(s):
    assert alloc.allocate(s, size=60 * GB, cluster_uuid=_uuid("c", 0)).uuid == _uuid("ps", 0)
    assert alloc.allocate(s, size=45 * GB, cluster_uuid=_uuid("c", 0)).uuid == _uuid("ps", 1)


def test_allocate_skips_disabled_and_disconnected_and_says_why(s):
    s.get(PrimaryStorage, _uuid("ps", 0)).state = "Disabled"
    s.get(PrimaryStorage, _uuid("ps", 1)).status = "Disconnected"
    s.flush()
    with pytest.raises(ApiError) as e:
        alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 0))
    assert e.value.code == NO_AVAILABLE_PRIMARY_STORAGE
    assert f"PrimaryStorageVO[uuid:{_uuid('ps', 0)}, name:ps0] is Disabled" in e.value.details
    assert f"PrimaryStorageVO[uuid:{_uuid('ps', 1)}, name:ps1] is Disconnected" in e.value.details
    assert f"cluster {_uuid('c', 0)}" in e.value.details


def test_allocate_without_room_names_each_shortfall(s):
    with pytest.raises(ApiError) as e:
        alloc.allocate(s, size=200 * GB, ratio=1.0, cluster_uuid=_uuid("c", 0), exclude=[_uuid("ps", 1)])
    d = e.value.details
    assert f"has {100 * GB} bytes available, needs {200 * GB}" in d
    assert f"PrimaryStorageVO[uuid:{_uuid('ps', 1)}, name:ps1] is excluded" in d
    assert _available(s, 0) == 100 * GB


def test_allocate_with_ratio_fits_more(s):
    with pytest.raises(ApiError):
        alloc.allocate(s, size=150 * GB, cluster_uuid=_uuid("c", 0))
    assert alloc.allocate(s, size=150 * GB, ratio=2.0, cluster_uuid=_uuid("c", 0)).uuid == _uuid("ps", 0)
    assert _available(s, 0) == 25 * GB


def test_allocate_in_a_cluster_without_storage(s):
    s.add(Cluster(uuid=_uuid("c", 9), name="c9", zoneUuid=_uuid("z"), hypervisorType="Simulator"))
    s.flush()
    with pytest.raises(ApiError) as e:
        alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 9))
    assert "no primary storage is attached" in e.value.details


def test_allocate_of_a_storage_not_in_the_cluster(s):
    with pytest.raises(ApiError) as e:
        alloc.allocate(s, size=GB, cluster_uuid=_uuid("c", 1), ps_uuid=_uuid("ps", 0))
    assert "does not exist or is not attached there" in e.value.details


# ---- concurrency --------------------------------------------------------------------------------

def _concurrent_db(db) -> None:
    with db.tx() as s:
        _populate(s)


def test_concurrent_reservations_never_over_commit(db):
    """Twenty threads reserve 7 GB each from a 50 GB storage: exactly seven win, none over-commits."""
    _concurrent_db(db)
    wins: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        with db.tx() as s:
            ok = alloc.reserve(s, _uuid("ps", 1), 7 * GB)
        with lock:
            wins.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 7
    with db.ro() as s:
        assert s.get(PrimaryStorage, _uuid("ps", 1)).availableCapacity == 50 * GB - 7 * 7 * GB


def test_concurrent_allocations_spread_and_never_over_commit(db):
    """Thirty threads allocate 6 GB in cluster c0 (100 + 50 GB): 24 fit, the rest fail cleanly."""
    _concurrent_db(db)
    got: list[str | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(30)

    def worker() -> None:
        barrier.wait()
        try:
            with db.tx() as s:
                ps = alloc.allocate(s, size=6 * GB, ratio=1.0, cluster_uuid=_uuid("c", 0)).uuid
        except ApiError as exc:
            assert exc.code == NO_AVAILABLE_PRIMARY_STORAGE
            ps = None
        with lock:
            got.append(ps)

    threads = [threading.Thread(target=worker) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n0, n1 = got.count(_uuid("ps", 0)), got.count(_uuid("ps", 1))
    assert n0 == 16 and n1 == 8  # 16 * 6 <= 100 and 8 * 6 <= 50: every byte that fits is used
    with db.ro() as s:
        assert s.get(PrimaryStorage, _uuid("ps", 0)).availableCapacity == 100 * GB - n0 * 6 * GB
        assert s.get(PrimaryStorage, _uuid("ps", 1)).availableCapacity == 50 * GB - n1 * 6 * GB
