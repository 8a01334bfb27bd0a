"""install.sh end to end, as a new user runs it: a freshly built release served over HTTP on loopback,
`curl -fsSL <url>/install.sh | bash -s -- -s ...`, then the cloud it leaves behind used through the
installed zstack-cli and zstack-ctl.

The tests run in file order on one installation (module fixture): the install, the API and a VM,
a rerun that changes nothing, bad flags and a busy port that change nothing, the same install moved
status and stop, then the same installation moved to the local PostgreSQL server (a temporary
database). Everything goes under a
temporary install root (-r, --bin-dir, --log-dir), on free ports; pip's cache (~/.cache/pip) keeps
reruns from downloading the dependencies again.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(1200)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _version() -> str:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import build_release

        return build_release.version(REPO)
    finally:
        sys.path.pop(0)


class Install:
    """One installation under a temporary root, and the commands it installed."""

    def __init__(self, root: Path, base_url: str, dist: Path):
        self.root = root
        self.base_url = base_url
        self.dist = dist
        self.api_port = _free_port()
        self.sim_port = _free_port()
        self.cli_home = root / "user-home"  # HOME of the CLI user (its session file)
        self.cli_home.mkdir(parents=True)

    def flags(self) -> list[str]:
        return ["-r", str(self.root), "--bin-dir", str(self.root / "bin"), "--log-dir", str(self.root / "log"),
                "-I", "127.0.0.1", "--port", str(self.api_port), "--simulator-port", str(self.sim_port)]

    def piped(self, *flags: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """The README's form: curl -fsSL <url>/install.sh | bash -s -- FLAGS."""
        script = f"curl -fsSL {self.base_url}/install.sh | bash -s -- {' '.join(flags)}"
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def script(self, path: Path, *flags: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(path), *flags], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.root / "bin" / "zstack-ctl"), *args], capture_output=True, text=True,
                              timeout=300, cwd="/", env={**os.environ, "HOME": str(self.cli_home)})

    def cli(self, *args: str) -> dict:
        r = subprocess.run([str(self.root / "bin" / "zstack-cli"), "--json-compact", *args], capture_output=True,
                           text=True, timeout=120, cwd="/", env={**os.environ, "HOME": str(self.cli_home)})
        assert r.returncode == 0, f"zstack-cli {' '.join(args)}: {r.stdout}{r.stderr}"
        return json.loads(r.stdout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def _explain(r: subprocess.CompletedProcess[str]) -> str:
    return f"exit {r.returncode}\n---- stdout\n{r.stdout[-6000:]}\n---- stderr\n{r.stderr[-4000:]}"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """dist/ of a fresh `tools/build_release.py`, served over HTTP on loopback: (base URL, dist)."""
    dist = tmp_path_factory.mktemp("dist")
    handler = functools.partial(_QuietHandler, directory=str(dist))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "build_release.py"), "--dist", str(dist),
                        "--base-url", base_url], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, _explain(r)
    version = _version()
    assert (dist / f"zstack-{version}.tar.gz").is_file() and (dist / "install.sh").is_file()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base_url, dist
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def installed(release: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory,
              report: dict[str, str]) -> Iterator[Install]:
    """`curl ... | bash -s -- -s ...` into a temporary root: the simulator POC, started."""
    base_url, dist = release
    inst = Install(tmp_path_factory.mktemp("root"), base_url, dist)
    t0 = time.monotonic()
    r = inst.piped("-s", *inst.flags())
    report["install.sh -s, piped"] = f"{time.monotonic() - t0:.0f} s (load {os.getloadavg()[0]:.1f})"
    inst.first = r  # type: ignore[attr-defined]
    try:
        assert r.returncode == 0, _explain(r)
        yield inst
    finally:
        inst.ctl("stop")


def test_the_piped_install_leaves_a_running_cloud(installed: Install) -> None:
    out = installed.first.stdout  # type: ignore[attr-defined]
    version = _version()
    assert f"ZStack {version} is installed in {installed.root}" in out
    assert f"management node: {installed.url} (Running)" in out
    assert "admin / password" in out
    # The layout of docs/install.md.
    rel = installed.root / "releases" / version
    assert (rel / "install.sh").is_file() and (rel / "installer" / "site.yml").is_file()
    assert (rel / "wheels" / f"zstack-{version}-py3-none-any.whl").is_file()
    assert (installed.root / "venv" / "bin" / "ansible-playbook").is_file()
    props = (installed.root / "mn" / "zstack.properties").read_text()
    assert f"port={installed.api_port}" in props and "embedded_simulator=true" in props
    assert (installed.root / "log" / "install.log").stat().st_size > 0
    assert (installed.root / "log" / "management-server.log").is_file()  # the MN log, via mn/logs
    with urllib.request.urlopen(f"{installed.url}/health", timeout=10) as resp:
        assert resp.status == 200 and json.load(resp)["managementNodeUuid"]


def test_zstack_cli_logs_in_and_creates_a_vm_in_the_demo_zone(installed: Install) -> None:
    out = installed.first.stdout  # type: ignore[attr-defined]
    [create] = [line.split("zstack-cli ", 1)[1] for line in out.splitlines() if "zstack-cli CreateVmInstance" in line]
    assert installed.cli("LogInByAccount", "accountName=admin", "password=password")["success"]
    vm = installed.cli(*create.split())["inventory"]
    assert vm["state"] == "Running" and vm["name"] == "vm1"
    [found] = installed.cli("QueryVmInstance", "name=vm1", "fields=uuid,state")["inventories"]
    assert found == {"uuid": vm["uuid"], "state": "Running"}


def test_a_second_run_changes_nothing(installed: Install) -> None:
    pid = (installed.root / "mn" / "mn.pid").read_text()
    r = installed.ctl("configure", "agent_reply_within=1.0")  # a key the installer does not own
    assert r.returncode == 0, _explain(r)
    r = installed.piped("-s", *installed.flags())
    assert r.returncode == 0, _explain(r)
    assert "nothing changed" in r.stdout and "already unpacked" in r.stdout, r.stdout
    assert (installed.root / "mn" / "mn.pid").read_text() == pid  # the MN was not restarted
    props = (installed.root / "mn" / "zstack.properties").read_text().splitlines()
    assert "agent_reply_within=1.0" in props and f"port={installed.api_port}" in props  # kept, and set
    assert installed.cli("QueryVmInstance", "name=vm1", "count=true")["total"] == 1


def _tree(root: Path) -> list[tuple[str, int]]:
    """What an install writes and a refused run must not touch (the running MN writes to mn/ itself)."""
    paths = [*root.joinpath("releases").rglob("*"), *root.joinpath("bin").iterdir(), root / "mn" / "zstack.properties"]
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in paths)


def test_bad_flags_and_a_busy_port_change_nothing(installed: Install, tmp_path: Path) -> None:
    fresh = tmp_path / "never"
    local = installed.root / "releases" / _version() / "install.sh"
    before = _tree(installed.root)
    for run in (lambda *f: installed.piped(*f), lambda *f: installed.script(local, *f)):
        r = run("-s", "--frobnicate", "-r", str(fresh))
        assert r.returncode == 2 and "unknown option '--frobnicate'" in r.stderr, _explain(r)
        r = run("-s", "--db", "oracle", "-r", str(fresh))
        assert r.returncode == 2 and "--db must be sqlite, postgresql or mariadb" in r.stderr, _explain(r)
        r = run("-Q", "-r", str(fresh))
        assert r.returncode == 2 and "unknown option '-Q'" in r.stderr, _explain(r)
    # A missing prerequisite: the API port is taken by another process (the installed MN's home
    # is another root, so this is not a rerun).
    r = installed.piped("-s", "-r", str(fresh), "--port", str(installed.api_port),
                        "--bin-dir", str(fresh / "bin"), "--log-dir", str(fresh / "log"))
    assert r.returncode == 1 and f"port {installed.api_port} is already in use" in r.stderr, _explain(r)
    assert not fresh.exists()
    assert _tree(installed.root) == before


def test_zstack_ctl_status_and_stop(installed: Install) -> None:
    r = installed.ctl("status")
    assert r.returncode == 0 and "Running" in r.stdout and f":{installed.api_port}" in r.stdout, _explain(r)
    r = installed.ctl("stop")
    assert r.returncode == 0 and "management node stopped" in r.stdout, _explain(r)
    r = installed.ctl("status")
    assert r.returncode == 1 and "Stopped" in r.stdout, _explain(r)
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{installed.url}/health", timeout=3):
        pytest.fail("the MN still answers after zstack-ctl stop")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A temporary database name on the local PostgreSQL server; dropped afterwards."""
    name = f"zstack_install_{secrets.token_hex(4)}"
    yield name
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-c",
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True, timeout=60)


def _psql(sql: str, db: str = "postgres") -> str:
    r = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_moving_to_the_local_postgresql_creates_user_schema_and_migrates(installed: Install,
                                                                           pg_database: str) -> None:
    """The stopped installation, rerun with --db postgresql: the MN is configured, migrated, started."""
    try:
        _move_to_postgresql(installed, pg_database)
    finally:
        installed.ctl("stop")  # before the database is dropped


def _move_to_postgresql(installed: Install, pg_database: str) -> None:
    local = installed.root / "releases" / _version() / "install.sh"
    r = installed.script(local, "-s", *installed.flags(), "--db", "postgresql", "--db-name", pg_database)
    assert r.returncode == 0, _explain(r)
    assert "db : Create the PostgreSQL database" in r.stdout and "Migrate the database" in r.stdout
    assert _psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{pg_database}'") == "zstack"
    assert _psql("SELECT count(*) FROM alembic_version", pg_database) == "1"
    props = (installed.root / "mn" / "zstack.properties").read_text()
    assert f"db_url=postgresql+psycopg://zstack:zstack.password@127.0.0.1:5432/{pg_database}" in props
    status = installed.ctl("status")
    assert status.returncode == 0 and f"/{pg_database}" in status.stdout, _explain(status)
    # The restarted MN (its settings changed) serves from PostgreSQL: a fresh database, no VM.
    installed.cli("LogInByAccount", "accountName=admin", "password=password")
    assert installed.cli("QueryVmInstance", "count=true")["total"] == 0
    r = installed.script(local, "-s", *installed.flags(), "--db", "postgresql", "--db-name", pg_database)
    assert r.returncode == 0 and "nothing changed" in r.stdout, _explain(r)
