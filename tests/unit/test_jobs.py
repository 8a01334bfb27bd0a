from __future__ import annotations

import json
import threading
import time

from mn.errors import ApiError
from mn.jobs import JobRunner
from mn.models import ApiJob


def test_jobs_on_one_key_run_in_order_and_different_keys_in_parallel(db):
    runner = JobRunner(db, "mn", workers=8)
    order: list[str] = []
    active: dict[str, int] = {}
    overlap = []
    lock = threading.Lock()

    def work(key, i):
        def run():
            with lock:
                active[key] = active.get(key, 0) + 1
                if active[key] > 1:
                    overlap.append(key)
                order.append(f"{key}{i}")
            time.sleep(0.01)
            with lock:
                active[key] -= 1
            return {}
        return run

    for i in range(5):
        for key in ("a", "b"):
            uuid = f"{key}{i}".ljust(32, "0")
            runner.create(uuid, "Test", {}, key)
            runner.submit(uuid, key, work(key, i))
    assert runner.wait_idle(10)
    assert not overlap
    assert [x for x in order if x[0] == "a"] == [f"a{i}" for i in range(5)]
    runner.shutdown()


def test_job_results_and_errors_are_recorded(db):
    runner = JobRunner(db, "mn", workers=2)
    runner.create("1" * 32, "Ok", {}, None)
    runner.submit("1" * 32, None, lambda: {"inventory": {"x": 1}})
    runner.create("2" * 32, "Bad", {}, None)

    def fail():
        raise ApiError("SYS.1006", "nope")

    runner.submit("2" * 32, None, fail)
    runner.create("3" * 32, "Crash", {}, None)
    runner.submit("3" * 32, None, lambda: 1 / 0)
    assert runner.wait_idle(10)
    with db.ro() as s:
        ok, bad, crash = (s.get(ApiJob, c * 32) for c in "123")
        assert ok.state == "Succeeded" and json.loads(ok.result) == {"success": True, "inventory": {"x": 1}}
        assert bad.state == "Failed" and json.loads(bad.result)["error"]["code"] == "SYS.1006"
        assert crash.state == "Failed" and json.loads(crash.result)["error"]["code"] == "SYS.1000"
    runner.shutdown()


def test_finished_jobs_are_purged_after_retention(db):
    import datetime as dt

    from sqlalchemy import update

    from mn.db.base import utcnow
    from mn.jobs import purge_finished

    runner = JobRunner(db, "mn", workers=2)
    for c in "abc":
        runner.create(c * 32, "Test", {}, None)
    runner.finish("a" * 32, "Succeeded", {"success": True})
    runner.finish("b" * 32, "Succeeded", {"success": True})
    with db.tx() as s:  # "a" ended two days ago; "b" just now; "c" still runs
        s.execute(update(ApiJob).where(ApiJob.uuid == "a" * 32)
                  .values(finishedDate=utcnow() - dt.timedelta(days=2)))
    assert purge_finished(db, 86400, batch=1) == 1
    with db.ro() as s:
        assert {j.uuid[0] for j in s.query(ApiJob)} == {"b", "c"}
    runner.shutdown()
