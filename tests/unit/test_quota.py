"""Quotas counted from the account's rows; a Quota row overrides the default; admins are exempt."""

from __future__ import annotations

import pytest

from mn import ownership, quota
from mn.context import SYSTEM, Caller
from mn.errors import ApiError
from mn.models import Account, Quota, VmInstance


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
