"""quota.check() counts in one aggregate per model what each quota's usage counts alone: same
figures (Destroyed VMs and Deleted volumes out, data volumes apart), refusal exactly past the limit."""

from __future__ import annotations

import pytest

from mn import models as m
from mn import ownership, quota
from mn.context import Caller
from mn.errors import ApiError

A, B = "a" * 32, "b" * 32
GB = 1 << 30


@pytest.fixture
def owned(db):
    with db.tx() as s:
        for acc in (A, B):
            s.add(m.Account(uuid=acc, name=acc[:3], type="Normal", passwordHash="x", passwordSalt="y"))
        s.flush()
        for i, (state, cpu) in enumerate([("Running", 2), ("Stopped", 4), ("Destroyed", 8), ("Running", 1)]):
            s.add(m.VmInstance(uuid=f"{i:032d}", name="v", cpuNum=cpu, memorySize=cpu * GB, state=state))
        for i, (typ, status, size) in enumerate([("Root", "Ready", 10), ("Data", "Ready", 20), ("Data", "Deleted", 40),
                                                 ("Data", "Ready", 80)]):
            s.add(m.Volume(uuid=f"v{i:031d}", name="d", type=typ, status=status, size=size * GB))
        s.flush()
        ownership.own(s, A, "VmInstanceVO", [f"{i:032d}" for i in range(3)])
        ownership.own(s, B, "VmInstanceVO", [f"{3:032d}"])
        ownership.own(s, A, "VolumeVO", [f"v{i:031d}" for i in range(3)])
        ownership.own(s, B, "VolumeVO", [f"v{3:031d}"])
    return db


def test_check_counts_as_the_usages_do(owned):
    expect = {"vm.num": 2, "vm.cpuNum": 6, "vm.memorySize": 6 * GB, "volume.data.num": 1, "volume.capacity": 30 * GB}
    with owned.tx() as s:
        conn = s.connection()
        alone = {n: quota.QUOTAS[n].usage(conn, A) for n in expect}
        assert alone == expect
        assert quota.used(conn, A, list(expect)) == expect
        for name, used in expect.items():
            conn.execute(m.Quota.__table__.insert(), {"uuid": name.replace(".", "")[:32].ljust(32, "0"),
                                                      "name": name, "identityUuid": A, "value": used + 1})
        quota.check(conn, Caller(A), dict.fromkeys(expect, 1))  # exactly at every limit: allowed
        for name in expect:
            with pytest.raises(ApiError) as e:
                quota.check(conn, Caller(A), {**dict.fromkeys(expect, 0), name: 2})
            assert e.value.code == "ID.1003" and name in e.value.details
        quota.check(conn, Caller(B), {"vm.num": 19})  # B's default 20, one VM used
        with pytest.raises(ApiError):
            quota.check(conn, Caller(B), {"vm.num": 20})
