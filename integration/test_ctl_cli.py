"""zstack-ctl and zstack-cli as a user runs them: real processes, a daemon MN on loopback.

The database follows ZSTACK_TEST_DB like the rest of the tier (SQLite by default).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from integration.conftest import make_db_url

BIN = Path(sys.executable).parent


def _tool(name: str, module: str) -> list[str]:
    """The installed console script, or the module when the checkout is not installed."""
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


CTL = _tool("zstack-ctl", "mn.ctl")
CLI = _tool("zstack-cli", "mn.ops.cli")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A clean environment: HOME in tmp (the CLI's session file) and no ZSTACK_* settings."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    e["HOME"] = str(tmp_path / "user")
    return e


def _run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_start_cli_calls_stop(tmp_path, env):
    home = tmp_path / "mn"
    port = _free_port()
    db_url, cleanup = make_db_url(home)
    ctl = [*CTL, "--home", str(home)]
    cli = [*CLI, "-H", "127.0.0.1", "-p", str(port)]
    try:
        sim_port = _free_port()
        r = _run([*ctl, "configure", f"simulator_port={sim_port}"], env)
        assert r.returncode == 0, r.stderr
        r = _run([*ctl, "start", "--simulator", "--port", str(port), "--db-url", db_url], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"http://127.0.0.1:{port}" in r.stdout
        props = (home / "zstack.properties").read_text()
        assert f"port={port}" in props and "embedded_simulator=true" in props

        r = _run([*ctl, "status"], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Running" in r.stdout and f"http://127.0.0.1:{port}" in r.stdout
        assert "simulator: embedded" in r.stdout
        with socket.create_connection(("127.0.0.1", sim_port), timeout=5):
            pass  # the embedded simulator serves on its configured port

        r = _run([*ctl, "start"], env)
        assert r.returncode == 1 and "already running" in r.stderr

        r = _run([*cli, "QueryZone"], env)
        assert r.returncode == 1 and "ID.1001" in r.stderr

        r = _run([*cli, "LogInByAccount", "accountName=admin", "password=password"], env)
        assert r.returncode == 0, r.stderr
        session = json.loads(r.stdout)["inventory"]["uuid"]
        stored = json.loads((tmp_path / "user/.zstack/cli/session").read_text())
        assert stored[f"127.0.0.1:{port}"] == {"uuid": session, "account": "admin"}

        r = _run([*cli, "CreateZone", "name=z1", "description=first zone"], env)
        assert r.returncode == 0, r.stderr
        zone = json.loads(r.stdout)["inventory"]
        assert (zone["name"], zone["description"]) == ("z1", "first zone")

        r = _run([*cli, "QueryZone", "name=z1"], env)
        assert r.returncode == 0, r.stderr
        assert [z["uuid"] for z in json.loads(r.stdout)["inventories"]] == [zone["uuid"]]

        r = _run([*cli, "--json-compact", "QueryZone", "name?=z1,z2", "count=true"], env)
        assert r.returncode == 0 and json.loads(r.stdout)["total"] == 1 and "\n" not in r.stdout.strip()

        r = _run([*cli, "QueryZone", "nosuchfield=1"], env)
        assert r.returncode == 1 and "SYS.1007" in r.stderr

        r = _run([*cli, "LogOut"], env)
        assert r.returncode == 0, r.stderr
        r = _run([*cli, "QueryZone"], env)
        assert r.returncode == 1 and "ID.1001" in r.stderr
    finally:
        r = _run([*ctl, "stop"], env)
        cleanup()
    assert r.returncode == 0, r.stderr
    assert "stopped" in r.stdout
    assert not (home / "mn.pid").exists()
    r = _run([*ctl, "status"], env)
    assert r.returncode == 1 and "Stopped" in r.stdout
    r = _run([*cli, "QueryZone"], env)
    assert r.returncode == 1 and "cannot reach" in r.stderr


def test_a_failing_daemon_points_at_its_log(tmp_path, env):
    home = tmp_path / "mn"
    r = _run([*CTL, "--home", str(home), "start", "--port", str(_free_port()),
              "--db-url", "nosuchdialect://x"], env)
    assert r.returncode == 1
    assert "exited with code 1" in r.stderr and str(home / "logs/management-server.log") in r.stderr
    assert "nosuchdialect" in r.stderr  # the tail of the log is shown
    assert not (home / "mn.pid").exists()


def test_the_shell_reads_commands_from_stdin(tmp_path, env):
    """No MN needed: the shell parses, reports usage errors and leaves on exit."""
    r = subprocess.run([*CLI, "-p", str(_free_port())], input="help CreateZone\nCreateZone name\nexit\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "name (required): string" in r.stdout
    assert "expected key=value" in r.stderr


README_VM_QUERY = ["QueryVmInstance", "vmNics.eip.guestIp=16.16.16.16", "zone.name=west-coast"]
README_HOST_QUERY = ["QueryHost", "fields=name,uuid,managementIp", "hypervisorType=KVM",
                     "vmInstance.allVolumes.size>=549755813888000", "vmInstance.state=Running",
                     "start=0", "limit=10"]


def test_the_readme_queries_through_zstack_cli(tmp_path, env):
    """The two query examples of README.md, run by a real zstack-cli against a demo-zone MN."""
    home = tmp_path / "mn"
    port = _free_port()
    db_url, cleanup = make_db_url(home)
    ctl = [*CTL, "--home", str(home)]
    cli = [*CLI, "--json-compact", "-H", "127.0.0.1", "-p", str(port)]

    def ok(*args: str) -> dict:
        r = _run([*cli, *args], env)
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout)

    def uuid_of(api: str, name: str) -> str:
        [inv] = ok(api, f"name={name}", "fields=uuid")["inventories"]
        return inv["uuid"]

    try:
        assert _run([*ctl, "configure", f"simulator_port={_free_port()}"], env).returncode == 0
        r = _run([*ctl, "start", "--simulator", "--port", str(port), "--db-url", db_url], env)
        assert r.returncode == 0, r.stdout + r.stderr
        ok("LogInByAccount", "accountName=admin", "password=password")

        # The demo zone has no EIP (nor a zone named west-coast): the query runs and finds nothing
        # (integration/test_query.py answers it on a world that has both).
        assert ok(*README_VM_QUERY) == {"success": True, "inventories": []}

        # No KVM host in a simulator zone.
        assert ok(*README_HOST_QUERY) == {"success": True, "inventories": []}

        vm = ok("CreateVmInstance", "name=vm1", f"instanceOfferingUuid={uuid_of('QueryInstanceOffering', 'demo-small')}",
                f"imageUuid={uuid_of('QueryImage', 'demo-image')}",
                f"l3NetworkUuids={uuid_of('QueryL3Network', 'demo-l3')}")["inventory"]
        [host] = ok("QueryHost", f"uuid={vm['hostUuid']}", "fields=name,uuid,managementIp")["inventories"]
        simulator_query = [t.replace("=KVM", "=Simulator") for t in README_HOST_QUERY]
        # The same query on Simulator hosts: the size condition holds (no 500 TiB volume) ...
        assert ok(*simulator_query)["inventories"] == []
        # ... and with a size the VM's volumes reach, exactly the VM's host comes back.
        small = [t.replace("549755813888000", "1") for t in simulator_query]
        assert ok(*small)["inventories"] == [host]
        ok("StopVmInstance", f"uuid={vm['uuid']}")
        assert ok(*small)["inventories"] == []  # vmInstance.state=Running no longer holds

        r = _run([*cli, "QueryHost", "zone..name=x"], env)
        assert r.returncode == 1 and "usage error: cannot parse the query condition" in r.stderr
    finally:
        r = _run([*ctl, "stop"], env)
        cleanup()
    assert r.returncode == 0, r.stderr
