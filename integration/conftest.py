"""Integration tier: a real simulator and a real MN on loopback, driven through the public API.

The database is SQLite by default; ZSTACK_TEST_DB=postgresql (or mariadb) runs the same tests on
a fresh database of the local server, dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mn.client import ZStackClient
from mn.config import MNConfig
from mn.server import RunningMN, start


def _server_db(kind: str) -> tuple[str, callable]:
    from sqlalchemy import create_engine, text

    name = f"zstack_it_{uuidlib.uuid4().hex[:8]}"
    if kind == "postgresql":
        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        create, drop = f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    elif kind == "mariadb":
        admin = "mysql+pymysql://root@127.0.0.1:3306/"
        url = f"mysql+pymysql://root@127.0.0.1:3306/{name}"
        create, drop = f"CREATE DATABASE `{name}`", f"DROP DATABASE IF EXISTS `{name}`"
    else:
        raise ValueError(kind)
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(create))

    def cleanup() -> None:
        with eng.connect() as c:
            c.execute(text(drop))
        eng.dispose()

    return url, cleanup


def make_db_url(home: Path) -> tuple[str, callable]:
    kind = os.environ.get("ZSTACK_TEST_DB", "sqlite")
    if kind == "sqlite":
        return f"sqlite:///{home / 'zstack.db'}", lambda: None
    return _server_db(kind)


@pytest.fixture(scope="session")
def sim():
    """The simulator, serving simulated hosts and storages over HTTP on loopback."""
    from simulator.server import start_in_thread

    s = start_in_thread("127.0.0.1", 0)
    yield s
    s.stop()


def start_mn(sim, home: Path, db_url: str, **overrides) -> RunningMN:
    cfg = MNConfig(home=home, db_url=db_url, host="127.0.0.1", port=0, simulator_url=sim.url,
                   **overrides)
    return start(cfg)


@pytest.fixture(scope="session")
def mn(sim) -> Iterator[RunningMN]:
    home = Path(tempfile.mkdtemp(prefix="zstack-it-"))
    url, cleanup = make_db_url(home)
    running = start_mn(sim, home, url)
    yield running
    running.stop()
    cleanup()


@pytest.fixture(scope="session")
def api(mn) -> ZStackClient:
    """A logged-in admin client of the session's MN."""
    c = ZStackClient(mn.url)
    c.login()
    return c
