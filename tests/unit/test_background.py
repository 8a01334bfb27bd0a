"""Background tasks: first-run delay, and the SQLite statistics task."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from mn import background
from mn.background import Background, refresh_sqlite_statistics
from mn.config import MNConfig
from mn.context import Services
from mn.db.base import Base
from mn.db.engine import Database
from mn.models import Zone


def test_first_run_comes_after_first_not_the_interval(monkeypatch, tmp_path: Path) -> None:
    ran = threading.Event()
    monkeypatch.setattr(background, "TASKS", {})
    background.periodic("t", lambda svc: 3600.0, first=0.01)(lambda svc: ran.set())
    bg = Background(None)  # type: ignore[arg-type]
    bg.start()
    try:
        assert ran.wait(5)  # not one hour
    finally:
        bg.stop()
    assert bg.rounds == {"t": 1}  # counted for /health


def test_sqlite_statistics_are_written(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    Base.metadata.create_all(db.engine)
    with db.tx() as s:
        s.add_all([Zone(uuid=f"{i:032x}", name=f"z{i}") for i in range(50)])
    svc = Services(
        config=MNConfig(home=tmp_path, db_url=db.url),
        db=db,
        agents=None,  # type: ignore[arg-type]
        gconf=None,
        mn_uuid="m" * 32,
    )  # type: ignore[arg-type]
    refresh_sqlite_statistics(svc)
    with db.ro() as s:
        stats = dict(s.execute(text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'zone'")).all())
    assert stats["ix_zone_name"].startswith("50 ")  # 50 rows, sampled by the planner's ANALYZE
    db.dispose()


def test_only_the_first_process_of_an_mn_runs_tasks_not_marked_per_process(monkeypatch) -> None:
    monkeypatch.setattr(background, "TASKS", {})
    ran: dict[str, threading.Event] = {"shared": threading.Event(), "each": threading.Event()}
    background.periodic("shared", lambda svc: 3600.0, first=0.01)(lambda svc: ran["shared"].set())
    background.periodic("each", lambda svc: 3600.0, first=0.01, per_process=True)(lambda svc: ran["each"].set())
    bg = Background(None, primary=False)  # type: ignore[arg-type]
    bg.start()
    try:
        assert ran["each"].wait(5)
        assert not ran["shared"].wait(0.3)
    finally:
        bg.stop()
    assert bg.rounds == {"each": 1}
