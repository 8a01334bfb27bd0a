"""Database.grouped: group commit of concurrent writes, each in its own savepoint."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from mn.db import engine as engine_mod
from mn.db.base import new_uuid
from mn.db.engine import Database
from mn.models import Zone


def _zone(name: str):
    def fn(s):
        s.add(Zone(uuid=new_uuid(), name=name, state="Enabled"))
        return name

    return fn


def _names(db: Database) -> set[str]:
    with db.ro() as s:
        return set(s.scalars(select(Zone.name)))


def test_a_lone_call_commits_and_returns_its_result(db: Database) -> None:
    assert db.grouped(_zone("z1")) == "z1"
    assert _names(db) == {"z1"}


def test_a_failure_undoes_only_its_own_writes(db: Database) -> None:
    gate = threading.Event()
    order: list[str] = []

    def slow_first(s):  # holds the leader while the others queue behind it as one group
        gate.wait(5)
        order.append("first")
        return _zone("first")(s)

    def failing(s):
        _zone("doomed")(s)
        s.flush()
        raise ValueError("no")

    with ThreadPoolExecutor(8) as pool:
        lead = pool.submit(db.grouped, slow_first)
        others = [pool.submit(db.grouped, _zone(f"ok{i}")) for i in range(5)]
        bad = pool.submit(db.grouped, failing)
        gate.set()
        assert lead.result() == "first" and [f.result() for f in others] == [f"ok{i}" for i in range(5)]
        with pytest.raises(ValueError, match="no"):
            bad.result()
    assert _names(db) == {"first", *(f"ok{i}" for i in range(5))}


def test_each_call_sees_the_writes_before_it(db: Database) -> None:
    db.grouped(_zone("counter"))

    def bump(s):  # read-modify-write: correct only if every call sees the previous one's update
        z = s.scalar(select(Zone).where(Zone.name == "counter"))
        n = int(z.description or 0)
        s.execute(update(Zone).where(Zone.uuid == z.uuid).values(description=str(n + 1)))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: db.grouped(bump), range(200)))
    with db.ro() as s:
        assert s.scalar(select(Zone.description).where(Zone.name == "counter")) == "200"


def test_calls_share_transactions(db: Database, monkeypatch) -> None:
    commits = []
    real = Database._run_group
    monkeypatch.setattr(Database, "_run_group", lambda self, group: (commits.append(len(group)), real(self, group)))
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: db.grouped(_zone(f"g{i}")), range(300)))
    with db.ro() as s:
        assert s.scalar(select(func.count()).select_from(Zone)) == 300
    assert sum(commits) == 300 and len(commits) < 300 and max(commits) <= engine_mod.GROUP_MAX


def test_a_failed_commit_fails_every_call_of_the_group(db: Database, monkeypatch) -> None:
    class Boom(Exception):
        pass

    def broken_connect():
        raise Boom("database is gone")

    monkeypatch.setattr(db.engine, "connect", broken_connect)
    with pytest.raises(Boom):
        db.grouped(_zone("never"))
    monkeypatch.undo()
    assert _names(db) == set()


def test_a_nested_call_runs_inside_the_callers_group(db: Database) -> None:
    def failing(s):
        _zone("inner-failed")(s)
        s.flush()
        raise ValueError("x")

    def outer(s):
        _zone("outer")(s)
        assert db.grouped(_zone("inner")) == "inner"
        with pytest.raises(ValueError):
            db.grouped(failing)  # its own savepoint: the outer call goes on
        return "outer"

    assert db.grouped(outer) == "outer"
    assert _names(db) == {"outer", "inner"}


def test_every_call_runs_once_when_more_wait_than_a_group_holds(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(engine_mod, "GROUP_MAX", 3)  # far more waiting writers than one group takes
    ran: list[str] = []

    def call(i: int) -> str:
        def fn(s):
            ran.append(f"z{i}")
            return _zone(f"z{i}")(s)

        return db.grouped(fn)

    with ThreadPoolExecutor(32) as pool:
        assert list(pool.map(call, range(300))) == [f"z{i}" for i in range(300)]
    assert sorted(ran) == sorted(f"z{i}" for i in range(300))
    assert _names(db) == {f"z{i}" for i in range(300)}


class _Deadlock(Exception):
    """Shaped like SQLAlchemy's wrapper of a PostgreSQL deadlock victim (sqlstate 40P01)."""

    class orig:  # noqa: N801
        sqlstate = "40P01"


def test_a_deadlock_victim_runs_again_in_a_new_transaction(db: Database) -> None:
    from mn.db.engine import is_transient

    assert is_transient(_Deadlock()) and not is_transient(ValueError("x"))
    tries: list[int] = []

    def victim(s):
        tries.append(1)
        s.add(Zone(uuid=new_uuid(), name=f"try{len(tries)}", state="Enabled"))
        if len(tries) < 3:
            raise _Deadlock()
        return "done"

    assert db.grouped(victim) == "done"
    assert len(tries) == 3
    assert _names(db) == {"try3"}  # the failed tries left nothing


def test_other_errors_are_not_run_again(db: Database) -> None:
    tries: list[int] = []

    def broken(s):
        tries.append(1)
        raise ValueError("no")

    with pytest.raises(ValueError):
        db.grouped(broken)
    assert len(tries) == 1


class _MariaDeadlock(Exception):
    """Shaped like MariaDB's deadlock error (1213), after which the whole transaction is gone."""

    class orig:  # noqa: N801
        args = (1213, "Deadlock found when trying to get lock; try restarting transaction")


def test_a_transaction_the_database_rolled_back_runs_every_call_of_its_group_again(db: Database) -> None:
    """MariaDB rolls back a deadlock victim's whole transaction: the calls of the group that had
    succeeded lost their writes too, so all of them run again (not only the victim)."""
    import time

    from mn.db.engine import GroupLost, is_transient, transaction_lost

    assert transaction_lost(_MariaDeadlock()) and is_transient(GroupLost("x"))
    gate = threading.Event()
    runs = {"a": 0, "b": 0}

    def blocker(s):  # leads a group of its own while a and b queue up behind it as the next one
        gate.wait(5)
        return _zone("blocker")(s)

    def a(s):
        runs["a"] += 1
        return _zone("a")(s)

    def b(s):
        runs["b"] += 1
        _zone("b")(s)
        if runs["b"] == 1:
            raise _MariaDeadlock()
        return "b"

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(db.grouped, blocker)
        time.sleep(0.2)
        fa = pool.submit(db.grouped, a)
        time.sleep(0.1)
        fb = pool.submit(db.grouped, b)
        time.sleep(0.1)
        gate.set()
        assert (first.result(), fa.result(), fb.result()) == ("blocker", "a", "b")
    assert runs == {"a": 2, "b": 2}
    with db.ro() as s:
        names = list(s.scalars(select(Zone.name)))
    assert sorted(names) == ["a", "b", "blocker"]  # each once: the lost group's writes are gone


def test_core_calls_undo_only_their_own_writes(db: Database) -> None:
    """grouped_conn: a failed one-statement call (no savepoint on SQLite) and a failed call of two
    statements (in a savepoint) leave the group's other writes committed."""
    from sqlalchemy import insert

    gate = threading.Event()
    dup = new_uuid()
    db.grouped(lambda s: s.add(Zone(uuid=dup, name="taken", state="Enabled")))

    def row(name: str, uuid: str | None = None) -> dict:
        return {"uuid": uuid or new_uuid(), "name": name, "state": "Enabled"}

    def slow_first(conn):
        gate.wait(5)
        conn.execute(insert(Zone), row("first"))

    def two_statements(conn):
        conn.execute(insert(Zone), row("half"))
        conn.execute(insert(Zone), row("clash", dup))

    with ThreadPoolExecutor(8) as pool:
        lead = pool.submit(db.grouped_conn, slow_first)
        bad_one = pool.submit(db.grouped_conn, lambda c: c.execute(insert(Zone), row("clash", dup)),
                              one_statement=True)
        ok = pool.submit(db.grouped_conn, lambda c: c.execute(insert(Zone), row("ok")), one_statement=True)
        bad_two = pool.submit(db.grouped_conn, two_statements)
        gate.set()
        lead.result(), ok.result()
        for f in (bad_one, bad_two):
            with pytest.raises(Exception, match="UNIQUE"):
                f.result()
    assert _names(db) == {"taken", "first", "ok"}
