"""Engines and the Database handle.

SQLite is the embedded default (WAL, busy timeout, foreign keys on); PostgreSQL and MariaDB are
selected by URL. On SQLite, write transactions start with BEGIN IMMEDIATE so two writers never
deadlock upgrading a read lock, and reads use a second engine with plain deferred transactions.
The Database handle is created by the app factory and passed on explicitly (no globals).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
GROUP_MAX = 64
"""The most grouped() calls one transaction serves."""


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 60},
        pool_size=16, max_overflow=48, pool_timeout=120,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)

    @event.listens_for(engine, "begin")
    def _begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, immediate)
    if url.startswith("mysql"):
        return create_engine(url, pool_size=16, max_overflow=48, pool_recycle=3600,
                             pool_pre_ping=True, isolation_level="READ COMMITTED")
    return create_engine(url, pool_size=16, max_overflow=48, pool_pre_ping=True)


class _Grouped:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[Session], Any]) -> None:
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Database:
    """The MN's database: `tx()` for a write transaction, `ro()` for a read-only one, `grouped()`
    for a write that may share its transaction (and commit) with other threads' concurrent ones."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.read_engine = make_engine(url, immediate=False) if url.startswith("sqlite") else self.engine
        self._write = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._read = sessionmaker(bind=self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue on a lock instead of
        # polling the database lock (the sqlite busy handler sleeps up to 100 ms per retry).
        self._write_lock = threading.RLock() if url.startswith("sqlite") else None
        self._group_cond = threading.Condition()
        self._group_pending: list[_Grouped] = []
        self._group_leader = False
        self._group_conn: Any = None  # the leader's connection and thread while it runs a group
        self._group_thread: int | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._write_lock or nullcontext(), self._write() as s, s.begin():
            yield s

    def grouped(self, fn: Callable[[Session], T]) -> T:
        """fn(session) in a write transaction, committed when this returns; fn's exception is raised
        and undoes fn's writes only.

        Group commit: the calls waiting at the same moment (up to GROUP_MAX) run one after another
        in one transaction, each in its own Session inside its own SAVEPOINT, so each sees the
        database as the earlier ones left it and a failure rolls back only its own savepoint. One
        thread (the leader) runs the group while the others wait; the transaction's fixed costs
        (BEGIN, COMMIT, the writer lock) are paid once per group instead of once per call.
        A grouped() call made by a grouped function runs at once, in a savepoint of its own inside
        the caller's.
        """
        op = _Grouped(fn)
        if self._group_thread == threading.get_ident():  # nested: we are the leader, mid-group
            self._run_one(self._group_conn, op)
            if op.error is not None:
                raise op.error
            return op.result
        with self._group_cond:
            self._group_pending.append(op)
            while not op.done and self._group_leader:
                self._group_cond.wait()
            if not op.done:  # lead a group: this call, and the earliest others waiting
                self._group_leader = True
                self._group_pending.remove(op)
                group = [*self._group_pending[:GROUP_MAX - 1], op]
                del self._group_pending[:GROUP_MAX - 1]
        if not op.done:
            try:
                self._run_group(group)
            finally:
                with self._group_cond:
                    for g in group:
                        g.done = True
                    self._group_leader = False
                    self._group_cond.notify_all()
        if op.error is not None:
            raise op.error
        return op.result

    @staticmethod
    def _run_one(conn: Any, g: _Grouped) -> None:
        try:
            with Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False) as s, \
                    s.begin():
                g.result = g.fn(s)
        except Exception as exc:  # only this call's savepoint is rolled back
            g.error = exc

    def _run_group(self, group: list[_Grouped]) -> None:
        try:
            with self._write_lock or nullcontext(), self.engine.connect() as conn, conn.begin():
                self._group_conn, self._group_thread = conn, threading.get_ident()
                try:
                    for g in group:
                        self._run_one(conn, g)
                finally:
                    self._group_conn, self._group_thread = None, None
        except Exception as exc:  # the commit (or BEGIN) failed: nothing of the group was written
            for g in group:
                if g.error is None:
                    g.error, g.result = exc, None

    @contextmanager
    def ro(self) -> Iterator[Session]:
        """A read-only transaction (never committed)."""
        with self._read() as s:
            yield s  # closing the session rolls the read transaction back

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
