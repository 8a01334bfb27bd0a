"""Quotas counted from the account's rows; a Quota row overrides the default; admins are exempt."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from mn import ownership, quota
from mn.context import SYSTEM, Caller
from mn.errors import ApiError
from mn.models import Account, Quota, QuotaUsage, VmInstance


def _vm(s, uuid: str, cpu: int, state: str = "Running") -> None:
    s.add(VmInstance(uuid=uuid, name=uuid, state=state, cpuNum=cpu, memorySize=1024, type="UserVm",
                     hypervisorType="Simulator", internalId=1, zoneUuid=None))


def test_usage_counts_the_accounts_live_rows_and_check_refuses_past_the_limit(db):
    with db.tx() as s:
        s.add(Account(uuid="a" * 32, name="a", type="Normal", passwordHash="x", passwordSalt="y"))
        s.add(Account(uuid="b" * 32, name="b", type="Normal", passwordHash="x", passwordSalt="y"))
        s.flush()
        for i, (owner, state) in enumerate([("a", "Running"), ("a", "Stopped"), ("a", "Destroyed"), ("b", "Running")]):
            uuid = f"{i}" * 32
            _vm(s, uuid, cpu=2, state=state)
            ownership.own(s, owner * 32, "VmInstanceVO", [uuid])
        s.add(Quota(name="vm.num", identityUuid="a" * 32, value=3))
    a = Caller("a" * 32)
    with db.tx() as s:
        conn = s.connection()
        got = quota.used(conn, a.account_uuid, ["vm.num", "vm.cpuNum", "vm.memorySize"])
        assert got == {"vm.num": 2, "vm.cpuNum": 4, "vm.memorySize": 2048}  # the Destroyed one is free
        usage = {u["name"]: u for u in quota.usages(conn, a.account_uuid)}
        assert usage["vm.num"] == {"name": "vm.num", "total": 3, "used": 2}
        assert usage["vm.cpuNum"]["total"] == quota.QUOTAS["vm.cpuNum"].default
        quota.check(conn, a, {"vm.num": 1})  # 2 + 1 <= 3
        with pytest.raises(ApiError) as e:
            quota.check(conn, a, {"vm.num": 2})
        assert e.value.code == "ID.1003" and "vm.num" in e.value.details
        quota.check(conn, SYSTEM, {"vm.num": 1000})  # admins have no quotas


def test_the_bound_passes_at_once_stays_above_usage_and_is_recounted_when_it_would_refuse(db):
    with db.tx() as s:
        s.add(Account(uuid="c" * 32, name="c", type="Normal", passwordHash="x", passwordSalt="y"))
        s.add(Quota(name="vm.num", identityUuid="c" * 32, value=2))
    c = Caller("c" * 32)

    def create(uuid: str) -> None:
        with db.tx() as s:
            quota.check(s.connection(), c, {"vm.num": 1})
            _vm(s, uuid, cpu=1)
            ownership.own(s, c.account_uuid, "VmInstanceVO", [uuid])

    def bound() -> int | None:
        with db.ro() as s:
            row = s.get(QuotaUsage, (c.account_uuid, "vm.num"))
            return None if row is None else row.used

    create("1" * 32)
    assert bound() == 1  # the first check counted the rows, then added its VM
    create("2" * 32)
    assert bound() == 2  # the bound passed and grew: no count
    with pytest.raises(ApiError) as e:
        create("3" * 32)
    assert e.value.code == "ID.1003"
    with db.tx() as s:  # a delete leaves the bound high: the next check counts and admits
        s.execute(delete(VmInstance).where(VmInstance.uuid == "2" * 32))
        ownership.disown(s, ["2" * 32])
    create("3" * 32)
    assert bound() == 2
    with db.tx() as s:  # usage raised outside check(): the bounds are dropped
        quota.grew_owners(s.connection(), ["3" * 32])
    assert bound() is None
