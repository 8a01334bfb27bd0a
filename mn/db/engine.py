"""Engines and the Database handle.

SQLite is the embedded default (WAL, busy timeout, foreign keys on); PostgreSQL and MariaDB are
selected by URL. On SQLite, write transactions start with BEGIN IMMEDIATE so two writers never
deadlock upgrading a read lock, and reads use a second engine with plain deferred transactions.
The Database handle is created by the app factory and passed on explicitly (no globals).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
log = logging.getLogger(__name__)
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


TRANSIENT_RETRIES = 5


class GroupLost(Exception):
    """The database rolled back a group's whole transaction (MariaDB does on a deadlock: the
    savepoints are gone with it), so every call of the group must run again."""


def error_codes(exc: BaseException | None, chain: bool = False) -> set[str | int]:
    """The driver's error codes of a database error (SQLAlchemy's wrapper): the SQLSTATE
    (PostgreSQL) and the error number (MySQL/MariaDB); with `chain`, also of the errors it was
    raised from."""
    codes: set[str | int] = set()
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        orig = getattr(exc, "orig", None)
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if state:
            codes.add(state)
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], int):
            codes.add(args[0])
        exc = (exc.__cause__ or exc.__context__) if chain else None
    return codes


def transaction_lost(exc: BaseException) -> bool:
    """MariaDB rolls back the whole transaction of a deadlock victim (1213); rolling back to
    the call's savepoint then fails with 1305 (no such savepoint)."""
    return bool(error_codes(exc, chain=True) & {1213, 1305})


def is_transient(exc: BaseException) -> bool:
    """A database error that running the same work again can cure: a deadlock victim or a
    serialization failure (PostgreSQL 40P01/40001), a deadlock or lock wait timeout (MariaDB
    1213/1205), or a group whose transaction the database rolled back."""
    return isinstance(exc, GroupLost) or bool(error_codes(exc) & {"40P01", "40001", 1213, 1205})


def connection_of(s: Session | Connection) -> Connection:
    """The connection to run Core statements on: a session's, or the connection itself."""
    return s.connection() if isinstance(s, Session) else s


class WriterLock:
    """SQLite's one-writer rule as a lock: a re-entrant thread lock and, for a database file, an
    exclusive flock on `<file>-writer.lock`, so the writers of every MN process on this file queue
    in the kernel instead of polling the database lock (sqlite's busy handler sleeps up to 100 ms
    per retry). The flock is taken by the outermost acquire of this process and dropped with it."""

    def __init__(self, path: str | None):
        self._lock = threading.RLock()
        self._depth = 0
        self._path = path + "-writer.lock" if path else None
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        self._lock.acquire()
        if self._depth == 0 and self._path is not None:
            try:
                if self._fd is None:  # opened at first use (again after close())
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()

    def close(self) -> None:
        """Close the lock file (not while held); the next acquire opens it again."""
        with self._lock:
            if self._fd is not None and self._depth == 0:
                os.close(self._fd)
                self._fd = None


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    return None if not name or name == ":memory:" or name.startswith("file::memory:") else name


class _Grouped:
    __slots__ = ("fn", "mode", "done", "result", "error", "wake")

    def __init__(self, fn: Callable[[Any], Any], mode: str = "session") -> None:
        self.fn = fn
        self.mode = mode  # "session": fn(Session); "conn": fn(Connection); "statement": one statement
        self.wake = threading.Event()
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
        # SQLite has one writer at a time: writers of every process queue on one lock.
        self._write_lock = WriterLock(_sqlite_file(url)) if url.startswith("sqlite") else None
        self._group_lock = threading.Lock()
        self._group_pending: list[_Grouped] = []  # calls waiting for a leader, oldest first
        self._group_leader = False
        self._group_conn: Any = None  # the leader's connection and thread while it runs a group
        self._group_thread: int | None = None
        # A failed statement undoes only itself (SQLite, InnoDB), so a one-statement grouped call
        # needs no savepoint; on PostgreSQL a failed statement aborts the transaction.
        self._statement_atomic = self.engine.dialect.name in ("sqlite", "mysql", "mariadb")

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
        (BEGIN, COMMIT, the writer lock) are paid once per group instead of once per call. A
        finished group wakes its own calls and hands the lead to the oldest waiting call, no others.
        A grouped() call made by a grouped function runs at once, in a savepoint of its own inside
        the caller's.
        """
        return self._grouped(_Grouped(fn))

    def grouped_conn(self, fn: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """grouped() for a Core write: fn(connection), without an ORM session. With
        `one_statement` (fn executes exactly one statement), the savepoint is skipped where a
        failed statement undoes only itself (SQLite, MariaDB)."""
        return self._grouped(_Grouped(fn, "statement" if one_statement else "conn"))

    def _grouped(self, op: _Grouped) -> Any:
        if self._group_thread == threading.get_ident():  # nested: we are the leader, mid-group
            self._run_one(self._group_conn, op)
            if op.error is not None:
                raise op.error
            return op.result
        with self._group_lock:
            lead = not self._group_leader
            if lead:
                self._group_leader = True
            else:
                self._group_pending.append(op)
        if not lead:
            op.wake.wait()  # set when a leader ran this call, or when it hands this call the lead
        if not op.done:  # lead a group: this call, and the earliest others waiting
            with self._group_lock:
                group = [op, *self._group_pending[:GROUP_MAX - 1]]
                del self._group_pending[:GROUP_MAX - 1]
            nxt = None
            try:
                self._run_group(group)
            finally:
                with self._group_lock:
                    for g in group:
                        g.done = True
                    if self._group_pending:  # the next leader: the earliest call still waiting
                        nxt = self._group_pending.pop(0)
                    else:
                        self._group_leader = False
                for g in group[1:]:  # wake only this group's calls (and the next leader)
                    g.wake.set()
                if nxt is not None:
                    nxt.wake.set()
        if op.error is not None:
            raise op.error
        return op.result

    def _run_one(self, conn: Connection, g: _Grouped) -> None:
        try:
            if g.mode == "session":
                with Session(bind=conn, join_transaction_mode="create_savepoint",
                             expire_on_commit=False) as s, s.begin():
                    g.result = g.fn(s)
            elif g.mode == "statement" and self._statement_atomic:
                g.result = g.fn(conn)
            else:
                with conn.begin_nested():
                    g.result = g.fn(conn)
        except Exception as exc:  # only this call's savepoint (or statement) is rolled back
            g.error = exc

    def _run_group(self, group: list[_Grouped]) -> None:
        """Run the group in one transaction; calls that lost a deadlock (or a serialization
        conflict) to another transaction run again in a new one, after this one committed and
        released its locks (up to TRANSIENT_RETRIES times): two MN processes' groups can lock
        the same rows (a primary storage, hosts) in opposite orders."""
        for attempt in range(TRANSIENT_RETRIES + 1):
            self._run_group_once(group)
            again = [g for g in group if g.error is not None and is_transient(g.error)]
            if not again or attempt == TRANSIENT_RETRIES:
                return
            log.info("%d grouped writes lost a deadlock or conflict; running them again", len(again))
            for g in again:
                g.error = g.result = None
            group = again

    def _run_group_once(self, group: list[_Grouped]) -> None:
        try:
            with self._write_lock or nullcontext(), self.engine.connect() as conn, conn.begin():
                self._group_conn, self._group_thread = conn, threading.get_ident()
                try:
                    for g in group:
                        self._run_one(conn, g)
                        if g.error is not None and transaction_lost(g.error):
                            raise GroupLost(str(g.error)) from g.error
                finally:
                    self._group_conn, self._group_thread = None, None
        except GroupLost as exc:  # what the group wrote is gone, the calls that "succeeded" too
            for g in group:
                g.error, g.result = exc, None
        except Exception as exc:  # the commit (or BEGIN) failed: nothing of the group was written
            for g in group:
                if g.error is None:
                    g.error, g.result = exc, None

    @contextmanager
    def ro(self) -> Iterator[Session]:
        """A read-only transaction (never committed)."""
        with self._read() as s:
            yield s  # closing the session rolls the read transaction back

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction on a Core connection, without an ORM session: for hot reads
        by prebuilt statements (about half the cost of ro())."""
        with self.read_engine.connect() as conn:
            yield conn  # closing the connection rolls the read transaction back

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
