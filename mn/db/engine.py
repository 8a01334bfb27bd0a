"""Engines and the Database handle.

SQLite is the embedded default (WAL, busy timeout, foreign keys on); PostgreSQL and MariaDB are
selected by URL. On SQLite, write transactions start with BEGIN IMMEDIATE so two writers never
deadlock upgrading a read lock, and reads use a second engine with plain deferred transactions.
The Database handle is created by the app factory and passed on explicitly (no globals).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


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


class Database:
    """The MN's database: `tx()` for a write transaction, `ro()` for a read-only one."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.read_engine = make_engine(url, immediate=False) if url.startswith("sqlite") else self.engine
        self._write = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._read = sessionmaker(bind=self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue on a lock instead of
        # polling the database lock (the sqlite busy handler sleeps up to 100 ms per retry).
        self._write_lock = threading.RLock() if url.startswith("sqlite") else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._write_lock or nullcontext(), self._write() as s, s.begin():
            yield s

    @contextmanager
    def ro(self) -> Iterator[Session]:
        """A read-only transaction (never committed)."""
        with self._read() as s:
            yield s  # closing the session rolls the read transaction back

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
