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

from integration.agent_keys import KEY_FILE
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

    s = start_in_thread("127.0.0.1", 0, key_file=KEY_FILE)
    yield s
    s.stop()


def start_mn(sim, home: Path, db_url: str, **overrides) -> RunningMN:
    overrides.setdefault("agent_key_file", str(KEY_FILE))
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


# ---- an MN in its own process (or processes: MNConfig.processes), for kill and restart tests ----

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_mn(home: Path, db_url: str, port: int, sim_url: str, workers: int = 32, processes: int = 1):
    """`python -m mn.server` in a new session (process group): os.killpg(p.pid, SIGKILL) kills
    the MN with every worker process it has, as a crash of its machine would."""
    import subprocess
    import sys
    import time

    log = open(home / f"mn-{time.time():.0f}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "mn.server", "--home", str(home), "--db-url", db_url, "--port", str(port),
         "--host", "127.0.0.1", "--simulator-url", sim_url, "--log-level", "WARNING",
         "--workers", str(workers), "--processes", str(processes), "--agent-key-file", str(KEY_FILE)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url: str, proc, timeout: float = 60) -> None:
    import time

    import urllib3

    http = urllib3.PoolManager(retries=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MN exited with {proc.returncode}")
        try:
            if http.request("GET", f"{url}/health", timeout=2).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the MN did not become ready")


@pytest.fixture
def mn_proc(sim, tmp_path):
    """(spawn, procs, db_url): spawn(workers=32, processes=1) -> the MN's URL once it answers;
    every MN spawned is killed (with its process group) at the end."""
    import contextlib
    import os
    import signal

    db_url, cleanup = make_db_url(tmp_path)
    port = free_port()
    procs: list = []

    def spawn(workers: int = 32, processes: int = 1) -> str:
        p = spawn_mn(tmp_path, db_url, port, sim.url, workers, processes)
        procs.append(p)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, p)
        return url

    yield spawn, procs, db_url
    for p in procs:
        with contextlib.suppress(ProcessLookupError):  # the MN and any worker it left
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    cleanup()
