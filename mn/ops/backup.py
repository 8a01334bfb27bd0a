"""Database dumps and restores, with each engine's own tools.

Why these formats: they are exact (every type, index, sequence position and the alembic_version
row come back as they were) and fast (C code streaming rows, no Python object per row).

- SQLite: a copy made with SQLite's online backup API (page by page, a consistent snapshot even
  while the MN writes); restored the same way over the live file, so a reader never sees half.
- PostgreSQL: `pg_dump -Fc` (custom format, compressed); restored as one transaction: the
  schema's tables are dropped and `pg_restore`'s script loaded by `psql --single-transaction`,
  so a failed restore changes nothing.
- MariaDB/MySQL: `mariadb-dump --single-transaction` SQL text (a consistent InnoDB snapshot);
  restored by emptying the database and loading it with the `mariadb` client (MariaDB DDL is not
  transactional: a failed restore can be rerun).

The MN's key file (`<home>/secret.key`, mn/secretbox.py), which seals the stored host and storage
passwords, belongs with the database: save_key copies it beside a dump (`<dump>.key`) or into a
backup directory, put_key puts it back; a database restored without its key keeps its sealed
passwords unopenable.

A dump file says what it is by its first bytes (`file_kind`); `restore` refuses a dump of another
engine. Passwords travel in the child's environment (PGPASSWORD) or a 0600 option file, never on
a command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import MetaData, create_engine, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

SUFFIX = {"sqlite": ".sqlite", "postgresql": ".pgdump", "mysql": ".sql"}
_MAGIC = {b"SQLite format 3\x00": "sqlite", b"PGDMP": "postgresql"}


class BackupError(Exception):
    """A dump or restore that could not be done; the message says why and what to do."""


def dialect_of(url: str) -> str:
    """'sqlite', 'postgresql' or 'mysql' (MariaDB) for a SQLAlchemy URL; BackupError otherwise."""
    name = make_url(url).get_backend_name()
    if name not in SUFFIX:
        raise BackupError(f"dump and restore support SQLite, PostgreSQL and MariaDB, not {name!r}")
    return name


def file_kind(path: Path) -> str:
    """The engine a dump file belongs to, from its first bytes (SQL text is a MariaDB dump)."""
    with open(path, "rb") as f:
        head = f.read(16)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head.startswith(b"-- ") or head.startswith(b"/*"):
        return "mysql"
    raise BackupError(f"{path} is not a database dump (neither SQLite, pg_dump nor mariadb-dump)")


def required_tools(url: str) -> list[str]:
    """The client programs dump and restore need for this database."""
    return {"sqlite": [], "postgresql": ["pg_dump", "pg_restore", "psql"],
            "mysql": ["mariadb-dump", "mariadb"]}[dialect_of(url)]


def check_tools(url: str) -> None:
    """BackupError naming the missing client programs, before anything is changed."""
    missing = [t for t in required_tools(url) if shutil.which(t) is None]
    if missing:
        pkg = "postgresql-client" if dialect_of(url) == "postgresql" else "mariadb-client"
        raise BackupError(f"{', '.join(missing)} not found on PATH: install {pkg}")


def dump(url: str, dest: Path) -> None:
    """Write a consistent dump of the database at `url` to `dest` (replaced atomically)."""
    kind = dialect_of(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    try:
        if kind == "sqlite":
            _sqlite_copy(_sqlite_path(url), tmp, journal_mode="DELETE")
        elif kind == "postgresql":
            with _pg_env(make_url(url)) as env:
                _run(["pg_dump", "-Fc", "--no-password", "-f", str(tmp)], env)
        else:
            with _my_options(make_url(url)) as opts, open(tmp, "wb") as out:
                _run(["mariadb-dump", *opts, "--single-transaction", "--quick", "--hex-blob",
                      "--routines", "--triggers", "--skip-dump-date", make_url(url).database or ""],
                     None, stdout=out)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def restore(url: str, src: Path) -> None:
    """Replace the whole content of the database at `url` by the dump `src`.

    The caller makes sure nothing else uses the database (the MN is stopped).
    """
    kind = dialect_of(url)
    if not src.is_file():
        raise BackupError(f"no dump file {src}")
    found = file_kind(src)
    if found != kind:
        raise BackupError(f"{src} is a {found} dump; the database {make_url(url).render_as_string()} "
                          f"is {kind}")
    if kind == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(src, target, journal_mode="WAL")
    elif kind == "postgresql":
        _pg_restore(make_url(url), src)
    else:
        _my_restore(make_url(url), src)


def row_counts(url: str) -> dict[str, int]:
    """Rows per table of the database at `url` (every table, sorted by name)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                    for name, table in sorted(meta.tables.items())}
    finally:
        engine.dispose()


def check_reachable(url: str) -> None:
    """BackupError when the database does not answer a trivial query."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 (any driver error means: not reachable)
        raise BackupError(f"the database {make_url(url).render_as_string()} is not reachable: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


def key_beside(dump_file: Path) -> Path:
    """Where dump_db keeps the key file of a dump: `<dump>.key`."""
    return dump_file.with_name(dump_file.name + ".key")


def save_key(home: Path, dest: Path) -> bool:
    """Copy the home's key file to `dest` (0600); False when the home has none yet."""
    from mn.secretbox import key_path

    src = key_path(home)
    if not src.exists():
        return False
    tmp = dest.with_name(dest.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
    os.replace(tmp, dest)
    return True


def put_key(src: Path, home: Path) -> None:
    """Make `src` the home's key file (0600, replaced atomically)."""
    from mn.secretbox import key_path

    dest = key_path(home)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.restore")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
    os.replace(tmp, dest)


# ---- SQLite -------------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be dumped")
    return Path(database)


def _sqlite_copy(src: Path, dest: Path, journal_mode: str) -> None:
    """Copy `src` over `dest` with the online backup API, then set dest's journal mode."""
    if not src.exists():
        raise BackupError(f"no SQLite database at {src}")
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
        target.execute(f"PRAGMA journal_mode={journal_mode}")
    finally:
        target.close()
        source.close()


# ---- PostgreSQL ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _pg_env(url: URL) -> Iterator[dict[str, str]]:
    """libpq environment variables naming the database of `url`."""
    env = dict(os.environ)
    host = url.host or url.query.get("host")
    values = {"PGHOST": host, "PGPORT": str(url.port) if url.port else None, "PGUSER": url.username,
              "PGPASSWORD": url.password, "PGDATABASE": url.database,
              "PGSSLMODE": url.query.get("sslmode")}
    env.update({k: str(v) for k, v in values.items() if v})
    yield env


def _pg_restore(url: URL, src: Path) -> None:
    """Drop the schema's tables, sequences and types and load `src`, all in one transaction."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
            seqs = conn.execute(text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"))
            types = conn.execute(text(
                "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = current_schema() AND t.typtype = 'e'"))
            drops = ([f'DROP TABLE IF EXISTS "{t}" CASCADE;' for (t,) in tables]
                     + [f'DROP SEQUENCE IF EXISTS "{s}" CASCADE;' for (s,) in seqs]
                     + [f'DROP TYPE IF EXISTS "{t}" CASCADE;' for (t,) in types])
    finally:
        engine.dispose()
    with _pg_env(url) as env:
        script = subprocess.run(["pg_restore", "--no-owner", "--no-acl", "-f", "-", str(src)],
                                env=env, capture_output=True)
        if script.returncode != 0:
            raise BackupError(f"pg_restore could not read {src}: {script.stderr.decode(errors='replace')}")
        body = "\n".join(drops).encode() + b"\n" + script.stdout
        _run(["psql", "--no-password", "--quiet", "-v", "ON_ERROR_STOP=1", "--single-transaction",
              "-o", os.devnull, "-f", "-"], env, stdin=body)


# ---- MariaDB ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _my_options(url: URL) -> Iterator[list[str]]:
    """Client options for `url`: a 0600 option file (first argument) holding the password."""
    lines = ["[client]"]
    for key, value in (("host", url.host), ("port", url.port), ("user", url.username),
                       ("password", url.password), ("socket", url.query.get("unix_socket"))):
        if value:
            lines.append(f"{key}={value}")
    with tempfile.TemporaryDirectory(prefix="zstack-db-") as tmp:
        path = Path(tmp) / "client.cnf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        yield [f"--defaults-extra-file={path}"]


def _my_restore(url: URL, src: Path) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            names = [r[0] for r in conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"))]
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            for name in names:
                conn.execute(text(f"DROP TABLE IF EXISTS `{name}`"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
            conn.commit()
    finally:
        engine.dispose()
    with _my_options(url) as opts, open(src, "rb") as dump_file:
        _run(["mariadb", *opts, "--batch", url.database or ""], None, stdin_file=dump_file)


# ---- processes ----------------------------------------------------------------------------------


def _run(cmd: list[str], env: dict[str, str] | None, *, stdin: bytes | None = None,
         stdin_file: object = None, stdout: object = None) -> None:
    """Run a client program; BackupError with its stderr when it fails or is missing."""
    try:
        proc = subprocess.run(cmd, env=env, input=stdin, stdin=stdin_file if stdin is None else None,
                              stdout=stdout if stdout is not None else subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise BackupError(f"{cmd[0]} not found on PATH") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise BackupError(f"{cmd[0]} failed (exit {proc.returncode}): {err}")
