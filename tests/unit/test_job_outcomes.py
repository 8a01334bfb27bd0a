"""JobRunner.peek: this MN's jobs answered from memory, the database staying the truth."""

from __future__ import annotations

import json

from sqlalchemy import select

from mn import jobs
from mn.db.engine import Database
from mn.jobs import JobRunner
from mn.models import ApiJob


def test_running_then_finished_then_forgotten(db: Database, monkeypatch) -> None:
    runner = JobRunner(db, "mn-1", workers=2)
    try:
        assert runner.peek("j1") is None  # unknown: ask the database
        runner.create("j1", "CreateZone", {"name": "z"}, None)
        view = runner.peek("j1")
        assert (view.api_name, view.state, view.reply, view.finished) == ("CreateZone", "Processing", None, None)
        runner.finish("j1", "Succeeded", {"success": True, "inventory": {"uuid": "z1"}})
        view = runner.peek("j1")
        assert view.state == "Succeeded" and json.loads(view.reply)["inventory"] == {"uuid": "z1"} and view.finished
        with db.ro() as s:  # written before it is remembered
            row = s.scalar(select(ApiJob).where(ApiJob.uuid == "j1"))
            assert row.state == "Succeeded" and row.finishedDate == view.finished
        monkeypatch.setattr(jobs, "RESULT_TTL", -1.0)
        runner.create("j2", "CreateZone", {}, None)
        runner.finish("j2", "Failed", {"success": False})
        assert runner.peek("j2") is None  # past its TTL: the database answers
    finally:
        runner.shutdown()


def test_remembered_outcomes_are_bounded(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "RESULT_CACHE", 3)
    runner = JobRunner(db, "mn-1", workers=2)
    try:
        for i in range(5):
            runner.create(f"j{i}", "CreateZone", {}, None)
            runner.finish(f"j{i}", "Succeeded", {"success": True})
        assert [runner.peek(f"j{i}") is not None for i in range(5)] == [False, False, True, True, True]
    finally:
        runner.shutdown()
